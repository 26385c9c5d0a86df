import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type Job, Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLog } from '../../src/audit/audit.ts';
import {
  type ActionDeps,
  type ActionService,
  type ClusterEvidence,
  createActionService,
  decideMember,
  evidenceSignals,
  type OperatorAlert,
  topSignals,
} from '../../src/detection/actions.ts';
import { newId } from '../../src/lib/ids.ts';
import { EVENT_HEADER, SIGNATURE_HEADER, verifyWebhookSignature } from '../../src/notify/webhook.ts';
import { parsePolicy } from '../../src/policy/policy.ts';
import { createRedis } from '../../src/redis/client.ts';
import { createAlertsProcessor } from '../../workers/alerts.ts';
import { createAccount, createKey } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, testPrefix } from '../support/harness.ts';
import { type SignupWorld, startSignupWorld } from '../support/signup-env.ts';

// A cluster's action against real PostgreSQL and Redis: every member at once, audited, undone by
// an analyst, and felt by enforcement on every API instance within a second.

// No scheduled analysis: a run replaces cluster membership across the shared test database.
const policy = parsePolicy(`
version: 1
detection: { schedule: 0 }
signup:
  verification: { phoneResendCooldown: 1ms }
enforcement:
  tiers:
    free:
      maxKeys: 2
      limits:
        key: [{ window: 1m, limit: 1000, buckets: 12 }]
        user: [{ window: 24h, limit: 10000, buckets: 96 }]
`);

let world: SignupWorld;
let app: TestApp;
/** A second API instance on the same Redis prefix: its own key cache, fed by the invalidation channel. */
let other: TestApp;
let gateway: string;
let actions: ActionService;

beforeAll(async () => {
  world = await startSignupWorld();
  const prefix = testPrefix();
  // Generous Redis budgets: on a busy machine the production 50 ms would answer limiter_unavailable.
  const budgets = { ENFORCE_REDIS_TIMEOUT_MS: '2000', ENFORCE_DEADLINE_MS: '5000' };
  app = await startTestApp({ env: { ...world.env, ...budgets }, policy, workers: true, prefix });
  other = await startTestApp({ env: budgets, policy, prefix });
  gateway = await app.tokenWith('enforce');
  actions = serviceFor();
});
afterAll(async () => {
  await other.close();
  await app.close();
  await world.close();
});

const serviceFor = (extra: Partial<ActionDeps> = {}) =>
  createActionService({
    db: app.ctx.db,
    audit: app.ctx.audit,
    apiKeys: app.ctx.apiKeys,
    logger: app.ctx.logger,
    policy: () => app.ctx.policy,
    ...extra,
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let ipSeq = Number.parseInt(randomBytes(1).toString('hex'), 16);
const freshIp = () => `81.2.${Math.floor(ipSeq / 250) % 250}.${(ipSeq++ % 250) + 1}`;
const mobile = () => `+4474002${String(Math.floor(Math.random() * 100_000)).padStart(5, '0')}`;

const evidenceOf = (n: number): ClusterEvidence => ({
  signals: [
    { kind: 'subnet', members: n - 1, weight: 0.35 },
    { kind: 'fingerprint', members: n, weight: 1.5 },
    { kind: 'email_pattern', members: n, weight: 0.9 },
  ],
  features: { hostingShare: 0.8, limitHugging: 0.7 },
  timeline: { firstSignup: '2026-01-10T10:00:00.000Z', lastSignup: '2026-01-10T10:04:00.000Z' },
});

interface Farm {
  clusterId: string;
  members: string[];
  keys: string[];
}

/** Accounts already linked into one cluster, as the linking engine leaves them. */
async function farm(n: number, opts: { keys?: boolean } = {}): Promise<Farm> {
  const clusterId = newId('clu');
  const members: string[] = [];
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = await createAccount(app);
    members.push(id);
    if (opts.keys) keys.push((await createKey(app, id, app.adminToken)).key);
  }
  await app.ctx.db.cluster.create({
    data: { id: clusterId, score: 0.5, size: n, evidence: evidenceOf(n) },
  });
  await app.ctx.db.clusterMember.createMany({ data: members.map((accountId) => ({ accountId, clusterId })) });
  return { clusterId, members, keys };
}

const run = (f: Farm, action: 'none' | 'review' | 'throttle' | 'challenge' | 'suspend', extra = {}) => ({
  clusterId: f.clusterId,
  action,
  score: action === 'suspend' ? 0.91 : action === 'challenge' ? 0.74 : 0.65,
  evidence: evidenceOf(f.members.length),
  memberIds: f.members,
  runId: 'run_0000000000000000000001',
  at: new Date('2026-01-12T00:00:00Z'),
  ...extra,
});

const statuses = async (ids: string[]) => {
  const rows = await app.ctx.db.account.findMany({ where: { id: { in: ids } } });
  return Object.fromEntries(rows.map((r) => [r.id, r.status]));
};
const accountEvents = (ids: string[]) =>
  app.ctx.db.auditEvent.findMany({
    where: { subjectType: 'account', subjectId: { in: ids } },
    orderBy: [{ at: 'asc' }, { id: 'asc' }],
  });
const clusterEvents = (id: string) =>
  app.ctx.db.auditEvent.findMany({ where: { subjectType: 'cluster', subjectId: id } });

async function enforceOn(instance: TestApp, key: string) {
  const res = await instance.request('POST', '/v1/enforce', { token: gateway, body: { key, ip: freshIp() } });
  expectContract(res, 'POST', '/v1/enforce');
  return res.body as { decision: string; reason?: string; degrade?: boolean };
}

async function eventually<T>(
  check: () => Promise<T | false>,
  withinMs: number,
): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value !== false) return { value, ms: Date.now() - started };
    if (Date.now() - started > withinMs) throw new Error(`not true within ${withinMs} ms`);
    await sleep(10);
  }
}

