import { type Db, growingTransaction } from '../db/client.ts';
import { Prisma } from '../generated/prisma/client.ts';
import type { DetectionPolicy } from '../policy/policy.ts';
import { type LinkEvidence, maxContribution, pairWeight, type SharedSignal } from './weights.ts';

// Candidate generation through the inverted index, bounded by the bucket caps: the cost of linking
// one account depends on its signals and the caps, never on how many accounts exist.

export interface ComputedLink {
  a: string;
  b: string;
  weight: number;
  evidence: LinkEvidence[];
}

interface CandidateRow {
  a: string;
  b: string;
  kind: string;
  vals: string[];
  buckets: Array<number | bigint>;
  a_ats: Date[];
  b_ats: Date[];
}

interface KindConfig {
  kinds: string[];
  caps: number[];
  sampled: boolean[];
}

function configOf(policy: DetectionPolicy, kinds: readonly string[]): KindConfig {
  return {
    kinds: [...kinds],
    caps: kinds.map((k) => policy.bucketCaps[k] ?? policy.bucketCap),
    sampled: kinds.map((k) => policy.sampledKinds.includes(k)),
  };
}

/**
 * Kinds, most common first, that are usually shared by large crowds (the browsers' TLS
 * fingerprints, user agents, a carrier's subnets) and say little each.
 */
const CROWD_KINDS = [
  'tls_fingerprint',
  'user_agent',
  'usage_subnet',
  'sync_slot',
  'hosting_asn',
  'disposable',
  'usage_ip',
  'query_lsh',
  'subnet',
  'email_domain',
];

/**
 * Kinds that add evidence to pairs other kinds found, but do not find pairs themselves.
 *
 * Why it is exact: a pair is a link only at or above the threshold. If the most these kinds can add
 * together (maxContribution) stays below it, every link shares at least one other kind, so looking
 * for candidates through the other kinds alone finds every link; the evidence of these kinds is
 * then read for those candidates only. What it saves: a common TLS fingerprint puts every account
 * in a bucket of hundreds, so finding pairs through it costs hundreds of rows per account that can
 * never be links on their own. Taken greedily from CROWD_KINDS while the sum stays below.
 */
export function evidenceOnlyKinds(policy: DetectionPolicy): Set<string> {
  const chosen = new Set<string>();
  let sum = 0;
  for (const kind of CROWD_KINDS) {
    const most = maxContribution(kind, policy);
    if (most <= 0) continue;
    if (sum + most >= policy.linkThreshold) continue;
    sum += most;
    chosen.add(kind);
  }
  return chosen;
}

function addRows(pairs: Map<string, SharedSignal[]>, rows: readonly CandidateRow[]): void {
  for (const r of rows) {
    const swap = r.a > r.b;
    const key = swap ? `${r.b}|${r.a}` : `${r.a}|${r.b}`;
    const list = pairs.get(key) ?? [];
    if (list.length === 0) pairs.set(key, list);
    // Both ends of a pair may be in the set: a kind found from both sides counts once.
    if (list.some((s) => s.kind === r.kind)) continue;
    r.buckets.forEach((bucket, i) => {
      const atA = r.a_ats[i]!.getTime();
      const atB = r.b_ats[i]!.getTime();
      list.push({
        kind: r.kind,
        value: r.vals[i]!,
        bucket: Number(bucket),
        atA: swap ? atB : atA,
        atB: swap ? atA : atB,
      });
    });
  }
}

const EVIDENCE_CHUNK = 5_000;

/**
 * The pairs an account set forms with anyone, from signals seen at or before `asOf` (event time).
 * Per signal value: buckets up to the kind's cap link to every member; larger buckets of sampled
 * kinds link to the cap's worth of members nearest in time (ties broken by account id); larger
 * buckets of other kinds (a carrier's CGNAT address) do not link at all. Suppressed (account,
 * kind) pairs never count.
 *
 * Pairs are found through every kind but the evidence-only ones (evidenceOnlyKinds), whose shared
 * values are then read for the pairs found, under the same caps and sampling; pairs that could not
 * reach the link threshold even so are dropped first. `allKindsFind` finds through every kind and
 * keeps every pair (the reference the shortcut is tested against): the links are the same.
 *
 * PostgreSQL groups the shared values per (pair, kind), so a pair sharing two hundred activity
 * slots travels as one row. `onlyGreater` (full runs, where every account is in some batch) keeps
 * each pair once, from its smaller id's side.
 */
