import type { Db } from '../db/client.ts';
import { Prisma } from '../generated/prisma/client.ts';
import type { DetectionPolicy } from '../policy/policy.ts';
import { type LinkEvidence, pairWeight, type SharedSignal } from './weights.ts';

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

function capsOf(policy: DetectionPolicy): { kinds: string[]; caps: number[]; sampled: boolean[] } {
  const kinds = Object.entries(policy.weights)
    .filter(([, w]) => w > 0)
    .map(([k]) => k);
  const caps = kinds.map((k) => policy.bucketCaps[k] ?? policy.bucketCap);
  const sampled = kinds.map((k) => policy.sampledKinds.includes(k));
  return { kinds, caps, sampled };
}

/**
 * The pairs an account set forms with anyone, from signals seen at or before `asOf` (event time).
 * Per signal value: buckets up to the kind's cap link to every member; larger buckets of sampled
 * kinds link to the cap's worth of members nearest in time; larger buckets of other kinds (a
 * carrier's CGNAT address) do not link at all. Suppressed (account, kind) pairs never count.
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
  opts: { onlyGreater?: boolean } = {},
): Promise<Map<string, SharedSignal[]>> {
  const pairs = new Map<string, SharedSignal[]>();
  if (accountIds.length === 0) return pairs;
  const { kinds, caps, sampled } = capsOf(policy);
  const onlyGreater = opts.onlyGreater ?? false;
  const rows = await db.$queryRaw<CandidateRow[]>`
    WITH cfg AS (
      SELECT * FROM unnest(${kinds}::text[], ${caps}::int[], ${sampled}::bool[]) AS c(kind, cap, sampled)
    ),
    mine AS (
      SELECT s.account_id, s.kind, s.value, s.at, cfg.cap, cfg.sampled
      FROM signals s JOIN cfg ON cfg.kind = s.kind
      WHERE s.account_id = ANY(${accountIds as string[]}::text[]) AND s.at <= ${asOf}
        AND NOT EXISTS (SELECT 1 FROM link_suppressions ls WHERE ls.account_id = s.account_id AND ls.kind = s.kind)
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
          ORDER BY y.at LIMIT z.cap)
        UNION ALL
        (SELECT y.account_id, y.at FROM signals y
          WHERE y.kind = z.kind AND y.value = z.value AND y.at < z.at
          ORDER BY y.at DESC LIMIT z.cap)
      ) o
      WHERE (NOT ${onlyGreater} OR o.account_id > z.account_id)
        AND NOT EXISTS (SELECT 1 FROM link_suppressions ls WHERE ls.account_id = o.account_id AND ls.kind = z.kind)
    )
    SELECT a, b, kind, array_agg(value) AS vals, array_agg(bucket) AS buckets, array_agg(a_at) AS a_ats, array_agg(b_at) AS b_ats
    FROM hits GROUP BY a, b, kind
  `;
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

/** Replaces every link in one transaction: a full analysis run's view of the graph. */
export async function replaceLinks(db: Db, links: readonly ComputedLink[]): Promise<void> {
  const payloads: string[] = [];
  for (let i = 0; i < links.length; i += 2_000) {
    payloads.push(
      JSON.stringify(links.slice(i, i + 2_000).map((l) => ({ a: l.a, b: l.b, w: l.weight, e: l.evidence }))),
    );
  }
  await db.$transaction(
    [
      db.$executeRaw`DELETE FROM links`,
      ...payloads.map(
        (p) => db.$executeRaw`
          INSERT INTO links (account_a, account_b, weight, evidence, updated_at)
          SELECT r.a, r.b, r.w, r.e, now() FROM jsonb_to_recordset(${p}::jsonb) AS r(a text, b text, w float8, e jsonb)`,
      ),
    ],
    { isolationLevel: Prisma.TransactionIsolationLevel.ReadCommitted },
  );
}
