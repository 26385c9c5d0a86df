import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/lib/ids.ts';
import { parsePolicy } from '../../src/policy/policy.ts';
import { createAccount, insertAccounts } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { type RequestOptions, startTestApp, type TestApp, type TestResponse } from '../support/harness.ts';

// The analyst's API over real HTTP, PostgreSQL and Redis; every answer is checked against openapi.yaml.

const tier = `bl${randomBytes(4).toString('hex')}`;
const policy = parsePolicy(`
version: 1
enforcement:
  defaultTier: free
  tiers:
    free:
      limits:
        key: [{ window: 1m, limit: 60, buckets: 12 }, { window: 24h, limit: 1000, buckets: 96 }]
        user: [{ window: 24h, limit: 1200, buckets: 96 }]
    ${tier}:
      limits:
        key:
          - { window: 1m, limit: 100, buckets: 12 }
          - { window: 24h, limit: 800, buckets: 96 }
          - { window: 7d, limit: 4000, buckets: 96 }
        user: [{ window: 24h, limit: 1500, buckets: 96 }]
        ip: [{ window: 1m, limit: 300, buckets: 12 }]
`);

let app: TestApp;

beforeAll(async () => {
  // Its own database: the baseline aggregates every account's usage, and analysis runs of other
  // test files (which act on every account they see) must not reach these accounts.
  app = await startTestApp({ policy, ownDatabase: true });
});
afterAll(async () => {
  await app.close();
});

async function call(method: string, path: string, o: RequestOptions = {}): Promise<TestResponse> {
  const res = await app.request(method, path, o);
  expectContract(res, method, path);
  return res;
}

interface Summary {
  id: string;
  score: number;
  action: string;
  size: number;
  label: string | null;
  topSignals: string[];
}
interface Member {
  accountId: string;
  externalId: string | null;
  status: string;
  createdAt: string;
}
interface Detail extends Summary {
  members: Member[];
  membersNextCursor: string | null;
  evidence: Record<string, unknown>;
}

const evidence = {
  signals: [
    { kind: 'email_pattern', members: 4, weight: 0.9 },
    { kind: 'fingerprint', members: 3, weight: 1.5 },
  ],
  timeline: [{ at: '2026-01-10T10:00:00.000Z', accounts: 4 }],
};

async function cluster(
  opts: { score?: number; action?: 'none' | 'review' | 'suspend'; live?: boolean; members?: number } = {},
) {
  const id = newId('clu');
  const members: string[] = [];
  for (let i = 0; i < (opts.members ?? 3); i++) members.push(await createAccount(app));
  await app.ctx.db.cluster.create({
    data: {
      id,
      score: opts.score ?? 0.5,
      action: opts.action ?? 'none',
      size: members.length,
      live: opts.live ?? true,
      evidence,
    },
  });
  await app.ctx.db.clusterMember.createMany({
    data: members.map((accountId) => ({ accountId, clusterId: id })),
  });
  return { id, members };
}