export async function candidatePairs(
  db: Db,
  accountIds: readonly string[],
  policy: DetectionPolicy,
  asOf: Date,
  opts: { onlyGreater?: boolean; allKindsFind?: boolean } = {},
): Promise<Map<string, SharedSignal[]>> {
  const pairs = new Map<string, SharedSignal[]>();
  if (accountIds.length === 0) return pairs;
  const linking = Object.entries(policy.weights)
    .filter(([, w]) => w > 0)
    .map(([k]) => k);
  const evidenceOnly = opts.allKindsFind ? new Set<string>() : evidenceOnlyKinds(policy);
  const finders = configOf(
    policy,
    linking.filter((k) => !evidenceOnly.has(k)),
  );
  const onlyGreater = opts.onlyGreater ?? false;
  const rows = await db.$queryRaw<CandidateRow[]>`
    WITH cfg AS (
      SELECT * FROM unnest(${finders.kinds}::text[], ${finders.caps}::int[], ${finders.sampled}::bool[]) AS c(kind, cap, sampled)
    ),
    mine AS (
      SELECT acc.id AS account_id, s.kind, s.value, s.at, cfg.cap, cfg.sampled
      FROM unnest(${accountIds as string[]}::text[]) AS acc(id)
      -- Per account, through the account index only (never a scan of a kind across all accounts);
      -- the kinds are picked out after.
      CROSS JOIN LATERAL (
        SELECT s.kind, s.value, s.at FROM signals s
        WHERE s.account_id = acc.id AND s.at <= ${asOf}
        OFFSET 0 -- kept per account (flattened, the planner may scan whole kinds instead)
      ) s
      JOIN cfg ON cfg.kind = s.kind
      WHERE NOT EXISTS (SELECT 1 FROM link_suppressions ls WHERE ls.account_id = acc.id AND ls.kind = s.kind)
    ),
    sized AS (
      SELECT m.*, b.bucket FROM mine m
      CROSS JOIN LATERAL (
        SELECT count(*) AS bucket FROM (
          SELECT 1 FROM signals x WHERE x.kind = m.kind AND x.value = m.value AND x.at <= ${asOf} LIMIT m.cap + 1
        ) c
      ) b
      WHERE b.bucket > 1 AND (b.bucket <= m.cap OR m.sampled)
    ),
    hits AS (
      SELECT z.account_id AS a, o.account_id AS b, z.kind, z.value, z.bucket, z.at AS a_at, o.at AS b_at
      FROM sized z
      CROSS JOIN LATERAL (
        (SELECT y.account_id, y.at FROM signals y
          WHERE y.kind = z.kind AND y.value = z.value AND y.at <= ${asOf} AND y.at >= z.at AND y.account_id <> z.account_id
          ORDER BY y.at, y.account_id LIMIT z.cap)
        UNION ALL
        (SELECT y.account_id, y.at FROM signals y
          WHERE y.kind = z.kind AND y.value = z.value AND y.at < z.at
          ORDER BY y.at DESC, y.account_id DESC LIMIT z.cap)
      ) o
      WHERE (NOT ${onlyGreater} OR o.account_id > z.account_id)
        AND NOT EXISTS (SELECT 1 FROM link_suppressions ls WHERE ls.account_id = o.account_id AND ls.kind = z.kind)
    )
    SELECT a, b, kind, array_agg(value ORDER BY value) AS vals, array_agg(bucket ORDER BY value) AS buckets,
      array_agg(a_at ORDER BY value) AS a_ats, array_agg(b_at ORDER BY value) AS b_ats
    FROM hits GROUP BY a, b, kind
  `;
  addRows(pairs, rows);
  if (evidenceOnly.size === 0 || pairs.size === 0) return pairs;

  // A pair that stays below the threshold even with the most the evidence-only kinds could add
  // can never be a link: most pairs found through a shared subnet or one prompt band are such,
  // and are dropped before their evidence is read. (The margin covers pairWeight's rounding.)
  let most = 0;
  for (const kind of evidenceOnly) most += maxContribution(kind, policy);
  for (const [key, shared] of pairs) {
    if (pairWeight(shared, policy).weight + most < policy.linkThreshold - 0.001) pairs.delete(key);
  }
  if (pairs.size === 0) return pairs;

  // Evidence of the evidence-only kinds, for the pairs found. A sampled kind's oversized bucket
  // counts from the side(s) the search ran from, exactly as above: the other account must be among
  // the cap nearest in time (in (at, account id) order) to that side's own signal.
  const evidence = configOf(policy, [...evidenceOnly]);
  const batch = new Set(accountIds);
  const keys = [...pairs.keys()];
  for (let i = 0; i < keys.length; i += EVIDENCE_CHUNK) {
    const as: string[] = [];
    const bs: string[] = [];
    const fromA: boolean[] = [];
    const fromB: boolean[] = [];
    for (const key of keys.slice(i, i + EVIDENCE_CHUNK)) {
      const [a, b] = key.split('|') as [string, string];
      as.push(a);
      bs.push(b);
      // With onlyGreater a pair is searched from its smaller id only (a < b by the key's order).
      fromA.push(batch.has(a));
      fromB.push(!onlyGreater && batch.has(b));
    }
    const more = await db.$queryRaw<CandidateRow[]>`
      WITH cfg AS (
        SELECT * FROM unnest(${evidence.kinds}::text[], ${evidence.caps}::int[], ${evidence.sampled}::bool[]) AS c(kind, cap, sampled)
      ),
      p AS MATERIALIZED (
        SELECT * FROM unnest(${as}::text[], ${bs}::text[], ${fromA}::bool[], ${fromB}::bool[]) AS p(a, b, from_a, from_b)
      ),
      -- Every evidence-only signal of every account in a pair, read once per account through the
      -- account index; the pairs are then matched on (kind, value) by hashing, not per pair.
      theirs AS MATERIALIZED (
        SELECT acc.id AS account_id, s.kind, s.value, s.at, cfg.cap, cfg.sampled
        FROM unnest(${[...new Set([...as, ...bs])]}::text[]) AS acc(id)
        -- Per account, through the account index: a plan that scans the kinds' index for every
        -- account holding them instead would grow with the number of accounts.
        CROSS JOIN LATERAL (
          SELECT s.kind, s.value, s.at FROM signals s
          WHERE s.account_id = acc.id AND s.at <= ${asOf}
          OFFSET 0
        ) s
        JOIN cfg ON cfg.kind = s.kind
      ),
      -- In two steps, so the pairs drive the join (planners misjudge these sizes and would
      -- otherwise match every account's values with every other's first).
      pa AS MATERIALIZED (
        SELECT p.a, p.b, p.from_a, p.from_b, x.kind, x.value, x.at AS a_at, x.cap, x.sampled
        FROM p JOIN theirs x ON x.account_id = p.a
      ),
      shared AS MATERIALIZED (
        SELECT pa.a, pa.b, pa.from_a, pa.from_b, pa.kind, pa.value, pa.a_at, y.at AS b_at, pa.cap, pa.sampled
        FROM pa JOIN theirs y ON y.account_id = pa.b AND y.kind = pa.kind AND y.value = pa.value
        WHERE NOT EXISTS (
          SELECT 1 FROM link_suppressions ls WHERE ls.account_id IN (pa.a, pa.b) AND ls.kind = pa.kind
        )
      ),
      sizes AS (
        SELECT v.kind, v.value, b.bucket FROM (SELECT DISTINCT kind, value, cap FROM shared) v
        CROSS JOIN LATERAL (
          SELECT count(*) AS bucket FROM (
            SELECT 1 FROM signals x WHERE x.kind = v.kind AND x.value = v.value AND x.at <= ${asOf} LIMIT v.cap + 1
          ) c
        ) b
      ),
      -- The sides a search ran from, in oversized sampled buckets, and their nearest members in
      -- time, exactly as the search above takes them.
      sides AS (
        SELECT sh.a AS x, sh.kind, sh.value, sh.a_at AS x_at, sh.cap
        FROM shared sh JOIN sizes z ON z.kind = sh.kind AND z.value = sh.value
        WHERE sh.sampled AND z.bucket > sh.cap AND sh.from_a
        UNION
        SELECT sh.b, sh.kind, sh.value, sh.b_at, sh.cap
        FROM shared sh JOIN sizes z ON z.kind = sh.kind AND z.value = sh.value
        WHERE sh.sampled AND z.bucket > sh.cap AND sh.from_b
      ),
      near AS (
        SELECT s.x, s.kind, s.value, o.account_id AS y
        FROM sides s
        CROSS JOIN LATERAL (
          (SELECT y.account_id FROM signals y
            WHERE y.kind = s.kind AND y.value = s.value AND y.at <= ${asOf} AND y.at >= s.x_at AND y.account_id <> s.x
            ORDER BY y.at, y.account_id LIMIT s.cap)
          UNION ALL
          (SELECT y.account_id FROM signals y
            WHERE y.kind = s.kind AND y.value = s.value AND y.at < s.x_at
            ORDER BY y.at DESC, y.account_id DESC LIMIT s.cap)
        ) o
      ),
      kept AS (
        SELECT sh.a, sh.b, sh.kind, sh.value, z.bucket, sh.a_at, sh.b_at
        FROM shared sh JOIN sizes z ON z.kind = sh.kind AND z.value = sh.value
        WHERE z.bucket <= sh.cap
        UNION ALL
        SELECT sh.a, sh.b, sh.kind, sh.value, z.bucket, sh.a_at, sh.b_at
        FROM shared sh JOIN sizes z ON z.kind = sh.kind AND z.value = sh.value
        WHERE z.bucket > sh.cap AND sh.sampled AND (
          (sh.from_a AND EXISTS (
            SELECT 1 FROM near n WHERE n.x = sh.a AND n.kind = sh.kind AND n.value = sh.value AND n.y = sh.b))
          OR (sh.from_b AND EXISTS (
            SELECT 1 FROM near n WHERE n.x = sh.b AND n.kind = sh.kind AND n.value = sh.value AND n.y = sh.a)))
      )
      SELECT a, b, kind, array_agg(value ORDER BY value) AS vals, array_agg(bucket ORDER BY value) AS buckets,
      array_agg(a_at ORDER BY value) AS a_ats, array_agg(b_at ORDER BY value) AS b_ats
      FROM kept GROUP BY a, b, kind
    `;
    addRows(pairs, more);
  }
  return pairs;
}

