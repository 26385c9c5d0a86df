import { Router } from 'express';
import { z } from 'zod';
import type { AccountService } from '../accounts/service.ts';
import type { Db } from '../db/client.ts';
import type { Cluster, Prisma } from '../generated/prisma/client.ts';
import { principalOf, requireScope } from '../http/auth.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import type { Policy, TierPolicy } from '../policy/policy.ts';
import { type ActionService, topSignals } from './actions.ts';

// The analyst's view of detection: clusters with their evidence, an account's place in the link
// graph, the usage baseline of real accounts, and the actions (with their undo) an analyst takes.

export interface DetectionRouteDeps {
  db: Db;
  actions: ActionService;
  accounts: Pick<AccountService, 'get'>;
  policy: () => Policy;
}

const ACTIONS = ['none', 'review', 'throttle', 'challenge', 'suspend'] as const;
const DAY_MS = 86_400_000;
const BASELINE_DAYS = 14;

const clusterParams = z.strictObject({
  id: z.string().regex(/^clu_[0-9a-z]{22}$/, 'must be a cluster id (clu_…)'),
});
const accountParams = z.strictObject({
  id: z.string().regex(/^acc_[0-9a-z]{22}$/, 'must be an account id (acc_…)'),
});
const listQuery = z.strictObject({
  action: z.enum(ACTIONS).optional(),
  minScore: z.coerce.number().min(0).max(1).optional(),
  minSize: z.coerce.number().int().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});
const membersQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(500),
  cursor: z.string().max(512).optional(),
});
/** Members the cluster view shows; the rest come from GET /v1/clusters/{id}/members. */
const MEMBERS_IN_VIEW = 500;
const noteBody = z.strictObject({ note: z.string().max(1000).optional() });
const labelBody = z.strictObject({
  label: z.enum(['confirmed_farm', 'false_positive']),
  note: z.string().max(1000).optional(),
});

// ---- pure helpers -------------------------------------------------------------------------------

const cursorShape = z.strictObject({ s: z.number(), i: z.string().regex(/^clu_[0-9a-z]{22}$/) });
type Cursor = z.infer<typeof cursorShape>;

/** Cursors are opaque to callers: a position as base64url JSON, checked against its shape on return. */
const encodeWith = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** The position after the last cluster of a page (score desc, id asc). */
export const encodeCursor = (c: Cursor): string => encodeWith(c);

export function decodeCursor(raw: string): Cursor | null {
  return decodeWith(cursorShape, raw);
}