describe('member decisions', () => {
  const base = {
    statusReason: null,
    requiresPhone: false,
    phoneVerified: false,
    clearedAsFalsePositive: false,
  };

  it('moves members only upwards', () => {
    const next = (
      action: Parameters<typeof decideMember>[0],
      status: Parameters<typeof decideMember>[2]['status'],
    ) => {
      const d = decideMember(action, 'clu_x', { ...base, status });
      return d.kind === 'change' ? d.next.status : d.kind;
    };
    expect(next('suspend', 'pending')).toBe('suspended');
    expect(next('suspend', 'suspended')).toBe('keep');
    expect(next('throttle', 'active')).toBe('throttled');
    expect(next('throttle', 'pending')).toBe('keep');
    expect(next('throttle', 'challenged')).toBe('keep');
    expect(next('throttle', 'suspended')).toBe('keep');
    expect(next('challenge', 'throttled')).toBe('challenged');
    expect(next('challenge', 'suspended')).toBe('keep');
    expect(next('review', 'active')).toBe('keep');
    expect(next('none', 'active')).toBe('keep');
  });

  it('spares appeals and false positives, and does not re-challenge a verified phone', () => {
    expect(
      decideMember('suspend', 'clu_x', { ...base, status: 'active', statusReason: 'appeal:tok_1' }).kind,
    ).toBe('spare');
    expect(
      decideMember('suspend', 'clu_x', { ...base, status: 'active', clearedAsFalsePositive: true }).kind,
    ).toBe('spare');
    expect(decideMember('challenge', 'clu_x', { ...base, status: 'active', phoneVerified: true }).kind).toBe(
      'keep',
    );
    const challenged = decideMember('challenge', 'clu_x', { ...base, status: 'active' });
    expect(challenged).toEqual({
      kind: 'change',
      next: { status: 'challenged', statusReason: 'cluster:clu_x:challenge', requiresPhone: true },
    });
  });

  it('reads whatever evidence the linking engine wrote without failing', () => {
    expect(evidenceSignals(null)).toEqual([]);
    expect(evidenceSignals({ signals: 'nope' })).toEqual([]);
    expect(
      evidenceSignals({
        signals: [{ kind: 'ip', members: ['a', 'b'] }, { weight: 3 }, 7, { kind: 'asn', weight: 2 }],
      }),
    ).toEqual([
      { kind: 'asn', members: 0, weight: 2 },
      { kind: 'ip', members: 2, weight: 0 },
    ]);
    expect(topSignals(evidenceOf(6))).toEqual(['fingerprint', 'email_pattern', 'subnet']);
  });
});

