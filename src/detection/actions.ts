// What Gatehouse does to a farm once it is found, and how an analyst takes it back.
//
// Decisions a caller can rely on:
// - A cluster's action reaches all of its members in one transaction, or none of them.
// - Members are only ever moved up (active → throttled → challenged → suspended); a weaker verdict
//   later leaves a stronger one in place, and a cluster's own action never drops on its own.
// - A member an analyst restored (statusReason `appeal:…`) or whose cluster is labelled
//   false_positive is never touched by automatic actions again; only an analyst's own call is.
// - Every status change is audited with the state it replaced, so an undo knows what to restore.
// - Applying the same verdict twice changes nothing and writes nothing: state is compared first.
// - After the commit every changed account's cached keys are dropped on every instance, so
//   enforcement answers with the new status within a second.
import type { JobsOptions } from 'bullmq';
import { z } from 'zod';
import { pendingVerifications } from '../accounts/service.ts';
import type { AuditLog } from '../audit/audit.ts';
import { type Db, growingTransaction } from '../db/client.ts';
import type { Account, Prisma } from '../generated/prisma/client.ts';
import type { AccountStatus, ClusterAction } from '../generated/prisma/enums.ts';
import { ProblemError } from '../http/problem.ts';
import type { KeyService } from '../keys/service.ts';
import { inSlices, STATEMENT_SLICE } from '../lib/in-slices.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';

export type { ClusterAction };

/** One signal kind that links a cluster: how many members share it and what it weighs. */
export type EvidenceSignal = { kind: string; members: number; weight: number };

/**
 * What the linking engine records about a cluster (features, score parts, signup timeline, …).
 * Actions read only `signals`, and tolerate it missing or malformed.
 */
export type ClusterEvidence = Prisma.InputJsonObject & { readonly signals?: ReadonlyArray<EvidenceSignal> };

export interface ApplyClusterActionInput {
  clusterId: string;
  /** The policy's verdict for `score`. */
  action: ClusterAction;
  score: number;
  evidence: ClusterEvidence;
  memberIds: readonly string[];
  /** The analysis run deciding it; named in the audit trail and the alert. */
  runId: string;
  /** Event time of the run: the cluster's actedAt the first time it is acted on. */
  at: Date;
}

export interface ApplyClusterActionResult {
  /** Members whose status this call changed (none on a retry). */
  changed: string[];
  /** Members the action would have changed but may not: restored on appeal, or cleared as false positives. */
  spared: string[];
  /** Whether an operator alert was queued. */
  alerted: boolean;
}

export type ClusterLabel = 'confirmed_farm' | 'false_positive';

export const operatorAlertSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.enum(['cluster.suspended', 'cluster.throttled']),
    clusterId: z.string(),
    size: z.number().int(),
    score: z.number(),
    topSignals: z.array(z.string()),
    at: z.string(),
  }),
  z.object({
    type: z.literal('tier.surge'),
    tier: z.string(),
    observed: z.number(),
    baseline: z.number(),
    factor: z.number(),
    at: z.string(),
  }),
]);

/** A signed POST to the operator's alert endpoint (payload of the `alerts` queue). */
export type OperatorAlert = z.infer<typeof operatorAlertSchema>;

/** The one queue actions write to; the app's Queues satisfies it once `alerts` is defined. */
export interface AlertQueue {
  add(queue: 'alerts', name: string, data: OperatorAlert, opts?: JobsOptions): Promise<void>;
}

export interface ActionDeps {
  db: Db;
  audit: AuditLog;
  apiKeys: Pick<KeyService, 'invalidateAccount'>;
  queues?: AlertQueue;
  logger: Logger;
  /** Alerts are queued only when an endpoint is configured. */
  alertWebhook?: { url: string; secret: string };
  /** Which verifications an account restored on appeal still owes; email only when not given. */
  policy?: () => Policy;
  /** Accounts one statement reads or moves (10,000); tests make it small to cross slices. */
  statementSlice?: number;
}

