import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { createAccount, createKey } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { RawClient } from '../support/raw-http.ts';

// POST /v1/enforce through real HTTP, PostgreSQL and Redis.

const policy = parsePolicy(`
version: 1
enforcement:
  defaultTier: free
  endpointCosts: { /v1/chat: 5 }
  throttle: { nearLimitRatio: 0.5, maxDelayMs: 1000, flaggedDelayMs: 300, flaggedLimitFactor: 0.5 }
  tiers:
    free:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 4, buckets: 12 }]
        user: [{ window: 1m, limit: 6, buckets: 12 }, { window: 24h, limit: 10, buckets: 96 }]
        device: [{ window: 24h, limit: 5, buckets: 96 }]
    bulk:
      maxKeys: 2
      limits:
        key: [{ window: 24h, limit: 100, buckets: 96 }]
    roomy:
      maxKeys: 5
      limits:
        user: [{ window: 24h, limit: 1000, buckets: 96 }]
        ip: [{ window: 1m, limit: 1000, buckets: 12 }]
    open:
      maxKeys: 1
      limits: {}
`);

let app: TestApp;
let keysToken: string;
let gateway: string;
beforeAll(async () => {
  // Generous budgets: these tests are about exact counting on a busy 2-core machine; the
  // timeout behaviour has its own test with production settings.
  app = await startTestApp({
    policy,
    env: { ENFORCE_REDIS_TIMEOUT_MS: '2000', ENFORCE_DEADLINE_MS: '5000' },
  });
  keysToken = await app.tokenWith('keys');
  gateway = await app.tokenWith('enforce');
});
afterAll(async () => {
  await app.close();
});

let ipSeq = 1;
const freshIp = () => `73.44.${Math.floor(ipSeq / 250)}.${(ipSeq++ % 250) + 1}`;

interface Decision {
  decision: 'allow' | 'throttle' | 'deny';
  reason?: string;
  accountId?: string;
  delayMs?: number;
  retryAfterMs?: number;
  degrade?: boolean;
  limits: Array<{ name: string; limit: number; remaining: number; resetSeconds: number }>;
}

async function enforce(body: Record<string, unknown>) {
  const res = await app.request('POST', '/v1/enforce', { token: gateway, body: { ip: freshIp(), ...body } });
  expectContract(res, 'POST', '/v1/enforce');
  expect(res.status).toBe(200);
  return { res, d: res.body as Decision };
}

async function keyFor(opts: Parameters<typeof createAccount>[1] = {}) {
  const accountId = await createAccount(app, opts);
  const { key, id } = await createKey(app, accountId, keysToken);
  return { accountId, key, keyId: id };
}