describe('applyClusterAction', () => {
  it('suspends every member of a farm at once, auditing evidence and previous statuses', async () => {
    const f = await farm(6);
    await app.ctx.db.account.update({ where: { id: f.members[1]! }, data: { status: 'throttled' } });
    await app.ctx.db.account.update({ where: { id: f.members[2]! }, data: { status: 'pending' } });

    const result = await actions.applyClusterAction(run(f, 'suspend'));
    expect(result.changed.sort()).toEqual([...f.members].sort());
    expect(Object.values(await statuses(f.members))).toEqual(Array(6).fill('suspended'));

    const accounts = await app.ctx.db.account.findMany({ where: { id: { in: f.members } } });
    for (const a of accounts) expect(a.statusReason).toBe(`cluster:${f.clusterId}:suspend`);

    const events = await accountEvents(f.members);
    expect(events).toHaveLength(6);
    const previous = Object.fromEntries(
      events.map((e) => [e.subjectId, (e.data as { previous: { status: string } }).previous.status]),
    );
    expect(previous[f.members[0]!]).toBe('active');
    expect(previous[f.members[1]!]).toBe('throttled');
    expect(previous[f.members[2]!]).toBe('pending');
    expect(events[0]).toMatchObject({
      actor: 'detection',
      action: 'account.suspended',
      data: {
        clusterId: f.clusterId,
        runId: 'run_0000000000000000000001',
        status: 'suspended',
        evidence: { size: 6, score: 0.91, topSignals: ['fingerprint', 'email_pattern', 'subnet'] },
      },
    });

    const cluster = await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } });
    expect(cluster).toMatchObject({
      action: 'suspend',
      score: 0.91,
      actedAt: new Date('2026-01-12T00:00:00Z'),
    });
    expect(cluster.evidence).toEqual(evidenceOf(6));
    const ce = await clusterEvents(f.clusterId);
    expect(ce).toHaveLength(1);
    expect(ce[0]).toMatchObject({
      action: 'cluster.acted',
      data: { action: 'suspend', previousAction: 'none' },
    });
  });

  it('changes no member when any part of the action fails', async () => {
    const f = await farm(6);
    // The members' new states are written and half their audit events too when the store fails.
    const flaky: AuditLog = {
      record: (entry, tx) => app.ctx.audit.record(entry, tx),
      async recordMany(entries, tx) {
        await app.ctx.audit.recordMany(entries.slice(0, 3), tx);
        throw new Error('audit store refused the write');
      },
    };
    await expect(serviceFor({ audit: flaky }).applyClusterAction(run(f, 'suspend'))).rejects.toThrow(
      /refused/,
    );
    expect(Object.values(await statuses(f.members))).toEqual(Array(6).fill('active'));
    expect(await accountEvents(f.members)).toHaveLength(0);
    expect((await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } })).action).toBe('none');
  });

  it('denies the members on every API instance within a second, and gives access back on undo', async () => {
    const f = await farm(6, { keys: true });
    // Both instances hold the keys as active in their caches.
    for (const key of f.keys) {
      expect(await enforceOn(other, key)).toMatchObject({ decision: 'allow' });
      expect(await enforceOn(app, key)).toMatchObject({ decision: 'allow' });
    }
    await actions.applyClusterAction(run(f, 'suspend'));
    const denied = await eventually(async () => {
      const answers = await Promise.all(f.keys.map((key) => enforceOn(other, key)));
      return answers.every((a) => a.decision === 'deny' && a.reason === 'account_suspended') && answers;
    }, 1_000);
    expect(denied.ms).toBeLessThan(1_000);

    const undone = await actions.unsuspendCluster(f.clusterId, 'tok_analyst', 'appeal upheld');
    expect(undone.changed.sort()).toEqual([...f.members].sort());
    const allowed = await eventually(async () => {
      const answers = await Promise.all(f.keys.map((key) => enforceOn(other, key)));
      return answers.every((a) => a.decision === 'allow') && answers;
    }, 1_000);
    expect(allowed.ms).toBeLessThan(1_000);
    const cluster = await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } });
    expect(cluster.action).toBe('none');
  });

  it('changes nothing and writes nothing when the same verdict is applied again', async () => {
    const f = await farm(5);
    const first = await actions.applyClusterAction(run(f, 'suspend'));
    expect(first.changed).toHaveLength(5);
    const before = (await accountEvents(f.members)).length + (await clusterEvents(f.clusterId)).length;
    const updatedAt = (await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } })).updatedAt;

    const again = await actions.applyClusterAction(run(f, 'suspend'));
    expect(again).toEqual({ changed: [], spared: [], alerted: false });
    const later = await actions.applyClusterAction(
      run(f, 'suspend', { runId: 'run_0000000000000000000002' }),
    );
    expect(later.changed).toEqual([]);
    expect((await accountEvents(f.members)).length + (await clusterEvents(f.clusterId)).length).toBe(before);
    expect((await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } })).updatedAt).toEqual(
      updatedAt,
    );
  });

  it('never downgrades: a suspended farm stays suspended when a later run only says throttle', async () => {
    const f = await farm(4);
    await actions.applyClusterAction(run(f, 'throttle'));
    expect(Object.values(await statuses(f.members))).toEqual(Array(4).fill('throttled'));
    await actions.applyClusterAction(run(f, 'suspend'));
    const weaker = await actions.applyClusterAction(run(f, 'throttle', { score: 0.61 }));
    expect(weaker.changed).toEqual([]);
    expect(Object.values(await statuses(f.members))).toEqual(Array(4).fill('suspended'));
    const cluster = await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } });
    expect(cluster).toMatchObject({ action: 'suspend', score: 0.61 });
  });

  it('leaves an account restored on appeal alone when its cluster is acted on again', async () => {
    const f = await farm(5);
    await actions.applyClusterAction(run(f, 'suspend'));
    const appealed = f.members[0]!;
    const restored = await actions.unsuspendAccount(
      appealed,
      'tok_analyst',
      'real customer, checked by phone',
    );
    expect(restored.changed).toEqual([appealed]);
    const account = await app.ctx.db.account.findUniqueOrThrow({ where: { id: appealed } });
    expect(account).toMatchObject({ status: 'active', statusReason: 'appeal:tok_analyst' });
    const [event] = (await accountEvents([appealed])).filter((e) => e.action === 'account.restored');
    expect(event).toMatchObject({
      actor: 'tok_analyst',
      data: { previous: { status: 'suspended' }, status: 'active' },
    });

    // A later run with a new member: the newcomer is suspended, the appealed account is not.
    const newcomer = await createAccount(app);
    await app.ctx.db.clusterMember.create({ data: { accountId: newcomer, clusterId: f.clusterId } });
    const next = await actions.applyClusterAction(
      run(f, 'suspend', { memberIds: [...f.members, newcomer], runId: 'run_0000000000000000000003' }),
    );
    expect(next.changed).toEqual([newcomer]);
    expect(next.spared).toEqual([appealed]);
    expect((await statuses([appealed]))[appealed]).toBe('active');
  });

  it('restores what the cluster changed and nothing else, to where each account stood', async () => {
    const f = await farm(4);
    const [unverified, askedForPhone, movedAway, analystSuspended] = f.members as [
      string,
      string,
      string,
      string,
    ];
    await app.ctx.db.account.update({
      where: { id: unverified },
      data: { status: 'pending', emailVerifiedAt: null },
    });
    await app.ctx.db.account.update({
      where: { id: askedForPhone },
      data: { requiresPhone: true, status: 'pending' },
    });
    await actions.suspendAccount(analystSuspended, 'tok_other_analyst');
    await actions.applyClusterAction(run(f, 'suspend'));
    // The member moved to another cluster since; the suspension it got from this one is still undone.
    await app.ctx.db.clusterMember.delete({ where: { accountId: movedAway } });

    const undone = await actions.unsuspendCluster(f.clusterId, 'tok_analyst');
    expect(undone.changed.sort()).toEqual([unverified, askedForPhone, movedAway].sort());
    const rows = Object.fromEntries(
      (await app.ctx.db.account.findMany({ where: { id: { in: f.members } } })).map((a) => [a.id, a]),
    );
    expect(rows[unverified]).toMatchObject({ status: 'pending', statusReason: 'appeal:tok_analyst' });
    expect(rows[askedForPhone]).toMatchObject({ status: 'pending', requiresPhone: true });
    expect(rows[movedAway]).toMatchObject({ status: 'active', requiresPhone: false });
    expect(rows[analystSuspended]).toMatchObject({
      status: 'suspended',
      statusReason: 'analyst:tok_other_analyst',
    });
    // Undoing twice is a no-op.
    expect((await actions.unsuspendCluster(f.clusterId, 'tok_analyst')).changed).toEqual([]);
  });

  it('makes challenged members pass the phone step-up before enforcement lets them through', async () => {
    const f = await farm(3, { keys: true });
    const [a, b, verified] = f.members as [string, string, string];
    await app.ctx.db.account.update({
      where: { id: verified },
      data: { phone: mobile(), phoneVerifiedAt: new Date() },
    });
    await app.ctx.apiKeys.invalidateAccount(verified);
    const result = await actions.applyClusterAction(run(f, 'challenge'));
    expect(result.changed.sort()).toEqual([a, b].sort());
    expect(result.alerted).toBe(false);
    const rows = await app.ctx.db.account.findMany({
      where: { id: { in: f.members } },
      orderBy: { id: 'asc' },
    });
    expect(rows.find((r) => r.id === a)).toMatchObject({ status: 'challenged', requiresPhone: true });
    expect(rows.find((r) => r.id === verified)).toMatchObject({ status: 'active', requiresPhone: false });

    expect(await enforceOn(app, f.keys[0]!)).toMatchObject({
      decision: 'deny',
      reason: 'verification_required',
    });
    expect(await enforceOn(app, f.keys[2]!)).toMatchObject({ decision: 'allow' });
    const view = await app.request('GET', `/v1/accounts/${a}`);
    expect(view.body).toMatchObject({ status: 'challenged', verification: { pending: ['phone'] } });

    // The second instance holds the key as challenged in its cache too.
    expect(await enforceOn(other, f.keys[0]!)).toMatchObject({ reason: 'verification_required' });

    const phone = mobile();
    expect((await app.request('POST', `/v1/accounts/${a}/phone`, { body: { phone } })).status).toBe(202);
    const sms = await world.waitForMessage(a, 'verify_phone');
    const done = await app.request('POST', `/v1/accounts/${a}/phone/verify`, {
      body: { code: sms.type === 'verify_phone' ? sms.code : '' },
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'active', verification: { pending: [] } });
    // Let through at once by both instances, not when their cached copies expire (30 s).
    expect(await enforceOn(app, f.keys[0]!)).toMatchObject({ decision: 'allow' });
    await eventually(async () => (await enforceOn(other, f.keys[0]!)).decision === 'allow', 1_000);

    // The next run asks again: whoever passed the step-up is not asked twice.
    const again = await actions.applyClusterAction(
      run(f, 'challenge', { runId: 'run_0000000000000000000004' }),
    );
    expect(again.changed).toEqual([]);
  });

  it('throttles active members, and enforcement answers throttle with degraded output', async () => {
    const f = await farm(3, { keys: true });
    await app.ctx.db.account.update({ where: { id: f.members[2]! }, data: { status: 'pending' } });
    const result = await actions.applyClusterAction(run(f, 'throttle'));
    expect(result.changed.sort()).toEqual([f.members[0]!, f.members[1]!].sort());
    expect(await enforceOn(app, f.keys[0]!)).toMatchObject({
      decision: 'throttle',
      reason: 'flagged',
      degrade: true,
    });
    expect((await statuses([f.members[2]!]))[f.members[2]!]).toBe('pending');
  });

  it('undoes a false positive and stops the signals that linked it from linking those accounts', async () => {
    const f = await farm(4);
    await actions.applyClusterAction(run(f, 'suspend'));
    const labelled = await actions.labelCluster(
      f.clusterId,
      'false_positive',
      'tok_analyst',
      'one university NAT',
    );
    expect(labelled.changed.sort()).toEqual([...f.members].sort());
    expect(Object.values(await statuses(f.members))).toEqual(Array(4).fill('active'));
    const cluster = await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } });
    expect(cluster).toMatchObject({ label: 'false_positive', action: 'none' });

    const suppressions = await app.ctx.db.linkSuppression.findMany({
      where: { accountId: { in: f.members } },
    });
    expect(suppressions).toHaveLength(4 * 3);
    expect(new Set(suppressions.map((s) => s.kind))).toEqual(
      new Set(['fingerprint', 'email_pattern', 'subnet']),
    );
    expect(suppressions.every((s) => s.clusterId === f.clusterId)).toBe(true);

    const next = await actions.applyClusterAction(run(f, 'suspend', { runId: 'run_0000000000000000000005' }));
    expect(next.changed).toEqual([]);
    expect(Object.values(await statuses(f.members))).toEqual(Array(4).fill('active'));
    expect((await app.ctx.db.cluster.findUniqueOrThrow({ where: { id: f.clusterId } })).action).toBe('none');
    // Labelling again changes nothing and records nothing.
    const events = (await clusterEvents(f.clusterId)).length;
    await actions.labelCluster(f.clusterId, 'false_positive', 'tok_analyst');
    expect((await clusterEvents(f.clusterId)).length).toBe(events);
  });

  it('acts on a farm of 1,500 in one call, each member keeping its own history', async () => {
    // Written in bulk (a few statements per thousand members): the members differ in what they
    // owed before, and each must get back its own state on undo, not its neighbour's.
    const clusterId = newId('clu');
    const kinds = [
      ...Array<'plain'>(600).fill('plain'),
      ...Array<'owesPhone'>(600).fill('owesPhone'),
      ...Array<'analyst'>(300).fill('analyst'),
    ];
    const members = kinds.map(() => newId('acc'));
    await app.ctx.db.account.createMany({
      data: members.map((id, i) => ({
        id,
        email: `${id}@farm.example`,
        emailCanonicalHash: `bulk-${id}`,
        emailDomain: 'farm.example',
        emailVerifiedAt: new Date(),
        status: kinds[i] === 'analyst' ? 'suspended' : 'active',
        statusReason: kinds[i] === 'analyst' ? 'analyst:tok_analyst' : null,
        requiresPhone: kinds[i] === 'owesPhone',
      })),
    });
    await app.ctx.db.cluster.create({
      data: { id: clusterId, score: 0.74, size: members.length, evidence: evidenceOf(members.length) },
    });
    await app.ctx.db.clusterMember.createMany({
      data: members.map((accountId) => ({ accountId, clusterId })),
    });
    const f: Farm = { clusterId, members, keys: [] };
    const of = (kind: string) => members.filter((_, i) => kinds[i] === kind);

    // Statements of 400 accounts, so every read and write crosses slices as a farm of more than
    // 65,535 members (PostgreSQL's parameter limit) does with the default 10,000.
    const bulk = serviceFor({ statementSlice: 400 });
    const result = await bulk.applyClusterAction(run(f, 'suspend'));
    expect(result.changed.sort()).toEqual([...of('plain'), ...of('owesPhone')].sort());
    const rows = await app.ctx.db.account.findMany({ where: { id: { in: members } } });
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of [...of('plain'), ...of('owesPhone')]) {
      expect(byId.get(id)).toMatchObject({
        status: 'suspended',
        statusReason: `cluster:${clusterId}:suspend`,
        requiresPhone: kinds[members.indexOf(id)] === 'owesPhone',
      });
    }
    for (const id of of('analyst')) expect(byId.get(id)).toMatchObject({ status: 'suspended' });

    const suspended = await accountEvents(members);
    expect(suspended).toHaveLength(1_200);
    const previous = new Map(
      suspended.map((e) => [e.subjectId, (e.data as { previous: { requiresPhone: boolean } }).previous]),
    );
    for (const id of of('plain'))
      expect(previous.get(id)).toEqual({ status: 'active', statusReason: null, requiresPhone: false });
    for (const id of of('owesPhone')) expect(previous.get(id)?.requiresPhone).toBe(true);

    const undone = await bulk.unsuspendCluster(clusterId, 'tok_analyst', 'appeal upheld');
    expect(undone.changed.sort()).toEqual([...of('plain'), ...of('owesPhone')].sort());
    const after = new Map(
      (await app.ctx.db.account.findMany({ where: { id: { in: members } } })).map((r) => [r.id, r]),
    );
    // Each member owes again what it owed before: the phone for those that owed it, nothing else.
    for (const id of of('plain'))
      expect(after.get(id)).toMatchObject({ status: 'active', requiresPhone: false });
    for (const id of of('owesPhone'))
      expect(after.get(id)).toMatchObject({ status: 'pending', requiresPhone: true });
    for (const id of of('analyst')) expect(after.get(id)).toMatchObject({ status: 'suspended' });
    const restored = (await accountEvents(members)).filter((e) => e.action === 'account.restored');
    expect(new Set(restored.map((e) => e.subjectId)).size).toBe(1_200);

    // A false positive: the signals that linked them stop linking every member, three kinds each.
    await bulk.labelCluster(clusterId, 'false_positive', 'tok_analyst');
    const suppressed = await app.ctx.db.linkSuppression.findMany({ where: { clusterId } });
    expect(suppressed).toHaveLength(members.length * 3);
    expect(new Set(suppressed.map((r) => `${r.accountId}:${r.kind}`)).size).toBe(members.length * 3);
  });
});