export interface ActionService {
  applyClusterAction(input: ApplyClusterActionInput): Promise<ApplyClusterActionResult>;
  alertTierSurge(input: { tier: string; observed: number; baseline: number; at: Date }): Promise<void>;
  suspendAccount(id: string, actor: string, note?: string): Promise<{ changed: string[] }>;
  /** Back to active (pending while verification is owed), protected from automatic actions. */
  unsuspendAccount(id: string, actor: string, note?: string): Promise<{ changed: string[] }>;
  suspendCluster(id: string, actor: string, note?: string): Promise<{ changed: string[] }>;
  /** Restores every account the cluster acted on; the cluster's action becomes none, its label stays. */
  unsuspendCluster(id: string, actor: string, note?: string): Promise<{ changed: string[] }>;
  /** false_positive also undoes the cluster's actions and stops its signals linking its members. */
  labelCluster(id: string, label: ClusterLabel, actor: string, note?: string): Promise<{ changed: string[] }>;
}

type Tx = Prisma.TransactionClient;

// A farm of thousands is updated in one transaction. A cluster's action writes a few statements per
// thousand members (~0.4 ms a member measured at 20,000 on a 2-core machine): a minute, plus 2 ms
// a member.
const txOptionsFor = (members: number) => growingTransaction(60_000, 2, members);
const SYSTEM_ACTOR = 'detection';
const FLAGGED: readonly AccountStatus[] = ['throttled', 'challenged', 'suspended'] satisfies FlaggedStatus[];
const RANK: Record<ClusterAction, number> = { none: 0, review: 1, throttle: 2, challenge: 3, suspend: 4 };
const ACCOUNT_EVENT = {
  suspended: 'account.suspended',
  throttled: 'account.throttled',
  challenged: 'account.challenged',
} as const;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const finite = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The linking signals of a cluster's evidence, strongest first; malformed entries are skipped. */
export function evidenceSignals(evidence: unknown): EvidenceSignal[] {
  if (!isObject(evidence) || !Array.isArray(evidence.signals)) return [];
  const out: EvidenceSignal[] = [];
  for (const item of evidence.signals) {
    if (!isObject(item) || typeof item.kind !== 'string' || item.kind === '') continue;
    const members = Array.isArray(item.members) ? item.members.length : finite(item.members);
    out.push({ kind: item.kind, members, weight: finite(item.weight) });
  }
  return out.sort((a, b) => b.weight - a.weight || b.members - a.members || a.kind.localeCompare(b.kind));
}

/** The kinds that link a cluster most, for lists and alerts. */
export function topSignals(evidence: unknown, n = 5): string[] {
  return [...new Set(evidenceSignals(evidence).map((s) => s.kind))].slice(0, n);
}

interface MemberState {
  status: AccountStatus;
  statusReason: string | null;
  requiresPhone: boolean;
}

type FlaggedStatus = 'throttled' | 'challenged' | 'suspended';

export type MemberDecision =
  | { kind: 'change'; next: MemberState & { status: FlaggedStatus } }
  | { kind: 'spare' }
  | { kind: 'keep' };

/**
 * What a cluster action does to one member. Pure: the caller locks the member and applies it.
 * A verified phone already answers the step-up, so a challenge leaves such a member as it is.
 */
export function decideMember(
  action: ClusterAction,
  clusterId: string,
  member: MemberState & { phoneVerified: boolean; clearedAsFalsePositive: boolean },
): MemberDecision {
  const statusReason = `cluster:${clusterId}:${action}`;
  let next: (MemberState & { status: FlaggedStatus }) | null = null;
  if (action === 'suspend' && member.status !== 'suspended') {
    next = { status: 'suspended', statusReason, requiresPhone: member.requiresPhone };
  } else if (action === 'throttle' && member.status === 'active') {
    next = { status: 'throttled', statusReason, requiresPhone: member.requiresPhone };
  } else if (
    action === 'challenge' &&
    (member.status === 'active' || member.status === 'throttled') &&
    !member.phoneVerified
  ) {
    next = { status: 'challenged', statusReason, requiresPhone: true };
  }
  if (!next) return { kind: 'keep' };
  if (member.statusReason?.startsWith('appeal:') || member.clearedAsFalsePositive) return { kind: 'spare' };
  return { kind: 'change', next };
}