function decodeWith<T>(shape: z.ZodType<T>, raw: string): T | null {
  try {
    const parsed = shape.safeParse(JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The position after the last member of a page (signup time, then id, both ascending). */
const memberCursorShape = z.strictObject({ c: z.number().int(), i: z.string().regex(/^acc_[0-9a-z]{22}$/) });
type MemberCursor = z.infer<typeof memberCursorShape>;

const badCursor = () =>
  new ProblemError('validation_failed', {
    detail: 'Invalid query: cursor',
    errors: [{ field: 'cursor', message: 'must be a nextCursor from an earlier page' }],
  });

/** A tier's daily limits per key and user: the limit of the longest window of at least a day. */
export function dailyLimits(tier: TierPolicy | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const dimension of ['key', 'user'] as const) {
    const windows = (tier?.limits[dimension] ?? []).filter((w) => w.window >= DAY_MS);
    const longest = windows.reduce<(typeof windows)[number] | undefined>(
      (best, w) => (!best || w.window > best.window ? w : best),
      undefined,
    );
    if (longest) out[dimension] = longest.limit;
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export interface LinkSignal {
  kind: string;
  weight: number;
  value?: string;
  shared?: number;
}

/** The signals a link rests on, from whatever the linking engine stored; malformed entries are skipped. */
export function linkSignals(evidence: unknown): LinkSignal[] {
  const items = Array.isArray(evidence) ? evidence : isObject(evidence) ? evidence.signals : undefined;
  if (!Array.isArray(items)) return [];
  const out: LinkSignal[] = [];
  for (const item of items) {
    if (!isObject(item) || typeof item.kind !== 'string') continue;
    const signal: LinkSignal = {
      kind: item.kind,
      weight: typeof item.weight === 'number' && Number.isFinite(item.weight) ? item.weight : 0,
    };
    if (typeof item.value === 'string') signal.value = item.value;
    if (typeof item.shared === 'number' && Number.isFinite(item.shared))
      signal.shared = Math.trunc(item.shared);
    out.push(signal);
  }
  return out;
}

// ---- reads --------------------------------------------------------------------------------------

const summary = (c: Cluster) => ({
  id: c.id,
  score: c.score,
  action: c.action,
  size: c.size,
  label: c.label,
  topSignals: topSignals(c.evidence),
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
});

const clusterNotFound = (id: string) => new ProblemError('not_found', { detail: `No cluster ${id}` });

function createReader(db: Db, policy: () => Policy) {
  /** A page of a cluster's members, oldest signup first; a farm can have tens of thousands. */
  const members = async (id: string, limit: number, cursor?: string) => {
    const after = cursor === undefined ? undefined : decodeWith(memberCursorShape, cursor);
    if (after === null) throw badCursor();
    const where: Prisma.AccountWhereInput = { membership: { clusterId: id } };
    if (after) {
      const at = new Date(after.c);
      where.OR = [{ createdAt: { gt: at } }, { createdAt: at, id: { gt: after.i } }];
    }
    const rows = await db.account.findMany({
      where,
      select: { id: true, externalId: true, status: true, createdAt: true },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      members: page.map((account) => ({
        accountId: account.id,
        externalId: account.externalId,
        status: account.status,
        createdAt: account.createdAt.toISOString(),
      })),
      nextCursor:
        rows.length > limit && last
          ? encodeWith({ c: last.createdAt.getTime(), i: last.id } satisfies MemberCursor)
          : null,
    };
  };

  return {
    async listClusters(q: z.infer<typeof listQuery>) {
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      if (after === null) throw badCursor();
      const filters: Prisma.ClusterWhereInput[] = [{ live: true }];
      if (q.action) filters.push({ action: q.action });
      if (q.minScore !== undefined) filters.push({ score: { gte: q.minScore } });
      if (q.minSize !== undefined) filters.push({ size: { gte: q.minSize } });
      if (after) filters.push({ OR: [{ score: { lt: after.s } }, { score: after.s, id: { gt: after.i } }] });
      const rows = await db.cluster.findMany({
        where: { AND: filters },
        orderBy: [{ score: 'desc' }, { id: 'asc' }],
        take: q.limit + 1,
      });
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      return {
        clusters: page.map(summary),
        nextCursor: rows.length > q.limit && last ? encodeCursor({ s: last.score, i: last.id }) : null,
      };
    },

    async cluster(id: string) {
      const cluster = await db.cluster.findUnique({ where: { id } });
      if (!cluster) throw clusterNotFound(id);
      const first = await members(id, MEMBERS_IN_VIEW);
      return {
        ...summary(cluster),
        members: first.members,
        membersNextCursor: first.nextCursor,
        evidence: isObject(cluster.evidence) ? cluster.evidence : {},
      };
    },

    async clusterMembers(id: string, q: z.infer<typeof membersQuery>) {
      const page = await members(id, q.limit, q.cursor);
      // An empty page of a cluster that does not exist would read as a dispersed one: say which.
      if (
        page.members.length === 0 &&
        !(await db.cluster.findUnique({ where: { id }, select: { id: true } }))
      )
        throw clusterNotFound(id);
      return page;
    },

    async accountLinks(id: string) {
      const account = await db.account.findUnique({
        where: { id },
        select: { id: true, risk: true, membership: { select: { clusterId: true } } },
      });
      if (!account) throw new ProblemError('not_found', { detail: `No account ${id}` });
      const [feature, signals, links] = await Promise.all([
        db.accountFeature.findUnique({ where: { accountId: id } }),
        db.signal.findMany({
          where: { accountId: id },
          orderBy: [{ kind: 'asc' }, { at: 'asc' }],
          take: 1_000,
        }),
        db.link.findMany({
          where: { OR: [{ accountA: id }, { accountB: id }] },
          orderBy: [{ weight: 'desc' }, { accountA: 'asc' }, { accountB: 'asc' }],
          take: 500,
        }),
      ]);
      return {
        accountId: id,
        clusterId: account.membership?.clusterId ?? null,
        risk: feature?.risk ?? account.risk,
        features: feature && isObject(feature.features) ? feature.features : null,
        signals: signals.map((s) => ({ kind: s.kind, value: s.value, at: s.at.toISOString() })),
        links: links.map((l) => ({
          accountId: l.accountA === id ? l.accountB : l.accountA,
          weight: l.weight,
          signals: linkSignals(l.evidence),
        })),
      };
    },

    /**
     * Daily cost of real accounts per tier: active, and in no cluster that is acted on. A sample is
     * one account's total on one UTC day with usage (idle days say nothing about how close real
     * users come to a daily limit), over the 14 days of event time ending at the newest usage hour.
     */
    async usageBaseline() {
      const rows = await db.$queryRaw<
        Array<{ tier: string; accounts: number; p50: number; p95: number; p99: number }>
      >`
        WITH horizon AS (SELECT max(hour) AS newest FROM usage_hours),
        days AS (
          SELECT a.tier, u.account_id, date_trunc('day', u.hour AT TIME ZONE 'UTC') AS day,
                 sum(u.cost)::float8 AS total
          FROM usage_hours u
          CROSS JOIN horizon h
          JOIN accounts a ON a.id = u.account_id
          WHERE u.hour > h.newest - make_interval(days => ${BASELINE_DAYS}::int)
            AND a.status = 'active'
            AND NOT EXISTS (
              SELECT 1 FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id
              WHERE m.account_id = a.id AND c.action IN ('throttle', 'challenge', 'suspend'))
          GROUP BY a.tier, u.account_id, day
        )
        SELECT tier,
               count(DISTINCT account_id)::int AS accounts,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY total) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY total) AS p95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY total) AS p99
        FROM days GROUP BY tier ORDER BY tier`;
      const { tiers, defaultTier } = policy().enforcement;
      const byTier = new Map(rows.map((r) => [r.tier, r]));
      const names = [
        ...Object.keys(tiers),
        ...rows.map((r) => r.tier).filter((t) => !Object.hasOwn(tiers, t)),
      ];
      return {
        tiers: names.map((tier) => {
          const r = byTier.get(tier);
          // Enforcement gives an unknown tier the default tier's limits; so does the baseline.
          const limits = Object.hasOwn(tiers, tier) ? tiers[tier] : tiers[defaultTier];
          return {
            tier,
            accounts: r?.accounts ?? 0,
            p50: r?.p50 ?? 0,
            p95: r?.p95 ?? 0,
            p99: r?.p99 ?? 0,
            dailyLimits: dailyLimits(limits),
          };
        }),
      };
    },
  };
}

// ---- routes -------------------------------------------------------------------------------------

export function detectionRoutes(deps: DetectionRouteDeps): Router {
  const router = Router();
  const admin = requireScope('admin');
  const reader = createReader(deps.db, deps.policy);

  router.get('/clusters', admin, async (req, res) => {
    res.json(await reader.listClusters(parseOrThrow(listQuery, req.query, 'query')));
  });

  router.get('/clusters/:id', admin, async (req, res) => {
    const { id } = parseOrThrow(clusterParams, req.params, 'params');
    res.json(await reader.cluster(id));
  });

  router.get('/clusters/:id/members', admin, async (req, res) => {
    const { id } = parseOrThrow(clusterParams, req.params, 'params');
    res.json(await reader.clusterMembers(id, parseOrThrow(membersQuery, req.query, 'query')));
  });

  router.post('/clusters/:id/label', admin, async (req, res) => {
    const { id } = parseOrThrow(clusterParams, req.params, 'params');
    const { label, note } = parseOrThrow(labelBody, req.body ?? {}, 'body');
    await deps.actions.labelCluster(id, label, principalOf(res).tokenId, note);
    res.json(await reader.cluster(id));
  });

  router.post('/clusters/:id/suspend', admin, async (req, res) => {
    const { id } = parseOrThrow(clusterParams, req.params, 'params');
    const { note } = parseOrThrow(noteBody, req.body ?? {}, 'body');
    await deps.actions.suspendCluster(id, principalOf(res).tokenId, note);
    res.json(await reader.cluster(id));
  });

  router.post('/clusters/:id/unsuspend', admin, async (req, res) => {
    const { id } = parseOrThrow(clusterParams, req.params, 'params');
    const { note } = parseOrThrow(noteBody, req.body ?? {}, 'body');
    await deps.actions.unsuspendCluster(id, principalOf(res).tokenId, note);
    res.json(await reader.cluster(id));
  });

  router.post('/accounts/:id/suspend', admin, async (req, res) => {
    const { id } = parseOrThrow(accountParams, req.params, 'params');
    const { note } = parseOrThrow(noteBody, req.body ?? {}, 'body');
    await deps.actions.suspendAccount(id, principalOf(res).tokenId, note);
    res.json(await deps.accounts.get(id));
  });

  router.post('/accounts/:id/unsuspend', admin, async (req, res) => {
    const { id } = parseOrThrow(accountParams, req.params, 'params');
    const { note } = parseOrThrow(noteBody, req.body ?? {}, 'body');
    await deps.actions.unsuspendAccount(id, principalOf(res).tokenId, note);
    res.json(await deps.accounts.get(id));
  });

  router.get('/accounts/:id/links', admin, async (req, res) => {
    const { id } = parseOrThrow(accountParams, req.params, 'params');
    res.json(await reader.accountLinks(id));
  });

  router.get('/analysis/baseline', admin, async (_req, res) => {
    res.json(await reader.usageBaseline());
  });

  return router;
}