describe('operator alerts', () => {
  let receiver: Server;
  let url: string;
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const secret = `whsec-${randomBytes(12).toString('hex')}`;
  // Its own queue name: the app's workers do not compete for these jobs.
  const queueName = `alerts-${randomBytes(4).toString('hex')}`;
  let queue: Queue;
  let worker: Worker;
  let alerting: ActionService;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/alerts`;
    const connection = createRedis({
      url: app.ctx.config.REDIS_URL,
      connectTimeoutMs: 2_000,
      forWorkers: true,
    });
    queue = new Queue(queueName, { connection, prefix: app.ctx.keys.bullPrefix });
    const processor = createAlertsProcessor({ url, secret });
    worker = new Worker(queueName, (job: Job<OperatorAlert>) => processor.process(job, app.ctx), {
      connection,
      prefix: app.ctx.keys.bullPrefix,
    });
    alerting = serviceFor({
      alertWebhook: { url, secret },
      queues: { add: async (_q, name, data, opts) => void (await queue.add(name, data, opts)) },
    });
  });
  afterAll(async () => {
    await worker.close();
    await queue.close();
    receiver.closeAllConnections();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  });

  const delivered = (n: number) =>
    eventually(async () => received.length >= n && received.slice(0, n), 10_000).then((r) => r.value);

  it('posts a signed cluster.suspended alert once, and tier surges', async () => {
    const f = await farm(6);
    const result = await alerting.applyClusterAction(run(f, 'suspend'));
    expect(result.alerted).toBe(true);
    const [alert] = await delivered(1);
    expect(
      verifyWebhookSignature(secret, alert!.headers[SIGNATURE_HEADER.toLowerCase()] as string, alert!.body),
    ).toBe(true);
    expect(alert!.headers[EVENT_HEADER.toLowerCase()]).toBe('cluster.suspended');
    expect(JSON.parse(alert!.body)).toEqual({
      type: 'cluster.suspended',
      clusterId: f.clusterId,
      size: 6,
      score: 0.91,
      topSignals: ['fingerprint', 'email_pattern', 'subnet'],
      at: '2026-01-12T00:00:00.000Z',
    });

    // A retry alerts no one; a challenge is not an operator alert.
    expect((await alerting.applyClusterAction(run(f, 'suspend'))).alerted).toBe(false);
    expect((await alerting.applyClusterAction(run(await farm(3), 'challenge'))).alerted).toBe(false);

    const throttled = await farm(3);
    expect((await alerting.applyClusterAction(run(throttled, 'throttle'))).alerted).toBe(true);
    await alerting.alertTierSurge({
      tier: 'free',
      observed: 90_000,
      baseline: 20_000,
      at: new Date('2026-01-12T00:00:00Z'),
    });
    const all = await delivered(3);
    expect(all.map((r) => JSON.parse(r.body).type)).toEqual([
      'cluster.suspended',
      'cluster.throttled',
      'tier.surge',
    ]);
    expect(JSON.parse(all[2]!.body)).toEqual({
      type: 'tier.surge',
      tier: 'free',
      observed: 90_000,
      baseline: 20_000,
      factor: 4.5,
      at: '2026-01-12T00:00:00.000Z',
    });
    for (const r of all) {
      expect(
        verifyWebhookSignature(secret, r.headers[SIGNATURE_HEADER.toLowerCase()] as string, r.body),
      ).toBe(true);
    }
  });

  it('queues nothing when no alert endpoint is configured', async () => {
    const f = await farm(5);
    expect((await actions.applyClusterAction(run(f, 'suspend'))).alerted).toBe(false);
  });
});