/** Key order and absent-vs-undefined do not matter: jsonb gives keys back in its own order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    const entries = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

const summaryOf = (evidence: unknown, size: number, score: number) => ({
  size,
  score,
  topSignals: topSignals(evidence),
  signals: evidenceSignals(evidence).slice(0, 10),
});

const clusterNotFound = (id: string) => new ProblemError('not_found', { detail: `No cluster ${id}` });
const accountNotFound = (id: string) => new ProblemError('not_found', { detail: `No account ${id}` });

/** Row locks in id order, so concurrent actions on overlapping clusters cannot deadlock. */
async function lockAccounts(tx: Tx, ids: readonly string[], slice = STATEMENT_SLICE): Promise<Account[]> {
  if (ids.length === 0) return [];
  await tx.$queryRaw`SELECT id FROM accounts WHERE id = ANY(${[...ids]}::text[]) ORDER BY id FOR UPDATE`;
  const sorted = [...ids].sort();
  return inSlices(sorted, slice, (part) =>
    tx.account.findMany({ where: { id: { in: part } }, orderBy: { id: 'asc' } }),
  );
}

async function lockCluster(tx: Tx, id: string) {
  await tx.$queryRaw`SELECT id FROM clusters WHERE id = ${id} FOR UPDATE`;
  const cluster = await tx.cluster.findUnique({ where: { id } });
  if (!cluster) throw clusterNotFound(id);
  return cluster;
}

/**
 * Each account to its next state, in one UPDATE per distinct state rather than one per account: a
 * farm of tens of thousands is acted on within its transaction's budget.
 */
async function updateAccounts(
  tx: Tx,
  slice: number,
  changes: ReadonlyArray<{ account: Pick<Account, 'id'>; next: MemberState }>,
): Promise<void> {
  const groups = new Map<string, { next: MemberState; ids: string[] }>();
  for (const { account, next } of changes) {
    const key = JSON.stringify([next.status, next.statusReason, next.requiresPhone]);
    const group = groups.get(key) ?? { next, ids: [] };
    group.ids.push(account.id);
    groups.set(key, group);
  }
  for (const { next, ids } of groups.values()) {
    await inSlices(ids, slice, async (part) => {
      await tx.account.updateMany({
        where: { id: { in: part } },
        data: { status: next.status, statusReason: next.statusReason, requiresPhone: next.requiresPhone },
      });
    });
  }
}

const previousOf = (a: Pick<Account, 'status' | 'statusReason' | 'requiresPhone'>) => ({
  status: a.status,
  statusReason: a.statusReason,
  requiresPhone: a.requiresPhone,
});