describe('GET /v1/clusters', () => {
  it('lists live clusters highest score first, filtered, a page at a time', async () => {
    // Scores no other test uses, so foreign clusters stay out of the filtered walk.
    const made = [
      await cluster({ score: 0.9931, action: 'suspend', members: 5 }),
      await cluster({ score: 0.9917, action: 'suspend' }),
      await cluster({ score: 0.9917, action: 'review' }),
      await cluster({ score: 0.9902, members: 6 }),
      await cluster({ score: 0.9901 }),
    ];
    const dispersed = await cluster({ score: 0.995, live: false });
    const tie = [made[1]!.id, made[2]!.id].sort();
    const expected = [made[0]!.id, ...tie, made[3]!.id, made[4]!.id];

    const seen: Summary[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/v1/clusters?minScore=0.99&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await call('GET', q);
      expect(res.status).toBe(200);
      const page = res.body as { clusters: Summary[]; nextCursor: string | null };
      seen.push(...page.clusters);
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(seen.map((c) => c.id)).toEqual(expected);
    expect(pages).toBe(3);
    expect(seen.map((c) => c.id)).not.toContain(dispersed.id);
    expect(seen[0]).toMatchObject({
      score: 0.9931,
      action: 'suspend',
      size: 5,
      label: null,
      topSignals: ['fingerprint', 'email_pattern'],
    });

    const suspended = await call('GET', '/v1/clusters?action=suspend&minScore=0.99');
    expect((suspended.body as { clusters: Summary[] }).clusters.map((c) => c.id)).toEqual([
      made[0]!.id,
      made[1]!.id,
    ]);
    const large = await call('GET', '/v1/clusters?minSize=5&minScore=0.99');
    expect((large.body as { clusters: Summary[] }).clusters.map((c) => c.id)).toEqual([
      made[0]!.id,
      made[3]!.id,
    ]);
  });

  it('refuses a cursor it did not give out, a bad limit and unknown filters', async () => {
    for (const q of [
      'cursor=bm90LWEtY3Vyc29y',
      'limit=0',
      'limit=201',
      'minScore=2',
      'action=ban',
      'live=false',
    ]) {
      const res = await call('GET', `/v1/clusters?${q}`);
      expect(res.status, q).toBe(400);
    }
    const res = await call('GET', '/v1/clusters?cursor=bm90LWEtY3Vyc29y');
    expect((res.body as { errors: Array<{ field: string }> }).errors[0]!.field).toBe('cursor');
  });
});

describe('GET /v1/clusters/{id}', () => {
  it('shows members with their status, the evidence and the top signals', async () => {
    const c = await cluster({ score: 0.81 });
    await app.ctx.db.account.update({ where: { id: c.members[0]! }, data: { externalId: `ext-${c.id}` } });
    const res = await call('GET', `/v1/clusters/${c.id}`);
    expect(res.status).toBe(200);
    const detail = res.body as Detail;
    expect(detail).toMatchObject({
      id: c.id,
      score: 0.81,
      size: 3,
      topSignals: ['fingerprint', 'email_pattern'],
    });
    expect(detail.evidence).toEqual(evidence);
    expect(detail.members.map((m) => m.accountId).sort()).toEqual([...c.members].sort());
    expect(detail.membersNextCursor).toBeNull();
    expect(detail.members.find((m) => m.accountId === c.members[0])).toMatchObject({
      externalId: `ext-${c.id}`,
      status: 'active',
    });
  });

  it('shows the first 500 members of a farm, and pages through the rest oldest signup first', async () => {
    const id = newId('clu');
    const t0 = Date.parse('2026-02-01T00:00:00Z');
    // 300 members made in the same millisecond (their order is their id's), then 320 a second apart.
    const together = Array.from({ length: 300 }, () => newId('acc'));
    const apart = Array.from({ length: 320 }, () => newId('acc'));
    await insertAccounts(app, together, t0, 0);
    await insertAccounts(app, apart, t0 + 1_000, 1_000);
    const expected = [...[...together].sort(), ...apart];
    await app.ctx.db.cluster.create({ data: { id, score: 0.9, size: expected.length, evidence } });
    await app.ctx.db.clusterMember.createMany({
      data: expected.map((accountId) => ({ accountId, clusterId: id })),
    });

    const view = (await call('GET', `/v1/clusters/${id}`)).body as Detail;
    expect(view.members.map((m) => m.accountId)).toEqual(expected.slice(0, 500));
    expect(view.membersNextCursor).toEqual(expect.any(String));
    // The view's cursor goes on where it stopped.
    const rest = await call('GET', `/v1/clusters/${id}/members?cursor=${view.membersNextCursor}`);
    expect(rest.status).toBe(200);
    expect(rest.body).toMatchObject({ nextCursor: null });
    expect((rest.body as { members: Member[] }).members.map((m) => m.accountId)).toEqual(expected.slice(500));

    // From the start, 250 at a time: every member once, in order.
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `limit=250&cursor=${cursor}` : 'limit=250';
      const page = await call('GET', `/v1/clusters/${id}/members?${query}`);
      expect(page.status).toBe(200);
      const body = page.body as { members: Member[]; nextCursor: string | null };
      sizes.push(body.members.length);
      seen.push(...body.members.map((m) => m.accountId));
      cursor = body.nextCursor;
    } while (cursor);
    expect(sizes).toEqual([250, 250, 120]);
    expect(seen).toEqual(expected);
  });

  it('refuses a member cursor it did not give out and a bad limit, and answers 404 for an unknown cluster', async () => {
    const c = await cluster();
    const listCursor = Buffer.from(JSON.stringify({ s: 0.5, i: c.id })).toString('base64url');
    for (const query of ['cursor=nope', `cursor=${listCursor}`, 'limit=0', 'limit=1001', 'order=desc']) {
      const res = await call('GET', `/v1/clusters/${c.id}/members?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    }
    expect((await call('GET', `/v1/clusters/${newId('clu')}/members`)).status).toBe(404);
    // A cluster whose members all dispersed is there, with no members.
    const empty = newId('clu');
    await app.ctx.db.cluster.create({ data: { id: empty, score: 0.2, size: 0, live: false, evidence } });
    expect((await call('GET', `/v1/clusters/${empty}/members`)).body).toEqual({
      members: [],
      nextCursor: null,
    });
  });

  it('answers 404 for an unknown cluster and 400 for something that is not a cluster id', async () => {
    expect((await call('GET', `/v1/clusters/${newId('clu')}`)).status).toBe(404);
    expect((await call('GET', '/v1/clusters/clu_nope')).status).toBe(400);
  });
});

describe("an analyst's actions", () => {
  it('suspends a whole cluster and restores it', async () => {
    const c = await cluster({ score: 0.77 });
    const suspended = await call('POST', `/v1/clusters/${c.id}/suspend`, {
      body: { note: 'same card, same device' },
    });
    expect(suspended.status).toBe(200);
    const detail = suspended.body as Detail;
    expect(detail.action).toBe('suspend');
    expect(detail.members.every((m) => m.status === 'suspended')).toBe(true);

    const restored = await call('POST', `/v1/clusters/${c.id}/unsuspend`);
    expect(restored.status).toBe(200);
    expect((restored.body as Detail).action).toBe('none');
    expect((restored.body as Detail).members.every((m) => m.status === 'active')).toBe(true);
    const events = await app.ctx.db.auditEvent.findMany({
      where: { subjectType: 'cluster', subjectId: c.id },
    });
    expect(events.map((e) => e.action).sort()).toEqual(['cluster.restored', 'cluster.suspended']);
    expect(events.find((e) => e.action === 'cluster.suspended')?.data).toMatchObject({
      note: 'same card, same device',
    });
  });

  it('labels clusters; a false positive is undone and its signals stop linking its members', async () => {
    const farm = await cluster({ score: 0.93 });
    const confirmed = await call('POST', `/v1/clusters/${farm.id}/label`, {
      body: { label: 'confirmed_farm' },
    });
    expect(confirmed.status).toBe(200);
    expect((confirmed.body as Detail).label).toBe('confirmed_farm');

    const c = await cluster({ score: 0.88 });
    await app.ctx.actions.applyClusterAction({
      clusterId: c.id,
      action: 'suspend',
      score: 0.88,
      evidence,
      memberIds: c.members,
      runId: 'run_0000000000000000000009',
      at: new Date('2026-01-12T00:00:00Z'),
    });
    const res = await call('POST', `/v1/clusters/${c.id}/label`, {
      body: { label: 'false_positive', note: 'a university NAT' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ label: 'false_positive', action: 'none' });
    expect((res.body as Detail).members.every((m) => m.status === 'active')).toBe(true);
    const suppressions = await app.ctx.db.linkSuppression.findMany({ where: { clusterId: c.id } });
    expect(suppressions).toHaveLength(3 * 2);
  });

  it('suspends and restores a single account, answering with the account', async () => {
    const id = await createAccount(app);
    const suspended = await call('POST', `/v1/accounts/${id}/suspend`, {
      body: { note: 'chargeback fraud' },
    });
    expect(suspended.status).toBe(200);
    expect(suspended.body).toMatchObject({ id, status: 'suspended' });
    const restored = await call('POST', `/v1/accounts/${id}/unsuspend`, { body: {} });
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ id, status: 'active' });
    const account = await app.ctx.db.account.findUniqueOrThrow({ where: { id } });
    expect(account.statusReason).toBe('appeal:admin');
  });

  it('refuses bad bodies and unknown subjects', async () => {
    const c = await cluster();
    expect((await call('POST', `/v1/clusters/${c.id}/label`, { body: { label: 'spam' } })).status).toBe(400);
    expect((await call('POST', `/v1/clusters/${c.id}/label`, { body: {} })).status).toBe(400);
    expect(
      (await call('POST', `/v1/clusters/${c.id}/suspend`, { body: { note: 'x'.repeat(1001) } })).status,
    ).toBe(400);
    expect((await call('POST', `/v1/clusters/${c.id}/suspend`, { body: { reason: 'x' } })).status).toBe(400);
    const text = await call('POST', `/v1/clusters/${c.id}/suspend`, {
      rawBody: 'note',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    expect((await call('POST', `/v1/clusters/${newId('clu')}/suspend`)).status).toBe(404);
    expect((await call('POST', `/v1/accounts/${newId('acc')}/suspend`)).status).toBe(404);
    expect((await call('POST', `/v1/accounts/${newId('acc')}/unsuspend`)).status).toBe(404);
  });
});

describe('GET /v1/accounts/{id}/links', () => {
  it("shows an account's signals, its links in both directions with their evidence, and its cluster", async () => {
    const c = await cluster({ members: 3 });
    const [x, y, z] = c.members as [string, string, string];
    const [lowA, lowB] = [x, y].sort() as [string, string];
    const [midA, midB] = [x, z].sort() as [string, string];
    await app.ctx.db.signal.createMany({
      data: [
        { kind: 'fingerprint', value: 'fp-7f3a', accountId: x, at: new Date('2026-01-10T10:00:00Z') },
        { kind: 'subnet', value: '81.2.69.0/24', accountId: x, at: new Date('2026-01-10T10:00:00Z') },
      ],
    });
    await app.ctx.db.link.createMany({
      data: [
        {
          accountA: lowA,
          accountB: lowB,
          weight: 1.9,
          evidence: {
            signals: [
              { kind: 'fingerprint', value: 'fp-7f3a', shared: 3, weight: 1.5 },
              { kind: 'subnet', weight: 0.4 },
            ],
          },
        },
        // Older shape: a bare list, and one entry without a kind.
        {
          accountA: midA,
          accountB: midB,
          weight: 1.6,
          evidence: [{ kind: 'email_pattern', weight: 0.9 }, { weight: 1 }],
        },
      ],
    });
    await app.ctx.db.accountFeature.create({
      data: {
        accountId: x,
        asOf: new Date('2026-01-12T00:00:00Z'),
        features: { activeHours: 24, atLimitDays: 0.9 },
        risk: 0.72,
      },
    });

    const res = await call('GET', `/v1/accounts/${x}/links`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      accountId: x,
      clusterId: c.id,
      risk: 0.72,
      features: { activeHours: 24, atLimitDays: 0.9 },
      signals: [
        { kind: 'fingerprint', value: 'fp-7f3a', at: '2026-01-10T10:00:00.000Z' },
        { kind: 'subnet', value: '81.2.69.0/24', at: '2026-01-10T10:00:00.000Z' },
      ],
      links: [
        {
          accountId: y,
          weight: 1.9,
          signals: [
            { kind: 'fingerprint', value: 'fp-7f3a', shared: 3, weight: 1.5 },
            { kind: 'subnet', weight: 0.4 },
          ],
        },
        { accountId: z, weight: 1.6, signals: [{ kind: 'email_pattern', weight: 0.9 }] },
      ],
    });
  });

  it('answers an unlinked account with empty lists and 404 for an unknown one', async () => {
    const id = await createAccount(app);
    const res = await call('GET', `/v1/accounts/${id}/links`);
    expect(res.body).toEqual({
      accountId: id,
      clusterId: null,
      risk: 0,
      features: null,
      signals: [],
      links: [],
    });
    expect((await call('GET', `/v1/accounts/${newId('acc')}/links`)).status).toBe(404);
  });
});

describe('GET /v1/analysis/baseline', () => {
  it('gives percentiles of real accounts’ daily cost next to the daily limits, in event time', async () => {
    // Far in the future, so this file's usage is the newest any test writes: it sets "now".
    const day = (d: number, h = 12) => new Date(Date.UTC(2090, 0, d, h));
    const account = () => createAccount(app, { tier });
    const [a, b, c, d, suspended, flagged, old] = [
      await account(),
      await account(),
      await account(),
      await account(),
      await createAccount(app, { tier, status: 'suspended' }),
      await account(),
      await account(),
    ];
    const review = newId('clu');
    const acted = newId('clu');
    await app.ctx.db.cluster.createMany({
      data: [
        { id: review, action: 'review', score: 0.5, size: 1, evidence: {} },
        { id: acted, action: 'throttle', score: 0.65, size: 1, evidence: {} },
      ],
    });
    await app.ctx.db.clusterMember.createMany({
      data: [
        { accountId: d, clusterId: review },
        { accountId: flagged, clusterId: acted },
      ],
    });
    const usage = (accountId: string, hour: Date, cost: number) => ({
      accountId,
      hour,
      cost: BigInt(cost),
      requests: 1,
    });
    await app.ctx.db.usageHour.createMany({
      data: [
        usage(a, day(20, 9), 40),
        usage(a, day(20, 10), 60),
        usage(a, day(21), 300),
        usage(b, day(20), 200),
        usage(c, day(22, 23), 400),
        usage(d, day(21), 1000),
        usage(suspended, day(21), 99_999),
        usage(flagged, day(21), 88_888),
        usage(old, day(2), 77_777),
      ],
    });

    const res = await call('GET', '/v1/analysis/baseline');
    expect(res.status).toBe(200);
    const tiers = (res.body as { tiers: Array<Record<string, unknown>> }).tiers;
    // Samples 100, 200, 300, 400, 1000 (one per account and day), interpolated like percentile_cont.
    const mine = tiers.find((t) => t.tier === tier)!;
    expect(mine).toMatchObject({ accounts: 4, p50: 300, dailyLimits: { key: 4000, user: 1500 } });
    expect(mine.p95).toBeCloseTo(880, 6);
    expect(mine.p99).toBeCloseTo(976, 6);
    expect(tiers.find((t) => t.tier === 'free')).toMatchObject({ dailyLimits: { key: 1000, user: 1200 } });
  });
});

describe('scopes', () => {
  it('lets only admin tokens in', async () => {
    const token = await app.tokenWith('signup', 'keys', 'enforce', 'ingest');
    const c = await cluster();
    const id = c.members[0]!;
    const routes: Array<[string, string]> = [
      ['GET', '/v1/clusters'],
      ['GET', `/v1/clusters/${c.id}`],
      ['GET', `/v1/clusters/${c.id}/members`],
      ['POST', `/v1/clusters/${c.id}/label`],
      ['POST', `/v1/clusters/${c.id}/suspend`],
      ['POST', `/v1/clusters/${c.id}/unsuspend`],
      ['POST', `/v1/accounts/${id}/suspend`],
      ['POST', `/v1/accounts/${id}/unsuspend`],
      ['GET', `/v1/accounts/${id}/links`],
      ['GET', '/v1/analysis/baseline'],
    ];
    for (const [method, path] of routes) {
      expect((await call(method, path, { token })).status, `${method} ${path}`).toBe(403);
      expect((await call(method, path, { token: null })).status, `${method} ${path}`).toBe(401);
    }
    const unchanged = await app.ctx.db.account.findMany({ where: { id: { in: c.members } } });
    expect(unchanged.every((a) => a.status === 'active')).toBe(true);
  });
});
