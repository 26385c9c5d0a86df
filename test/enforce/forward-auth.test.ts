import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { FORWARD_AUTH_PATH } from '../../src/enforce/http.ts';
import { parsePolicy } from '../../src/policy/policy.ts';
import { createAccount, createKey } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, type TestResponse } from '../support/harness.ts';

// GET /v1/enforce/forward-auth through real HTTP, PostgreSQL and Redis: the status-code form of the
// decision that nginx auth_request, Traefik ForwardAuth and Envoy ext_authz rely on.
//
// The test client connects from 127.0.0.1, which the default TRUSTED_PROXIES believes, so it plays
// the gateway: X-Forwarded-For names the end user.

const policy = parsePolicy(`
version: 1
enforcement:
  defaultTier: free
  endpointCosts: { /v1/chat: 5 }
  throttle: { nearLimitRatio: 0.9, maxDelayMs: 300, flaggedDelayMs: 150, flaggedLimitFactor: 0.5 }
  tiers:
    free:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 20, buckets: 12 }]
        ip: [{ window: 1m, limit: 2, buckets: 12 }]
    tight:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 2, buckets: 12 }]
    # No per-IP window: calls at cost 5 would not fit the free tier's 2.
    metered:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 20, buckets: 12 }]
`);

const PATH = FORWARD_AUTH_PATH;
// Generous budgets: these tests count exactly on a busy 2-core machine.
const env = { ENFORCE_REDIS_TIMEOUT_MS: '2000', ENFORCE_DEADLINE_MS: '5000' };

let app: TestApp;
let keysToken: string;
let gateway: string;
beforeAll(async () => {
  app = await startTestApp({ policy, env });
  keysToken = await app.tokenWith('keys');
  gateway = await app.tokenWith('enforce');
});
afterAll(async () => {
  await app?.close();
});

// Every request gets its own end-user address unless a test names one: the per-IP window of 2
// would otherwise tie unrelated tests together.
let ipSeq = 1;
const freshIp = () => `73.50.${Math.floor(ipSeq / 250)}.${(ipSeq++ % 250) + 1}`;

interface Decision {
  decision: 'allow' | 'throttle' | 'deny';
  reason?: string;
  accountId?: string;
  delayMs?: number;
  retryAfterMs?: number;
  degrade?: boolean;
  limits: Array<{ name: string; limit: number; remaining: number; resetSeconds: number }>;
}

async function forwardAuth(
  headers: Record<string, string>,
  opts: { query?: string; gatewayToken?: string | null; target?: TestApp } = {},
): Promise<{ res: TestResponse; d: Decision }> {
  const target = opts.target ?? app;
  const token = opts.gatewayToken === undefined ? gateway : opts.gatewayToken;
  const res = await target.request('GET', `${PATH}${opts.query ?? ''}`, {
    token: null,
    headers: {
      'x-forwarded-for': freshIp(),
      ...(token === null ? {} : { 'x-gatehouse-token': token }),
      ...headers,
    },
  });
  expectContract(res, 'GET', PATH);
  return { res, d: res.body as Decision };
}

async function keyFor(
  opts: Parameters<typeof createAccount>[1] = {},
  target: TestApp = app,
  token = keysToken,
) {
  const accountId = await createAccount(target, opts);
  const { key } = await createKey(target, accountId, token);
  return { accountId, key };
}

async function setStatus(accountId: string, status: 'suspended' | 'throttled') {
  await app.ctx.db.account.update({ where: { id: accountId }, data: { status } });
  await app.ctx.apiKeys.invalidateAccount(accountId);
  // The key cache is dropped through Redis pub/sub, which lands a moment later.
  await new Promise((r) => setTimeout(r, 50));
}

const remaining = (d: Decision, name: string) => d.limits.find((l) => l.name === name)?.remaining;

/** The usage events Gatehouse appended for one account, as field maps. */
async function eventsOf(target: TestApp, accountId: string): Promise<Array<Record<string, string>>> {
  const entries = await target.ctx.redis.xrevrange(target.ctx.keys.usageStream(), '+', '-', 'COUNT', 500);
  return entries
    .map(
      ([, f]): Record<string, string> =>
        Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i]!, f[2 * i + 1]!])),
    )
    .filter((f) => f.a === accountId);
}