/** Weighs candidate pairs; only links at or above the policy's threshold are kept. */
export function weighPairs(pairs: Map<string, SharedSignal[]>, policy: DetectionPolicy): ComputedLink[] {
  const links: ComputedLink[] = [];
  for (const [key, shared] of pairs) {
    const { weight, evidence } = pairWeight(shared, policy);
    if (weight < policy.linkThreshold) continue;
    const [a, b] = key.split('|') as [string, string];
    links.push({ a, b, weight, evidence });
  }
  return links;
}

/** Writes links (upsert): used by the incremental path after one account's signals change. */
export async function saveLinks(db: Db, links: readonly ComputedLink[]): Promise<void> {
  for (let i = 0; i < links.length; i += 500) {
    const chunk = links.slice(i, i + 500);
    const payload = JSON.stringify(chunk.map((l) => ({ a: l.a, b: l.b, w: l.weight, e: l.evidence })));
    await db.$executeRaw`
      INSERT INTO links (account_a, account_b, weight, evidence, updated_at)
      SELECT r.a, r.b, r.w, r.e, now() FROM jsonb_to_recordset(${payload}::jsonb) AS r(a text, b text, w float8, e jsonb)
      ON CONFLICT (account_a, account_b) DO UPDATE SET weight = EXCLUDED.weight, evidence = EXCLUDED.evidence, updated_at = now()
    `;
  }
}

/**
 * Replaces every link in one transaction: a full analysis run's view of the graph. Readers see the
 * old graph or the new one, never half of each (DELETE, not TRUNCATE, so they are not blocked
 * meanwhile). The transaction's budget grows with the graph: a million accounts' links take tens
 * of seconds to write, far past Prisma's default of 5 s, which failed the run at the last step.
 */
export async function replaceLinks(db: Db, links: readonly ComputedLink[]): Promise<void> {
  await db.$transaction(
    async (tx) => {
      await tx.$executeRaw`DELETE FROM links`;
      for (let i = 0; i < links.length; i += 2_000) {
        const payload = JSON.stringify(
          links.slice(i, i + 2_000).map((l) => ({ a: l.a, b: l.b, w: l.weight, e: l.evidence })),
        );
        await tx.$executeRaw`
          INSERT INTO links (account_a, account_b, weight, evidence, updated_at)
          SELECT r.a, r.b, r.w, r.e, now() FROM jsonb_to_recordset(${payload}::jsonb) AS r(a text, b text, w float8, e jsonb)`;
      }
    },
    {
      isolationLevel: Prisma.TransactionIsolationLevel.ReadCommitted,
      ...growingTransaction(60_000, 2, links.length),
    },
  );
}