describe('POST /v1/enforce', () => {
  it('allows a valid key and reports every window with RateLimit headers', async () => {
    const { key, accountId } = await keyFor();
    const { res, d } = await enforce({ key });
    expect(d.decision).toBe('allow');
    expect(d.accountId).toBe(accountId);
    expect(d.limits.map((l) => l.name)).toEqual(['key:1m', 'user:1m', 'user:24h']);
    expect(d.limits[0]).toMatchObject({ limit: 4, remaining: 3 });
    expect(res.headers.get('ratelimit-policy')).toBe(
      '"key:1m";q=4;w=60, "user:1m";q=6;w=60, "user:24h";q=10;w=86400',
    );
    expect(res.headers.get('ratelimit')).toMatch(/^"key:1m";r=3;t=\d+$/);
  });

  it('answers invalid_key alike for unknown, revoked and expired keys', async () => {
    const unknown = await enforce({ key: 'gh_live_thisisnotarealkeythisisnotarealkey00000' });
    expect(unknown.d).toMatchObject({ decision: 'deny', reason: 'invalid_key' });
    expect(unknown.d.accountId).toBeUndefined();

    const revoked = await keyFor();
    await app.request('DELETE', `/v1/keys/${revoked.keyId}`, { token: keysToken });
    expect((await enforce({ key: revoked.key })).d).toMatchObject({
      decision: 'deny',
      reason: 'invalid_key',
    });

    const expired = await keyFor();
    await app.ctx.db.apiKey.update({
      where: { id: expired.keyId },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    await app.ctx.apiKeys.invalidateAccount(expired.accountId);
    await new Promise((r) => setTimeout(r, 50));
    expect((await enforce({ key: expired.key })).d).toMatchObject({
      decision: 'deny',
      reason: 'invalid_key',
    });
  });

  it('denies suspended accounts and accounts that still owe a verification', async () => {
    const a = await keyFor();
    await app.ctx.db.account.update({ where: { id: a.accountId }, data: { status: 'suspended' } });
    await app.ctx.apiKeys.invalidateAccount(a.accountId);
    await new Promise((r) => setTimeout(r, 50));
    expect((await enforce({ key: a.key })).d).toMatchObject({
      decision: 'deny',
      reason: 'account_suspended',
    });

    const b = await keyFor();
    await app.ctx.db.account.update({ where: { id: b.accountId }, data: { status: 'challenged' } });
    await app.ctx.apiKeys.invalidateAccount(b.accountId);
    await new Promise((r) => setTimeout(r, 50));
    expect((await enforce({ key: b.key })).d).toMatchObject({
      decision: 'deny',
      reason: 'verification_required',
    });
  });

  it('refuses past a burst window (rate_limited, Retry-After) and past the daily budget (quota_exhausted)', async () => {
    const { key, accountId } = await keyFor();
    const decisions: string[] = [];
    for (let i = 0; i < 4; i++) decisions.push((await enforce({ key })).d.decision);
    expect(decisions.filter((d) => d !== 'deny')).toHaveLength(4);
    const over = await enforce({ key });
    expect(over.d).toMatchObject({ decision: 'deny', reason: 'rate_limited' });
    expect(Number(over.res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(over.d.retryAfterMs).toBeGreaterThan(0);

    // A second key of the same user: 6 more would pass its own key window, the user's daily 10 does not.
    const second = await createKey(app, accountId, keysToken);
    const more: Decision[] = [];
    for (let i = 0; i < 4; i++) more.push((await enforce({ key: second.key, cost: 1 })).d);
    // user:1m (6) is now full: 4 + 2 admitted; later calls are refused by the user's minute window.
    expect(more.filter((d) => d.decision !== 'deny')).toHaveLength(2);
    expect(more.at(-1)).toMatchObject({ decision: 'deny', reason: 'rate_limited' });
  });

  it("shares one user's budget across all its keys", async () => {
    const { key, accountId } = await keyFor({ tier: 'roomy' });
    await app.request('PUT', `/v1/accounts/${accountId}/limits`, {
      body: { limits: { user: [{ window: '24h', limit: 5, buckets: 96 }] } },
    });
    const second = await createKey(app, accountId, keysToken);
    const results: string[] = [];
    for (let i = 0; i < 3; i++) results.push((await enforce({ key })).d.decision);
    for (let i = 0; i < 3; i++) results.push((await enforce({ key: second.key })).d.decision);
    expect(results.slice(0, 5).every((d) => d !== 'deny')).toBe(true);
    expect(results[5]).toBe('deny');
  });

  it('shares one device fingerprint budget across accounts', async () => {
    const fingerprint = `fp-${Math.random().toString(36).slice(2)}`;
    const a = await keyFor();
    const b = await keyFor();
    const outcomes: Decision[] = [];
    for (let i = 0; i < 3; i++) outcomes.push((await enforce({ key: a.key, fingerprint })).d);
    for (let i = 0; i < 3; i++) outcomes.push((await enforce({ key: b.key, fingerprint })).d);
    expect(outcomes.slice(0, 5).every((d) => d.decision !== 'deny')).toBe(true);
    expect(outcomes[5]).toMatchObject({ decision: 'deny', reason: 'quota_exhausted' });
  });

  it('admits exactly 100 of 200 concurrent requests at a key with 100 remaining', async () => {
    const { key } = await keyFor({ tier: 'bulk' });
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        app.request('POST', '/v1/enforce', { token: gateway, body: { key, ip: '73.45.1.1' } }),
      ),
    );
    const allowed = results.filter((r) => (r.body as Decision).decision !== 'deny');
    expect(allowed).toHaveLength(100);
    expect(results.filter((r) => (r.body as Decision).reason === 'quota_exhausted')).toHaveLength(100);
  });

  it('spends nothing on a cost 0 lookup and weighs endpoints by their cost', async () => {
    const { key } = await keyFor();
    const look = await enforce({ key, cost: 0 });
    const again = await enforce({ key, cost: 0 });
    expect(look.d.limits[0]!.remaining).toBe(4);
    expect(again.d.limits).toEqual(look.d.limits);
    const chat = await enforce({ key, endpoint: '/v1/chat/completions' });
    // Cost 5 does not fit the key's minute window of 4.
    expect(chat.d).toMatchObject({ decision: 'deny', reason: 'rate_limited' });
    const cheap = await enforce({ key, endpoint: '/v1/models' });
    expect(cheap.d.decision).not.toBe('deny');
  });

  it('slows a key down as it nears its limit and flags detected accounts with degrade', async () => {
    const { key } = await keyFor();
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) delays.push((await enforce({ key })).d.delayMs ?? 0);
    expect(delays[0]).toBe(0);
    expect(delays[3]).toBeGreaterThan(delays[2]!);
    expect(delays[3]).toBeLessThanOrEqual(1000);

    // Detection throttles an account that already holds keys.
    const flagged = await keyFor();
    await app.ctx.db.account.update({ where: { id: flagged.accountId }, data: { status: 'throttled' } });
    await app.ctx.apiKeys.invalidateAccount(flagged.accountId);
    await new Promise((r) => setTimeout(r, 50));
    const { d } = await enforce({ key: flagged.key });
    expect(d).toMatchObject({ decision: 'throttle', reason: 'flagged', degrade: true });
    expect(d.delayMs).toBeGreaterThanOrEqual(300);
    // Flagged accounts get limits cut by flaggedLimitFactor (0.5).
    expect(d.limits[0]!.limit).toBe(2);
  });

  it('denies a blocked network (blocked_ip)', async () => {
    const { key } = await keyFor();
    await app.request('POST', '/v1/rules', {
      body: { kind: 'cidr', mode: 'block', value: '198.51.100.0/24' },
    });
    expect((await enforce({ key, ip: '198.51.100.9' })).d).toMatchObject({
      decision: 'deny',
      reason: 'blocked_ip',
    });
  });

  it('appends the usage event with a MinHash of the query, never the query itself', async () => {
    const { key, accountId } = await keyFor();
    const query = 'Translate the following sentence into French: the cat sat on the mat';
    await enforce({ key, query, fingerprint: 'fp-stream-test', endpoint: '/v1/chat' });
    const entries = await app.ctx.redis.xrevrange(app.ctx.keys.usageStream(), '+', '-', 'COUNT', 50);
    const mine = entries.map(([, f]) => f).find((f) => f.includes(accountId));
    expect(mine).toBeDefined();
    const fields = Object.fromEntries(
      Array.from({ length: mine!.length / 2 }, (_, i) => [mine![2 * i], mine![2 * i + 1]]),
    );
    expect(fields.fp).toBe('fp-stream-test');
    expect(fields.mh?.split(',')).toHaveLength(32);
    expect(JSON.stringify(entries)).not.toContain('French');
  });

  it('still appends the usage event for a tier without limits', async () => {
    const { key, accountId } = await keyFor({ tier: 'open' });
    const { res, d } = await enforce({ key, fingerprint: 'fp-open-tier' });
    expect(d).toEqual({ decision: 'allow', accountId, limits: [] });
    expect(res.headers.get('ratelimit-policy')).toBeNull();
    const entries = await app.ctx.redis.xrevrange(app.ctx.keys.usageStream(), '+', '-', 'COUNT', 50);
    const mine = entries.map(([, f]) => f).find((f) => f.includes(accountId));
    expect(mine).toEqual(expect.arrayContaining(['fp', 'fp-open-tier', 'd', 'allow']));
  });

  it('changes tier and per-account limits without a restart', async () => {
    const { key, accountId } = await keyFor();
    const before = await enforce({ key });
    expect(before.d.limits[0]!.limit).toBe(4);
    const res = await app.request('PUT', `/v1/accounts/${accountId}/limits`, {
      body: { limits: { key: [{ window: '1m', limit: 40, buckets: 12 }] } },
    });
    expect(res.status).toBe(200);
    expectContract(res, 'PUT', `/v1/accounts/${accountId}/limits`);
    await new Promise((r) => setTimeout(r, 100));
    const after = await enforce({ key });
    expect(after.d.limits[0]!.limit).toBe(40);

    const usage = await app.request('GET', `/v1/accounts/${accountId}/usage`, { token: keysToken });
    expect(usage.status).toBe(200);
    expectContract(usage, 'GET', `/v1/accounts/${accountId}/usage`);
    const names = (usage.body as { limits: Array<{ name: string }> }).limits.map((l) => l.name);
    expect(names).toEqual(expect.arrayContaining(['user:1m', 'user:24h']));
  });

  it('cuts every limit at once with the emergency switch', async () => {
    const { key } = await keyFor();
    const set = await app.request('PUT', '/v1/enforce/emergency', { body: { factor: 0.5 } });
    expect(set.status).toBe(200);
    expectContract(set, 'PUT', '/v1/enforce/emergency');
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect((await enforce({ key })).d.limits[0]!.limit).toBe(2);
    } finally {
      await app.request('PUT', '/v1/enforce/emergency', { body: { factor: 1 } });
    }
  });

  it('answers 400 naming the field for bad input, 401/403 for bad gateway tokens', async () => {
    const bad = await app.request('POST', '/v1/enforce', {
      token: gateway,
      body: { key: 'x', ip: 'not-an-ip', extra: 1 },
    });
    expect(bad.status).toBe(400);
    expectContract(bad, 'POST', '/v1/enforce');
    expect((bad.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field).sort()).toEqual([
      'extra',
      'ip',
    ]);
    const malformed = await app.request('POST', '/v1/enforce', {
      token: gateway,
      rawBody: '{',
      headers: { 'content-type': 'application/json' },
    });
    expect(malformed.status).toBe(400);
    const noToken = await app.request('POST', '/v1/enforce', {
      token: null,
      body: { key: 'x', ip: '1.1.1.1' },
    });
    expect(noToken.status).toBe(401);
    const signupOnly = await app.tokenWith('signup');
    const wrongScope = await app.request('POST', '/v1/enforce', {
      token: signupOnly,
      body: { key: 'x', ip: '1.1.1.1' },
    });
    expect(wrongScope.status).toBe(403);
    const big = await app.request('POST', '/v1/enforce', {
      token: gateway,
      rawBody: JSON.stringify({ key: 'x', ip: '1.1.1.1', query: 'q'.repeat(300_000) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(big.status).toBe(413);
  });

  it("counts a gateway's pipelined decisions in order on one connection, before and after node:http takes it", async () => {
    // A gateway's keep-alive connection: plain requests are read from the socket (src/http/wire.ts);
    // a chunked one sends the connection to node:http, which answers the same way from then on.
    const { key, accountId } = await keyFor();
    const port = Number(new URL(app.url).port);
    const request = (body: string, framing: 'length' | 'chunked' = 'length') =>
      `POST /v1/enforce HTTP/1.1\r\nHost: gatehouse\r\nAuthorization: Bearer ${gateway}\r\n` +
      'Content-Type: application/json\r\nX-Request-Id: pipelined-1\r\n' +
      (framing === 'length'
        ? `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
        : `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
    const body = JSON.stringify({ key, ip: freshIp() });
    const c = await RawClient.open(port);
    c.send(request(body) + request(body) + request(body));
    const first = await c.responses(3);
    c.send(request(body, 'chunked') + request(body) + request('{"key":'));
    const later = await c.responses(3);
    c.destroy();
    const all = [...first, ...later];
    expect(all.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 400]);
    const decisions = all.slice(0, 5).map((r) => JSON.parse(r.body) as Decision);
    expect(decisions.map((d) => d.limits[0]!.remaining)).toEqual([3, 2, 1, 0, 0]);
    expect(decisions.map((d) => d.decision !== 'deny')).toEqual([true, true, true, true, false]);
    expect(decisions[4]).toMatchObject({ reason: 'rate_limited', accountId });
    expect(all[4]!.headers['retry-after']).toMatch(/^\d+$/);
    for (const r of all) {
      expect(r.headers['x-request-id']).toBe('pipelined-1');
      expect(r.headers.connection).toBe('keep-alive');
    }
    expect(all[0]!.headers.ratelimit).toMatch(/^"key:1m";r=3;t=\d+$/);
    expect(JSON.parse(all[5]!.body)).toMatchObject({ code: 'malformed_json', status: 400 });
  });
});