describe('GET /v1/enforce/forward-auth: the end user and the decision', () => {
  it('takes the key from Authorization: Bearer and from X-API-Key, and names the account', async () => {
    const { key, accountId } = await keyFor();
    const bearer = await forwardAuth({ authorization: `Bearer ${key}` });
    expect(bearer.res.status).toBe(200);
    expect(bearer.d).toMatchObject({ decision: 'allow', accountId });
    expect(bearer.res.headers.get('x-gatehouse-account')).toBe(accountId);
    expect(bearer.res.headers.get('x-gatehouse-decision')).toBe('allow');
    expect(bearer.res.headers.get('ratelimit-policy')).toContain('"key:1m";q=20;w=60');
    expect(bearer.res.headers.get('x-gatehouse-degrade')).toBeNull();

    const apiKey = await forwardAuth({ 'x-api-key': key });
    expect(apiKey.res.status).toBe(200);
    expect(apiKey.d.accountId).toBe(accountId);
    // Both calls counted against the one key.
    expect(remaining(apiKey.d, 'key:1m')).toBe(18);
  });

  it('answers 401 invalid_key with WWW-Authenticate for a missing or unknown key', async () => {
    const missing = await forwardAuth({});
    expect(missing.res.status).toBe(401);
    expect(missing.res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(missing.res.headers.get('x-gatehouse-reason')).toBe('invalid_key');
    expect(missing.res.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/);
    expect(missing.d).toMatchObject({ decision: 'deny', reason: 'invalid_key' });

    const unknown = await forwardAuth({
      authorization: 'Bearer gh_live_thisisnotarealkeythisisnotarealkey00000',
    });
    expect(unknown.res.status).toBe(401);
    expect(unknown.res.headers.get('x-gatehouse-reason')).toBe('invalid_key');
    expect(unknown.res.headers.get('x-gatehouse-account')).toBeNull();
  });

  it('answers 403 account_suspended for a suspended account', async () => {
    const { key, accountId } = await keyFor();
    expect((await forwardAuth({ authorization: `Bearer ${key}` })).res.status).toBe(200);
    await setStatus(accountId, 'suspended');
    const { res, d } = await forwardAuth({ authorization: `Bearer ${key}` });
    expect(res.status).toBe(403);
    expect(res.headers.get('x-gatehouse-reason')).toBe('account_suspended');
    expect(res.headers.get('x-gatehouse-status')).toBeNull();
    expect(d).toMatchObject({ decision: 'deny', reason: 'account_suspended', accountId });
  });

  it('answers 429 with Retry-After past a limit', async () => {
    const { key } = await keyFor({ tier: 'tight' });
    for (let i = 0; i < 2; i++) expect((await forwardAuth({ 'x-api-key': key })).res.status).toBe(200);
    const { res, d } = await forwardAuth({ 'x-api-key': key });
    expect(res.status).toBe(429);
    expect(res.headers.get('x-gatehouse-reason')).toBe('rate_limited');
    expect(res.headers.get('x-gatehouse-decision')).toBe('deny');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // At most the window plus one bucket (5 s of the minute's 12).
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(65);
    expect(d.retryAfterMs).toBeGreaterThan(0);
  });

  it('in nginx mode answers 403 with the real status in X-Gatehouse-Status; 401 and 403 stay as they are', async () => {
    const { key } = await keyFor({ tier: 'tight' });
    for (let i = 0; i < 2; i++) await forwardAuth({ 'x-api-key': key }, { query: '?mode=nginx' });
    const over = await forwardAuth({ 'x-api-key': key }, { query: '?mode=nginx' });
    expect(over.res.status).toBe(403);
    expect(over.res.headers.get('x-gatehouse-status')).toBe('429');
    expect(over.res.headers.get('x-gatehouse-reason')).toBe('rate_limited');
    expect(Number(over.res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    const invalid = await forwardAuth({ 'x-api-key': 'gh_live_nope' }, { query: '?mode=nginx' });
    expect(invalid.res.status).toBe(401);
    expect(invalid.res.headers.get('x-gatehouse-status')).toBeNull();

    const suspended = await keyFor();
    await setStatus(suspended.accountId, 'suspended');
    const refused = await forwardAuth({ 'x-api-key': suspended.key }, { query: '?mode=nginx' });
    expect(refused.res.status).toBe(403);
    expect(refused.res.headers.get('x-gatehouse-status')).toBeNull();

    // Other modes, or none, keep the plain statuses.
    const plain = await forwardAuth({ 'x-api-key': key }, { query: '?mode=traefik' });
    expect(plain.res.status).toBe(429);
  });

  it('holds a throttled call for delayMs before answering, and flags a detected account with degrade', async () => {
    const { key, accountId } = await keyFor();
    await setStatus(accountId, 'throttled');
    const started = performance.now();
    const { res, d } = await forwardAuth({ authorization: `Bearer ${key}` });
    const elapsed = performance.now() - started;
    expect(res.status).toBe(200);
    expect(d).toMatchObject({ decision: 'throttle', reason: 'flagged', degrade: true });
    expect(d.delayMs).toBeGreaterThanOrEqual(150);
    expect(res.headers.get('x-gatehouse-delay-ms')).toBe(String(d.delayMs));
    expect(res.headers.get('x-gatehouse-degrade')).toBe('1');
    expect(res.headers.get('x-gatehouse-decision')).toBe('throttle');
    // Timer granularity: allow a millisecond of rounding between setTimeout and performance.now().
    expect(elapsed).toBeGreaterThanOrEqual(d.delayMs! - 1);
    // Flagged accounts also get their limits cut (flaggedLimitFactor 0.5).
    expect(d.limits.find((l) => l.name === 'key:1m')?.limit).toBe(10);
  });

  it('prices the call by the path in X-Forwarded-Uri, else X-Original-URI', async () => {
    const { key } = await keyFor({ tier: 'metered' });
    const h = { authorization: `Bearer ${key}` };
    const chat = await forwardAuth({ ...h, 'x-forwarded-uri': '/v1/chat/completions?stream=true' });
    expect(remaining(chat.d, 'key:1m')).toBe(15);
    const original = await forwardAuth({ ...h, 'x-original-uri': '/v1/chat' });
    expect(remaining(original.d, 'key:1m')).toBe(10);
    // X-Forwarded-Uri wins over X-Original-URI.
    const both = await forwardAuth({ ...h, 'x-forwarded-uri': '/v1/models', 'x-original-uri': '/v1/chat' });
    expect(remaining(both.d, 'key:1m')).toBe(9);
    const none = await forwardAuth(h);
    expect(remaining(none.d, 'key:1m')).toBe(8);
  });

  it('honours X-Gatehouse-Cost over the path, ignores malformed costs, and spends nothing on cost 0', async () => {
    const { key, accountId } = await keyFor({ tier: 'metered' });
    const h = { authorization: `Bearer ${key}` };
    const look = await forwardAuth({ ...h, 'x-gatehouse-cost': '0', 'x-forwarded-uri': '/v1/chat' });
    expect(look.res.status).toBe(200);
    expect(remaining(look.d, 'key:1m')).toBe(20);
    const three = await forwardAuth({ ...h, 'x-gatehouse-cost': '3', 'x-forwarded-uri': '/v1/chat' });
    expect(remaining(three.d, 'key:1m')).toBe(17);
    let left = 17;
    for (const bad of ['abc', '-1', '1.5', '12345678']) {
      const r = await forwardAuth({ ...h, 'x-gatehouse-cost': bad });
      left -= 1;
      expect(remaining(r.d, 'key:1m'), `X-Gatehouse-Cost: ${bad}`).toBe(left);
    }
    const events = await eventsOf(app, accountId);
    expect(events.map((e) => e.c).sort()).toEqual(['1', '1', '1', '1', '3']);
  });
});

describe('GET /v1/enforce/forward-auth: the gateway', () => {
  it('answers 401 problem+json without the gateway token or with an unknown one, and 403 without the enforce scope', async () => {
    const { key } = await keyFor();
    const missing = await forwardAuth({ authorization: `Bearer ${key}` }, { gatewayToken: null });
    expect(missing.res.status).toBe(401);
    expect(missing.res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(missing.res.headers.get('www-authenticate')).toContain('realm="gatehouse"');

    const unknown = await forwardAuth({ authorization: `Bearer ${key}` }, { gatewayToken: 'ght_unknown' });
    expect(unknown.res.status).toBe(401);
    expect(unknown.res.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    // The gateway's token in Authorization is an end-user key here, never the gateway's proof.
    const misplaced = await forwardAuth({ authorization: `Bearer ${gateway}` }, { gatewayToken: null });
    expect(misplaced.res.status).toBe(401);
    expect(misplaced.res.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    const keysOnly = await forwardAuth({ authorization: `Bearer ${key}` }, { gatewayToken: keysToken });
    expect(keysOnly.res.status).toBe(403);
    expect(keysOnly.res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((keysOnly.res.body as { code: string }).code).toBe('forbidden');
  });

  it('answers HEAD like GET, without a body', async () => {
    const { key } = await keyFor();
    const res = await fetch(`${app.url}${PATH}`, {
      method: 'HEAD',
      headers: { 'x-gatehouse-token': gateway, 'x-api-key': key, 'x-forwarded-for': freshIp() },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gatehouse-decision')).toBe('allow');
    expect(await res.text()).toBe('');
  });

  // Reported, not fixed here (src/enforce/http.ts is not this change's file): Envoy's HTTP ext_authz
  // sends the check with the client's own method and with the client's path appended to
  // `path_prefix`. The fast path only answers GET/HEAD on the exact path, so every such check falls
  // through to Express and Envoy denies every call. Flip to `it` once http.ts accepts them.
  it('answers an Envoy ext_authz check (client method, path appended to path_prefix)', async () => {
    const { key } = await keyFor();
    const res = await fetch(`${app.url}${PATH}/v1/embeddings?input=one`, {
      method: 'POST',
      headers: { 'x-gatehouse-token': gateway, authorization: `Bearer ${key}`, 'x-forwarded-for': freshIp() },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gatehouse-account')).not.toBeNull();
  });
});

describe('GET /v1/enforce/forward-auth: the client address', () => {
  it('decides for the nearest untrusted X-Forwarded-For hop, whatever the client wrote further left', async () => {
    const { key, accountId } = await keyFor();
    const h = { authorization: `Bearer ${key}` };
    // The per-IP window is 2 a minute: two calls from 73.1.2.3 fill it, whatever sits left of it.
    const first = await forwardAuth({ ...h, 'x-forwarded-for': '6.6.6.6, 73.1.2.3' });
    const second = await forwardAuth({ ...h, 'x-forwarded-for': '7.7.7.7,73.1.2.3' });
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    expect(remaining(second.d, 'ip:1m')).toBe(0);
    const third = await forwardAuth({ ...h, 'x-forwarded-for': '8.8.8.8, 9.9.9.9, 73.1.2.3' });
    expect(third.res.status).toBe(429);
    expect(third.res.headers.get('x-gatehouse-reason')).toBe('rate_limited');

    // Another real client is not held back, even when it names the exhausted address as a spoof.
    const other = await forwardAuth({ ...h, 'x-forwarded-for': '73.1.2.3, 73.1.2.4' });
    expect(other.res.status).toBe(200);
    expect(remaining(other.d, 'ip:1m')).toBe(1);

    const ips = (await eventsOf(app, accountId)).map((e) => e.ip).sort();
    expect(ips).toEqual(['73.1.2.3', '73.1.2.3', '73.1.2.3', '73.1.2.4']);
  });

  it('with TRUSTED_PROXIES not covering the caller, ignores X-Forwarded-For and decides for the socket address', async () => {
    const strict = await startTestApp({ policy, env: { ...env, TRUSTED_PROXIES: '10.0.0.0/8' } });
    try {
      const strictGateway = await strict.tokenWith('enforce');
      const { key, accountId } = await keyFor({}, strict, await strict.tokenWith('keys'));
      const call = (xff: string) =>
        forwardAuth(
          { 'x-api-key': key, 'x-forwarded-for': xff },
          { target: strict, gatewayToken: strictGateway },
        );
      // Three different claimed clients, one real one (127.0.0.1): the per-IP window of 2 is shared.
      const results = [await call('73.9.9.1'), await call('73.9.9.2, 10.0.0.1'), await call('73.9.9.3')];
      expect(results.map((r) => r.res.status)).toEqual([200, 200, 429]);
      const ips = new Set((await eventsOf(strict, accountId)).map((e) => e.ip));
      expect([...ips]).toEqual(['127.0.0.1']);
    } finally {
      await strict.close();
    }
  });
});

// Traefik and Envoy cannot be installed here (nginx has its own end-to-end test): the examples in
// deploy/ are at least parsed, and checked for what this endpoint depends on.
describe('deploy/ examples for Traefik and Envoy', () => {
  const load = (path: string): unknown =>
    parseYaml(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8'));
  const at = (node: unknown, ...path: Array<string | number>): unknown =>
    path.reduce<unknown>((n, k) => (n as Record<string | number, unknown> | undefined)?.[k], node);

  it('Traefik: ForwardAuth at this endpoint, the token set before the check and stripped after it', () => {
    const doc = load('deploy/traefik/dynamic.yml');
    const fa = at(doc, 'http', 'middlewares', 'gatehouse', 'forwardAuth') as Record<string, unknown>;
    expect(new URL(fa.address as string).pathname).toBe(FORWARD_AUTH_PATH);
    expect(fa.trustForwardHeader).toBe(false);
    const sent = (fa.authRequestHeaders as string[]).map((h) => h.toLowerCase());
    expect(sent).toEqual(expect.arrayContaining(['authorization', 'x-api-key', 'x-gatehouse-token']));
    expect(sent).not.toContain('x-gatehouse-cost');
    expect(fa.authResponseHeaders).toEqual(
      expect.arrayContaining(['X-Gatehouse-Account', 'X-Gatehouse-Degrade']),
    );
    expect(at(doc, 'http', 'routers', 'api', 'middlewares')).toEqual([
      'gatehouse-token',
      'gatehouse',
      'gatehouse-token-strip',
    ]);
    expect(
      at(
        doc,
        'http',
        'middlewares',
        'gatehouse-token-strip',
        'headers',
        'customRequestHeaders',
        'X-Gatehouse-Token',
      ),
    ).toBe('');
  });

  it('Envoy: ext_authz over HTTP at this endpoint, with the token added and the right headers let through', () => {
    const doc = load('deploy/envoy/envoy.yaml');
    const hcm = at(doc, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config');
    const filters = at(hcm, 'http_filters') as Array<{ name: string; typed_config: unknown }>;
    expect(filters.map((f) => f.name)).toEqual([
      'envoy.filters.http.header_mutation',
      'envoy.filters.http.ext_authz',
      'envoy.filters.http.router',
    ]);
    const authz = filters[1]!.typed_config;
    const svc = at(authz, 'http_service');
    expect(at(svc, 'path_prefix')).toBe(FORWARD_AUTH_PATH);
    expect(at(authz, 'failure_mode_allow')).toBe(false);
    const names = (node: unknown) => (node as Array<Record<string, string>>).map((p) => p.exact ?? p.prefix);
    expect(names(at(svc, 'authorization_request', 'allowed_headers', 'patterns'))).toEqual(
      expect.arrayContaining([
        'authorization',
        'x-api-key',
        'x-device-fingerprint',
        'x-forwarded-for',
        'user-agent',
      ]),
    );
    expect(names(at(svc, 'authorization_request', 'allowed_headers', 'patterns'))).not.toContain(
      'x-gatehouse-cost',
    );
    expect(at(svc, 'authorization_request', 'headers_to_add', 0, 'key')).toBe('x-gatehouse-token');
    expect(names(at(svc, 'authorization_response', 'allowed_upstream_headers', 'patterns'))).toEqual(
      expect.arrayContaining(['x-gatehouse-account', 'x-gatehouse-degrade']),
    );
    expect(names(at(svc, 'authorization_response', 'allowed_client_headers', 'patterns'))).toEqual(
      expect.arrayContaining(['retry-after', 'ratelimit', 'x-gatehouse-']),
    );
    const cluster = at(svc, 'server_uri', 'cluster');
    const clusters = at(doc, 'static_resources', 'clusters') as Array<{ name: string }>;
    expect(clusters.map((c) => c.name)).toContain(cluster);
    expect(at(hcm, 'use_remote_address')).toBe(true);
  });
});
