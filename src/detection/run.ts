import type { AuditLog } from '../audit/audit.ts';
import { type Db, growingTransaction } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { newId } from '../lib/ids.ts';
import { inSlices, STATEMENT_SLICE } from '../lib/in-slices.ts';
import { mapLimit } from '../lib/map-limit.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';
import type { ActionService } from './actions.ts';
import { assignClusterIds, componentsOf } from './cluster.ts';
import { farmNetworkArrivals } from './farm-networks.ts';
import { type ComputedLink, candidatePairs, replaceLinks, weighPairs } from './link.ts';
import type { Progress } from './run-stages.ts';
import { actionFor, type ClusterAction, type MemberFacts, scoreCluster } from './score.ts';
import { indexPhones, refusalsByFingerprint } from './signup-evidence.ts';

// One analysis run: usage features, links, clusters, scores and actions over everything as of an
// event time. The same data and the same asOf give the same clusters.

export interface RunDeps {
  db: Db;
  policy: () => Policy;
  actions: ActionService;
  audit: AuditLog;
  apiKeys: { invalidateAccount(accountId: string): Promise<void> };
  logger: Logger;
  /**
   * Batches of the link stage in flight at once (ANALYSIS_CONCURRENCY): the candidate queries are
   * PostgreSQL's work, which a server with cores to spare does side by side. Default 1.
   */
  linkConcurrency?: number;
  /** Usage features and usage signals up to asOf (the feature store); optional for tests of linking. */
  computeFeatures?: (asOf: Date, progress: Progress) => Promise<{ accounts: number; signals: number }>;
}

/** For a stage run outside the queues (tools, tests): nobody to report progress to. */
const noProgress: Progress = async () => {};

export interface RunSummary {
  asOf: string;
  accounts: number;
  featured: number;
  links: number;
  clusters: number;
  actions: Record<string, number>;
  accountsActed: number;
  /** Tiers whose aggregate usage surged (an alert was queued for each). */
  tierSurges: string[];
  /** Wall time per phase, for operators sizing the schedule. */
  timings: Record<string, number>;
}

/** Accounts per candidate query of the link stage. */
export const LINK_BATCH = 400;

/** Kinds that tie accounts to one person or one operator, beyond sharing a network. */
const IDENTITY_KINDS: ReadonlySet<string> = new Set([
  'email',
  'phone',
  'phone_prefix',
  'fingerprint',
  'usage_fingerprint',
  'tls_fingerprint',
  'email_pattern',
  'query_lsh',
  'disposable',
]);

/** The newest event time the data holds: the default "now" of a run. */
export async function latestEventTime(db: Db): Promise<Date> {
  const [row] = await db.$queryRaw<Array<{ at: Date | null }>>`
    SELECT greatest(
      (SELECT max(created_at) FROM accounts),
      (SELECT max(hour) + interval '1 hour' FROM usage_hours),
      (SELECT max(at) FROM usage_events)
    ) AS at`;
  return row?.at ?? new Date(0);
}

/** A stage's figures for the run's summary (see run-stages.ts). */
export interface StageOutput {
  summary: Partial<Omit<RunSummary, 'timings'>> & { timings: Record<string, number> };
}

/**
 * A whole run in one call: the four stages one after another, as the stage workers run them.
 * For tools and tests that analyse in-process; the service runs stages through their queues.
 */
export async function runAnalysis(deps: RunDeps, runId: string, asOfInput: Date | null): Promise<RunSummary> {
  const asOf = asOfInput ?? (await latestEventTime(deps.db));
  const parts = [
    await analyseFeatures(deps, asOf),
    await analyseLinks(deps, asOf),
    await analyseClusters(deps, asOf),
    await analyseActions(deps, runId, asOf),
  ];
  const summary = Object.assign({}, ...parts.map((p) => p.summary)) as RunSummary;
  summary.timings = Object.assign({}, ...parts.map((p) => p.summary.timings));
  summary.asOf = asOf.toISOString();
  return summary;
}

// Every stage takes a progress call (run-stages.ts): it is called between batches, and with force
// before the stage writes what the next stage reads, so a stage whose run was failed meanwhile
// stops before it overwrites the work of the run after it.