export function createActionService(deps: ActionDeps): ActionService {
  const slice = deps.statementSlice ?? STATEMENT_SLICE;
  const required = () => deps.policy?.().signup.verification.required ?? (['email'] as const);

  // A cluster-wide action's budget, from the members it has now (an undo may also reach accounts
  // that left since; those are few).
  const clusterBudget = async (id: string) =>
    txOptionsFor(await deps.db.clusterMember.count({ where: { clusterId: id } }));

  const invalidate = async (ids: readonly string[]) => {
    const results = await Promise.allSettled(ids.map((id) => deps.apiKeys.invalidateAccount(id)));
    const failed = results.filter((r) => r.status === 'rejected').length;
    // The status is committed; instances that missed the message drop their copy within the cache TTL.
    if (failed > 0)
      deps.logger.error({ failed, accounts: ids.length }, 'could not publish account invalidations');
  };

  const queueAlert = async (alert: OperatorAlert, jobId: string) => {
    if (!deps.alertWebhook || !deps.queues) return false;
    try {
      await deps.queues.add('alerts', alert.type, alert, { jobId });
      return true;
    } catch (err) {
      deps.logger.error(
        { err: { message: (err as Error).message }, type: alert.type },
        'could not queue an operator alert',
      );
      return false;
    }
  };

  /**
   * For each account, whether it owed a phone before detection challenged it: the newest audited
   * change (of its last 20) that moved it out of pending or active says so. Unknown history keeps
   * what is set, unless the account is challenged (the step-up is what is being taken back). One
   * query per ten thousand accounts, not one per account.
   */
  const requiresPhoneBefore = async (tx: Tx, accounts: readonly Account[]): Promise<Map<string, boolean>> => {
    const history = new Map<string, unknown[]>();
    const events = await inSlices(
      accounts.map((a) => a.id),
      slice,
      (part) =>
        tx.auditEvent.findMany({
          where: {
            subjectType: 'account',
            subjectId: { in: part },
            action: { in: Object.values(ACCOUNT_EVENT) },
          },
          orderBy: [{ at: 'desc' }, { id: 'desc' }],
          select: { subjectId: true, data: true },
        }),
    );
    for (const { subjectId, data } of events) {
      const list = history.get(subjectId) ?? [];
      if (list.length < 20) list.push(data);
      history.set(subjectId, list);
    }
    const owed = new Map<string, boolean>();
    for (const account of accounts) {
      let answer = account.status === 'challenged' ? false : account.requiresPhone;
      for (const data of history.get(account.id) ?? []) {
        const previous = isObject(data) && isObject(data.previous) ? data.previous : null;
        if (previous && (previous.status === 'active' || previous.status === 'pending')) {
          answer = previous.requiresPhone === true;
          break;
        }
      }
      owed.set(account.id, answer);
    }
    return owed;
  };

  /** Restores flagged accounts, marking them as cleared by `actor`; returns the ids it changed. */
  const restore = async (
    tx: Tx,
    accounts: readonly Account[],
    actor: string,
    data: Record<string, Prisma.InputJsonValue | null>,
  ): Promise<string[]> => {
    const flagged = accounts.filter((a) => FLAGGED.includes(a.status));
    const owedPhone = await requiresPhoneBefore(tx, flagged);
    const changes = flagged.map((account) => {
      const requiresPhone = owedPhone.get(account.id) === true && account.phoneVerifiedAt === null;
      const owes = pendingVerifications({ ...account, requiresPhone }, required());
      const next: MemberState = {
        status: owes.length === 0 ? 'active' : 'pending',
        statusReason: `appeal:${actor}`,
        requiresPhone,
      };
      return { account, next };
    });
    await updateAccounts(tx, slice, changes);
    await deps.audit.recordMany(
      changes.map(({ account, next }) => ({
        actor,
        action: 'account.restored',
        subjectType: 'account',
        subjectId: account.id,
        data: { ...data, status: next.status, previous: previousOf(account) },
      })),
      tx,
    );
    return changes.map((c) => c.account.id);
  };

  /** Every account this cluster's actions still hold: its members and those that moved away since. */
  const heldBy = async (tx: Tx, clusterId: string): Promise<Account[]> => {
    const [members, events] = await Promise.all([
      tx.clusterMember.findMany({ where: { clusterId }, select: { accountId: true } }),
      tx.auditEvent.findMany({
        where: {
          subjectType: 'cluster',
          subjectId: clusterId,
          action: { in: ['cluster.acted', 'cluster.suspended'] },
        },
        select: { data: true },
      }),
    ]);
    const ids = new Set(members.map((m) => m.accountId));
    for (const { data } of events) {
      if (isObject(data) && Array.isArray(data.accounts)) {
        for (const id of data.accounts) if (typeof id === 'string') ids.add(id);
      }
    }
    const prefix = `cluster:${clusterId}:`;
    const locked = await lockAccounts(tx, [...ids], slice);
    return locked.filter((a) => a.statusReason?.startsWith(prefix));
  };

  const undoCluster = async (tx: Tx, clusterId: string, actor: string, note: string | undefined) => {
    const held = await heldBy(tx, clusterId);
    return restore(tx, held, actor, { clusterId, note: note ?? null });
  };

  return {
    async applyClusterAction(input) {
      const ids = [...new Set(input.memberIds)];
      const outcome = await deps.db.$transaction(async (tx) => {
        const cluster = await lockCluster(tx, input.clusterId);
        const falsePositive = cluster.label === 'false_positive';
        const accounts = await lockAccounts(tx, ids, slice);
        const memberships = await inSlices(ids, slice, (part) =>
          tx.clusterMember.findMany({
            where: { accountId: { in: part } },
            select: { accountId: true, cluster: { select: { label: true } } },
          }),
        );
        const cleared = new Set(
          memberships.filter((m) => m.cluster.label === 'false_positive').map((m) => m.accountId),
        );

        const changes: Array<{ account: Account; next: MemberState & { status: FlaggedStatus } }> = [];
        const spared: string[] = [];
        for (const account of accounts) {
          const decision = decideMember(input.action, input.clusterId, {
            ...previousOf(account),
            phoneVerified: account.phoneVerifiedAt !== null,
            clearedAsFalsePositive: falsePositive || cleared.has(account.id),
          });
          if (decision.kind === 'change') changes.push({ account, next: decision.next });
          else if (decision.kind === 'spare') spared.push(account.id);
        }

        // An analyst's false_positive stands until they relabel: the verdict is recorded, not acted on.
        const action =
          falsePositive || RANK[cluster.action] >= RANK[input.action] ? cluster.action : input.action;
        const acts = RANK[action] >= RANK.throttle;
        const actedAt = cluster.actedAt ?? (acts ? input.at : null);
        const clusterChanged =
          action !== cluster.action ||
          input.score !== cluster.score ||
          actedAt?.getTime() !== cluster.actedAt?.getTime() ||
          canonicalJson(input.evidence) !== canonicalJson(cluster.evidence);
        if (clusterChanged) {
          await tx.cluster.update({
            where: { id: cluster.id },
            data: { action, score: input.score, evidence: input.evidence, actedAt },
          });
        }
        if (changes.length === 0 && action === cluster.action) return { changed: [], spared };

        const summary = summaryOf(input.evidence, ids.length, input.score);
        await updateAccounts(tx, slice, changes);
        await deps.audit.recordMany(
          changes.map(({ account, next }) => ({
            actor: SYSTEM_ACTOR,
            action: ACCOUNT_EVENT[next.status],
            subjectType: 'account',
            subjectId: account.id,
            data: {
              clusterId: cluster.id,
              runId: input.runId,
              action: input.action,
              status: next.status,
              previous: previousOf(account),
              evidence: summary,
              at: input.at.toISOString(),
            },
          })),
          tx,
        );
        const changed = changes.map((c) => c.account.id);
        await deps.audit.record(
          {
            actor: SYSTEM_ACTOR,
            action: 'cluster.acted',
            subjectType: 'cluster',
            subjectId: cluster.id,
            data: {
              runId: input.runId,
              action,
              previousAction: cluster.action,
              score: input.score,
              evidence: summary,
              accounts: changed,
              spared,
              at: input.at.toISOString(),
            },
          },
          tx,
        );
        return { changed, spared };
      }, txOptionsFor(ids.length));

      await invalidate(outcome.changed);
      let alerted = false;
      if (outcome.changed.length > 0 && (input.action === 'suspend' || input.action === 'throttle')) {
        alerted = await queueAlert(
          {
            type: input.action === 'suspend' ? 'cluster.suspended' : 'cluster.throttled',
            clusterId: input.clusterId,
            size: ids.length,
            score: input.score,
            topSignals: topSignals(input.evidence),
            at: input.at.toISOString(),
          },
          `cluster_${input.clusterId}_${input.action}_${input.runId}`,
        );
      }
      return { ...outcome, alerted };
    },

    async alertTierSurge({ tier, observed, baseline, at }) {
      const factor = baseline > 0 ? observed / baseline : Number.POSITIVE_INFINITY;
      await queueAlert(
        {
          type: 'tier.surge',
          tier,
          observed,
          baseline,
          // JSON has no Infinity: a surge over a zero baseline is reported with factor 0 and baseline 0.
          factor: Number.isFinite(factor) ? factor : 0,
          at: at.toISOString(),
        },
        `tier-surge_${tier}_${at.getTime()}`,
      );
    },

    async suspendAccount(id, actor, note) {
      const changed = await deps.db.$transaction(async (tx) => {
        const [account] = await lockAccounts(tx, [id]);
        if (!account) throw accountNotFound(id);
        if (account.status === 'suspended') return [];
        await tx.account.update({
          where: { id },
          data: { status: 'suspended', statusReason: `analyst:${actor}` },
        });
        await deps.audit.record(
          {
            actor,
            action: ACCOUNT_EVENT.suspended,
            subjectType: 'account',
            subjectId: id,
            data: { status: 'suspended', previous: previousOf(account), note: note ?? null },
          },
          tx,
        );
        return [id];
      }, txOptionsFor(1));
      await invalidate(changed);
      return { changed };
    },

    async unsuspendAccount(id, actor, note) {
      const changed = await deps.db.$transaction(async (tx) => {
        const [account] = await lockAccounts(tx, [id]);
        if (!account) throw accountNotFound(id);
        return restore(tx, [account], actor, { note: note ?? null });
      }, txOptionsFor(1));
      await invalidate(changed);
      return { changed };
    },

    async suspendCluster(id, actor, note) {
      const budget = await clusterBudget(id);
      const changed = await deps.db.$transaction(async (tx) => {
        const cluster = await lockCluster(tx, id);
        const members = await tx.clusterMember.findMany({
          where: { clusterId: id },
          select: { accountId: true },
        });
        const accounts = await lockAccounts(
          tx,
          members.map((m) => m.accountId),
          slice,
        );
        // An analyst's own decision reaches every member, appeals included: the audit trail shows who.
        const targets = accounts.filter((a) => a.status !== 'suspended');
        const statusReason = `cluster:${id}:suspend`;
        await updateAccounts(
          tx,
          slice,
          targets.map((account) => ({
            account,
            next: { status: 'suspended', statusReason, requiresPhone: account.requiresPhone },
          })),
        );
        const evidence = summaryOf(cluster.evidence, members.length, cluster.score);
        await deps.audit.recordMany(
          targets.map((account) => ({
            actor,
            action: ACCOUNT_EVENT.suspended,
            subjectType: 'account',
            subjectId: account.id,
            data: {
              clusterId: id,
              action: 'suspend',
              status: 'suspended',
              previous: previousOf(account),
              evidence,
              note: note ?? null,
            },
          })),
          tx,
        );
        const ids = targets.map((a) => a.id);
        if (ids.length === 0 && cluster.action === 'suspend') return ids;
        await tx.cluster.update({
          where: { id },
          data: { action: 'suspend', actedAt: cluster.actedAt ?? new Date() },
        });
        await deps.audit.record(
          {
            actor,
            action: 'cluster.suspended',
            subjectType: 'cluster',
            subjectId: id,
            data: { previousAction: cluster.action, accounts: ids, note: note ?? null },
          },
          tx,
        );
        return ids;
      }, budget);
      await invalidate(changed);
      return { changed };
    },

    async unsuspendCluster(id, actor, note) {
      const budget = await clusterBudget(id);
      const changed = await deps.db.$transaction(async (tx) => {
        const cluster = await lockCluster(tx, id);
        const restored = await undoCluster(tx, id, actor, note);
        if (restored.length === 0 && cluster.action === 'none') return restored;
        await tx.cluster.update({ where: { id }, data: { action: 'none' } });
        await deps.audit.record(
          {
            actor,
            action: 'cluster.restored',
            subjectType: 'cluster',
            subjectId: id,
            data: { previousAction: cluster.action, accounts: restored, note: note ?? null },
          },
          tx,
        );
        return restored;
      }, budget);
      await invalidate(changed);
      return { changed };
    },

    async labelCluster(id, label, actor, note) {
      const budget = await clusterBudget(id);
      const changed = await deps.db.$transaction(async (tx) => {
        const cluster = await lockCluster(tx, id);
        let restored: string[] = [];
        let suppressed = 0;
        const kinds = [...new Set(evidenceSignals(cluster.evidence).map((s) => s.kind))];
        if (label === 'false_positive') {
          restored = await undoCluster(tx, id, actor, note);
          const members = await tx.clusterMember.findMany({
            where: { clusterId: id },
            select: { accountId: true },
          });
          const accountIds = [...new Set([...members.map((m) => m.accountId), ...restored])];
          const rows = accountIds.flatMap((accountId) =>
            kinds.map((kind) => ({ accountId, kind, clusterId: id })),
          );
          // A slice of rows per INSERT: a farm's members times the kinds can pass a statement's limit.
          await inSlices(rows, slice, async (data) => {
            suppressed += (await tx.linkSuppression.createMany({ data, skipDuplicates: true })).count;
          });
        }
        const action = label === 'false_positive' ? 'none' : cluster.action;
        if (
          cluster.label === label &&
          action === cluster.action &&
          restored.length === 0 &&
          suppressed === 0
        ) {
          return restored;
        }
        await tx.cluster.update({ where: { id }, data: { label, action } });
        await deps.audit.record(
          {
            actor,
            action: 'cluster.labelled',
            subjectType: 'cluster',
            subjectId: id,
            data: {
              label,
              previousLabel: cluster.label,
              previousAction: cluster.action,
              accounts: restored,
              suppressedKinds: label === 'false_positive' ? kinds : [],
              note: note ?? null,
            },
          },
          tx,
        );
        return restored;
      }, budget);
      await invalidate(changed);
      return { changed };
    },
  };
}