/** Stage 1: usage features and usage signals as of the event time; phones verified since signup. */
export async function analyseFeatures(
  deps: RunDeps,
  asOf: Date,
  progress: Progress = noProgress,
): Promise<StageOutput> {
  const started = Date.now();
  const featured = deps.computeFeatures ? (await deps.computeFeatures(asOf, progress)).accounts : 0;
  await progress(true);
  await indexPhones(deps.db, asOf);
  return { summary: { asOf: asOf.toISOString(), featured, timings: { featuresMs: Date.now() - started } } };
}

/** Stage 2: every account made by asOf gets its candidates from the index; each pair is weighed once. */
export async function analyseLinks(
  deps: RunDeps,
  asOf: Date,
  progress: Progress = noProgress,
): Promise<StageOutput> {
  const { db } = deps;
  const detection = deps.policy().detection;
  let mark = Date.now();
  const accounts = await db.account.findMany({
    where: { createdAt: { lte: asOf } },
    select: { id: true },
    orderBy: { id: 'asc' },
  });
  const ids = accounts.map((a) => a.id);
  const batches: string[][] = [];
  for (let i = 0; i < ids.length; i += LINK_BATCH) batches.push(ids.slice(i, i + LINK_BATCH));
  // Each pair is found from its smaller id only (onlyGreater), so in one batch, with all its shared
  // signals: a batch's pairs are weighed as soon as it is in, and only its links are kept (holding
  // every candidate pair until the end ran a worker out of memory at a million accounts). Which
  // batch finishes first changes only the order of the links, which are stored as a set.
  const links: ComputedLink[] = [];
  await mapLimit(batches, deps.linkConcurrency ?? 1, async (batch) => {
    await progress();
    const pairs = await candidatePairs(db, batch, detection, asOf, { onlyGreater: true });
    for (const link of weighPairs(pairs, detection)) links.push(link);
  });
  const candidatesMs = Date.now() - mark;
  mark = Date.now();
  await progress(true);
  await replaceLinks(db, links);
  return {
    summary: {
      accounts: ids.length,
      links: links.length,
      timings: { candidatesMs, linksMs: Date.now() - mark },
    },
  };
}

/** The stored link graph among accounts made by asOf (what the link stage wrote). */
async function loadLinks(db: Db, asOf: Date): Promise<ComputedLink[]> {
  const rows = await db.$queryRaw<Array<{ a: string; b: string; weight: number; evidence: unknown }>>`
    SELECT l.account_a AS a, l.account_b AS b, l.weight, l.evidence
    FROM links l
    JOIN accounts x ON x.id = l.account_a
    JOIN accounts y ON y.id = l.account_b
    WHERE x.created_at <= ${asOf} AND y.created_at <= ${asOf}
    ORDER BY l.account_a, l.account_b`;
  return rows.map((r) => ({
    a: r.a,
    b: r.b,
    weight: r.weight,
    evidence: r.evidence as ComputedLink['evidence'],
  }));
}

/** Stage 3: clusters from the links (ids stable across runs), each scored as a whole and stored. */
export async function analyseClusters(
  deps: RunDeps,
  asOf: Date,
  progress: Progress = noProgress,
): Promise<StageOutput> {
  const { db } = deps;
  const policy = deps.policy();
  const detection = policy.detection;
  const started = Date.now();
  const links = await loadLinks(db, asOf);
  const components = componentsOf(links, detection.actions.minClusterSize);
  const previousRows = await db.clusterMember.findMany({
    where: { cluster: { live: true } },
    select: { accountId: true, clusterId: true },
  });
  const previous = new Map(previousRows.map((r) => [r.accountId, r.clusterId]));
  const clusters = assignClusterIds(components, previous, () => newId('clu', asOf.getTime()));

  const memberOf = new Map<string, string>();
  for (const c of clusters) for (const m of c.members) memberOf.set(m, c.id);
  const linksByCluster = new Map<string, ComputedLink[]>();
  for (const l of links) {
    const c = memberOf.get(l.a);
    if (!c || c !== memberOf.get(l.b)) continue;
    const list = linksByCluster.get(c);
    if (list) list.push(l);
    else linksByCluster.set(c, [l]);
  }

  const memberIds = clusters.flatMap((c) => c.members);
  const facts = await memberFacts(db, memberIds, asOf);
  const refusals = await refusalsByFingerprint(
    db,
    [...new Set([...facts.values()].flatMap((m) => m.fingerprints))],
    asOf,
  );
  const dailyQuota = dailyQuotaOf(policy, policy.enforcement.defaultTier);

  const scored = clusters.map((c) => {
    const clusterLinks = linksByCluster.get(c.id) ?? [];
    const linkKinds = new Map<string, number>();
    for (const l of clusterLinks)
      for (const e of l.evidence) linkKinds.set(e.kind, (linkKinds.get(e.kind) ?? 0) + 1);
    const members = c.members.map((m) => facts.get(m)).filter((m): m is Member => m !== undefined);
    const identity = clusterLinks.filter((l) => l.evidence.some((e) => IDENTITY_KINDS.has(e.kind)));
    const fingerprints = new Set(members.flatMap((m) => m.fingerprints));
    const result = scoreCluster({
      members,
      refusedSignups: [...fingerprints].reduce((n, fp) => n + (refusals.get(fp) ?? 0), 0),
      linkKinds,
      links: clusterLinks.length,
      identityLinks: identity.length,
      syncedIdentityLinks: identity.filter((l) => l.evidence.some((e) => e.kind === 'sync_slot')).length,
      dailyQuota,
    });
    const evidence = clusterEvidence(members, clusterLinks, linkKinds, result);
    return { ...c, score: result.score, evidence };
  });

  // Membership is replaced wholesale; clusters that lost everyone are kept, not live, for the record.
  await progress(true);
  await db.$transaction(
    async (tx) => {
      await tx.clusterMember.deleteMany({});
      // Every cluster stops being live, and the upserts below make this run's live again: no list
      // of live ids, which could be longer than a statement may carry.
      await tx.cluster.updateMany({ where: { live: true }, data: { live: false, size: 0 } });
      for (const c of scored) {
        await tx.cluster.upsert({
          where: { id: c.id },
          create: {
            id: c.id,
            score: c.score,
            size: c.members.length,
            evidence: c.evidence,
            scoredAt: asOf,
            live: true,
          },
          update: {
            score: c.score,
            size: c.members.length,
            evidence: c.evidence,
            scoredAt: asOf,
            live: true,
          },
        });
      }
      const rows = scored.flatMap((c) => c.members.map((accountId) => ({ accountId, clusterId: c.id })));
      await inSlices(rows, 5_000, async (data) => {
        await tx.clusterMember.createMany({ data });
      });
      // A member's risk is its cluster's score; an account alone keeps its own (feature) risk.
      for (const c of scored) {
        await inSlices(c.members, STATEMENT_SLICE, async (slice) => {
          await tx.account.updateMany({ where: { id: { in: slice } }, data: { risk: c.score } });
        });
      }
    },
    // Two statements per cluster: the budget grows with their number, as the link graph's does.
    growingTransaction(120_000, 5, scored.length),
  );
  return { summary: { clusters: scored.length, timings: { clustersMs: Date.now() - started } } };
}

/**
 * Stage 4: the policy's action for every live cluster as the score stage stored it (an analyst's
 * label overrides: false_positive → none, confirmed_farm → suspend), then the arrivals on farm
 * networks, lone risky accounts, and tier-surge alerts.
 */
export async function analyseActions(
  deps: RunDeps,
  runId: string,
  asOf: Date,
  progress: Progress = noProgress,
): Promise<StageOutput> {
  const { db } = deps;
  const detection = deps.policy().detection;
  const started = Date.now();
  await progress(true);
  const live = await db.cluster.findMany({
    where: { live: true },
    select: { id: true, score: true, evidence: true, label: true, members: { select: { accountId: true } } },
    orderBy: { id: 'asc' },
  });
  const scored = live.map((c) => {
    const members = c.members.map((m) => m.accountId).sort();
    let action: ClusterAction = actionFor(c.score, members.length, detection.actions);
    if (c.label === 'false_positive') action = 'none';
    if (c.label === 'confirmed_farm') action = 'suspend';
    return { id: c.id, members, score: c.score, action, evidence: c.evidence as Prisma.InputJsonObject };
  });
  const memberOf = new Map<string, string>();
  for (const c of scored) for (const m of c.members) memberOf.set(m, c.id);

  const actionCounts: Record<string, number> = {};
  let accountsActed = 0;
  for (const c of scored) {
    actionCounts[c.action] = (actionCounts[c.action] ?? 0) + 1;
    if (c.action === 'none') continue;
    await progress();
    const result = await deps.actions.applyClusterAction({
      clusterId: c.id,
      action: c.action,
      score: c.score,
      evidence: c.evidence,
      memberIds: c.members,
      runId,
      at: asOf,
    });
    accountsActed += result.changed.length;
  }
  accountsActed += await challengeFarmNetworkArrivals(deps, scored, runId, asOf);
  accountsActed += await actOnLoneAccounts(deps, memberOf, runId, asOf);
  const surges = await tierSurges(db, asOf, detection.tierSurgeFactor);
  for (const s of surges) await deps.actions.alertTierSurge({ ...s, at: asOf });
  return {
    summary: {
      actions: actionCounts,
      accountsActed,
      tierSurges: surges.map((s) => s.tier),
      timings: { actionsMs: Date.now() - started },
    },
  };
}

/**
 * Tiers whose total usage on the last full day before asOf runs `factor` times above the median of
 * the seven days before it: the farm that no single account reveals still moves the aggregate.
 */
export async function tierSurges(
  db: Db,
  asOf: Date,
  factor: number,
): Promise<Array<{ tier: string; observed: number; baseline: number }>> {
  const day = Math.floor(asOf.getTime() / 86_400_000) * 86_400_000;
  const rows = await db.$queryRaw<Array<{ tier: string; day: Date; cost: bigint | number }>>`
    SELECT a.tier, date_trunc('day', h.hour) AS day, sum(h.cost) AS cost
    FROM usage_hours h JOIN accounts a ON a.id = h.account_id
    WHERE h.hour >= ${new Date(day - 8 * 86_400_000)} AND h.hour < ${new Date(day)}
    GROUP BY a.tier, date_trunc('day', h.hour)`;
  const byTier = new Map<string, Map<number, number>>();
  for (const r of rows) {
    const days = byTier.get(r.tier) ?? new Map<number, number>();
    days.set(r.day.getTime(), Number(r.cost));
    byTier.set(r.tier, days);
  }
  const out: Array<{ tier: string; observed: number; baseline: number }> = [];
  for (const [tier, days] of byTier) {
    const observed = days.get(day - 86_400_000) ?? 0;
    const before = Array.from({ length: 7 }, (_, i) => days.get(day - (i + 2) * 86_400_000) ?? 0).sort(
      (a, b) => a - b,
    );
    const baseline = before[3]!;
    // A week of history is needed before a surge means anything.
    if (baseline > 0 && observed >= factor * baseline) out.push({ tier, observed, baseline });
  }
  return out;
}

/** The tier's daily budget for one user: the longest user (or key) window of at least a day. */
export function dailyQuotaOf(policy: Policy, tier: string): number | null {
  const t = policy.enforcement.tiers[tier] ?? policy.enforcement.tiers[policy.enforcement.defaultTier];
  const windows = [...(t?.limits.user ?? []), ...(t?.limits.key ?? [])].filter((w) => w.window >= 86_400_000);
  if (windows.length === 0) return null;
  const w = windows.reduce((a, b) => (b.window > a.window ? b : a));
  return (w.limit * 86_400_000) / w.window;
}

type Member = MemberFacts & { fingerprints: string[] };

async function memberFacts(db: Db, ids: readonly string[], asOf: Date): Promise<Map<string, Member>> {
  const out = new Map<string, Member>();
  for (let i = 0; i < ids.length; i += 5_000) {
    const chunk = ids.slice(i, i + 5_000);
    const [accounts, flags, features] = await Promise.all([
      db.account.findMany({
        where: { id: { in: chunk } },
        select: { id: true, createdAt: true, phone: true, phoneVerifiedAt: true },
      }),
      db.signal.findMany({
        where: {
          accountId: { in: chunk },
          kind: { in: ['disposable', 'hosting_asn', 'fingerprint'] },
          at: { lte: asOf },
        },
        select: { accountId: true, kind: true, value: true },
      }),
      db.accountFeature.findMany({
        where: { accountId: { in: chunk } },
        select: { accountId: true, features: true },
      }),
    ]);
    const featureOf = new Map(features.map((f) => [f.accountId, f.features as Record<string, unknown>]));
    for (const a of accounts) {
      const phoneAt = a.phoneVerifiedAt ?? a.createdAt;
      out.set(a.id, {
        accountId: a.id,
        createdAt: a.createdAt.getTime(),
        disposable: false,
        hosting: false,
        features: featureOf.get(a.id) ?? null,
        phone: a.phone && phoneAt <= asOf ? a.phone : null,
        fingerprints: [],
      });
    }
    for (const f of flags) {
      const m = out.get(f.accountId);
      if (!m) continue;
      if (f.kind === 'disposable') m.disposable = true;
      else if (f.kind === 'fingerprint') m.fingerprints.push(f.value);
      else m.hosting = true;
    }
  }
  return out;
}

function clusterEvidence(
  members: readonly MemberFacts[],
  links: readonly ComputedLink[],
  linkKinds: ReadonlyMap<string, number>,
  result: ReturnType<typeof scoreCluster>,
): Prisma.InputJsonObject {
  // Per kind: how many members share it through some link, and its mean weight in those links.
  const membersByKind = new Map<string, Set<string>>();
  const weightByKind = new Map<string, number>();
  for (const l of links) {
    for (const e of l.evidence) {
      const set = membersByKind.get(e.kind) ?? new Set<string>();
      set.add(l.a).add(l.b);
      membersByKind.set(e.kind, set);
      weightByKind.set(e.kind, (weightByKind.get(e.kind) ?? 0) + e.weight);
    }
  }
  const signals = [...membersByKind]
    .map(([kind, set]) => ({
      kind,
      members: set.size,
      weight: Math.round(((weightByKind.get(kind) ?? 0) / (linkKinds.get(kind) ?? 1)) * 1000) / 1000,
    }))
    .sort((a, b) => b.members * b.weight - a.members * a.weight);
  const timeline: Record<string, number> = {};
  for (const m of members) {
    const day = new Date(m.createdAt).toISOString().slice(0, 10);
    timeline[day] = (timeline[day] ?? 0) + 1;
  }
  return { signals, features: result.features, parts: result.parts, timeline, links: links.length };
}

/**
 * Accounts made on a network a suspended farm dominates (farm-networks.ts) are held to that farm:
 * the farm's cluster challenges them, so its audit trail names them and undoing the cluster
 * restores them too. A member with a verified phone is left alone, as for any challenge.
 */
async function challengeFarmNetworkArrivals(
  deps: RunDeps,
  scored: ReadonlyArray<{
    id: string;
    members: string[];
    action: ClusterAction;
    score: number;
    evidence: Prisma.InputJsonObject;
  }>,
  runId: string,
  asOf: Date,
): Promise<number> {
  const farms = new Map(scored.filter((c) => c.action === 'suspend').map((c) => [c.id, c.members]));
  if (farms.size === 0) return 0;
  const { arrivals } = await farmNetworkArrivals(deps.db, farms, asOf);
  let acted = 0;
  for (const c of scored) {
    const ids = arrivals.filter((a) => a.clusterId === c.id).map((a) => a.accountId);
    if (ids.length === 0) continue;
    const result = await deps.actions.applyClusterAction({
      clusterId: c.id,
      action: 'challenge',
      score: c.score,
      evidence: c.evidence,
      memberIds: ids,
      runId,
      at: asOf,
    });
    acted += result.changed.length;
  }
  return acted;
}

/**
 * An account alone can be a farm's worth of extraction (a 24/7 limit-hugger): its own risk maps to
 * review (recorded) or throttle.
 */
async function actOnLoneAccounts(
  deps: RunDeps,
  memberOf: ReadonlyMap<string, string>,
  runId: string,
  asOf: Date,
): Promise<number> {
  const policy = deps.policy().detection.account;
  const risky = await deps.db.accountFeature.findMany({
    where: { risk: { gte: policy.review } },
    select: { accountId: true, risk: true },
  });
  let acted = 0;
  for (const r of risky) {
    if (memberOf.has(r.accountId)) continue;
    await deps.db.account.updateMany({ where: { id: r.accountId }, data: { risk: r.risk } });
    if (r.risk < policy.throttle) continue;
    // Only an active account that no analyst restored: never a downgrade, never against an appeal.
    const changed = await deps.db.account.updateMany({
      where: { id: r.accountId, status: 'active', NOT: { statusReason: { startsWith: 'appeal:' } } },
      data: { status: 'throttled', statusReason: `risk:${runId}` },
    });
    if (changed.count === 0) continue;
    await deps.audit.record({
      actor: `analysis:${runId}`,
      action: 'account.throttled',
      subjectType: 'account',
      subjectId: r.accountId,
      data: { previousStatus: 'active', risk: r.risk, reason: 'account risk', asOf: asOf.toISOString() },
    });
    await deps.apiKeys.invalidateAccount(r.accountId);
    acted++;
  }
  return acted;
}
