import { createServer as createHttp, type Server } from 'node:http';
import { createServer as createTcp, type Socket, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnforceRoutes, MAX_BODY, nodeHandler } from '../../src/enforce/http.ts';
import { createEnforceService, type EnforceService } from '../../src/enforce/service.ts';
import { attachWire } from '../../src/http/wire.ts';
import { createSlidingWindowLimiter } from '../../src/limits/limiter.ts';
import { parsePolicy } from '../../src/policy/policy.ts';
import { RespClient } from '../../src/redis/resp-client.ts';
import { createHostingClassifier } from '../../src/signals/hosting.ts';
import { createAccount, createKey } from '../support/accounts.ts';
import { startTestApp, type TestApp, testPrefix } from '../support/harness.ts';

// Enforcement must answer even when its stores do not: by the fail mode, within its budget.
// And a revocation or suspension on one instance must reach every other instance within a second.

let a: TestApp;
let b: TestApp;
let keysToken: string;
let gatewayA: string;
beforeAll(async () => {
  const prefix = testPrefix();
  // Two API instances of one deployment: same database, same Redis prefix (so the same channel).
  a = await startTestApp({ prefix });
  b = await startTestApp({ prefix });
  keysToken = await a.tokenWith('keys');
  gatewayA = await a.tokenWith('enforce');
});
afterAll(async () => {
  await b.close();
  await a.close();
});

const decisionOf = async (app: TestApp, token: string, key: string) => {
  const res = await app.request('POST', '/v1/enforce', { token, body: { key, ip: '73.50.1.1' } });
  return res.body as { decision: string; reason?: string };
};

async function until(check: () => Promise<boolean>, ms: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not within ${ms} ms`);
}

describe('two instances', () => {
  it('a key revoked on one instance is refused by the other within one second', async () => {
    const accountId = await createAccount(a);
    const { key, id } = await createKey(a, accountId, keysToken);
    // The same token works on both instances: they share PostgreSQL.
    expect((await decisionOf(b, gatewayA, key)).decision).toBe('allow');
    const revoked = await a.request('DELETE', `/v1/keys/${id}`, { token: keysToken });
    expect(revoked.status).toBe(204);
    const ms = await until(async () => (await decisionOf(b, gatewayA, key)).reason === 'invalid_key', 1_000);
    expect(ms).toBeLessThan(1_000);
  });

  it('a service token revoked on one instance is refused by the other within one second', async () => {
    const created = await a.request('POST', '/v1/tokens', { body: { name: 'gateway', scopes: ['enforce'] } });
    const { id, token } = created.body as { id: string; token: string };
    const accountId = await createAccount(a);
    const { key } = await createKey(a, accountId, keysToken);
    // b has the token cached (for up to 5 s) before a revokes it.
    expect((await decisionOf(b, token, key)).decision).toBe('allow');
    expect((await a.request('DELETE', `/v1/tokens/${id}`)).status).toBe(204);
    const ms = await until(
      async () =>
        (await b.request('POST', '/v1/enforce', { token, body: { key, ip: '73.50.1.1' } })).status === 401,
      1_000,
    );
    expect(ms).toBeLessThan(1_000);
  });

  it('an account suspended through one instance is refused by the other within one second', async () => {
    const accountId = await createAccount(a);
    const { key } = await createKey(a, accountId, keysToken);
    expect((await decisionOf(b, gatewayA, key)).decision).toBe('allow');
    await a.ctx.db.account.update({ where: { id: accountId }, data: { status: 'suspended' } });
    await a.ctx.apiKeys.invalidateAccount(accountId);
    await until(async () => (await decisionOf(b, gatewayA, key)).reason === 'account_suspended', 1_000);
  });
});

describe('when a dependency does not answer', () => {
  let blackhole: TcpServer;
  let stalling: TcpServer;
  const sockets: Socket[] = [];
  let port = 0;
  let stallingPort = 0;
  const listen = async (server: TcpServer) => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as { port: number }).port;
  };
  beforeAll(async () => {
    // Accepts connections and never says a word: a Redis that hangs.
    blackhole = createTcp((socket) => sockets.push(socket));
    port = await listen(blackhole);
    // Answers the handshake's PING, then nothing: a Redis that stops answering mid-way.
    stalling = createTcp((socket) => {
      sockets.push(socket);
      socket.once('data', () => socket.write('+PONG\r\n'));
    });
    stallingPort = await listen(stalling);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => blackhole.close(() => resolve()));
    await new Promise<void>((resolve) => stalling.close(() => resolve()));
  });

  async function serviceOnDeadRedis(failMode: 'open' | 'closed', redisPort = port) {
    const accountId = await createAccount(a);
    const { key } = await createKey(a, accountId, keysToken);
    // The client enforcement uses in production, with its production budget.
    const redis = new RespClient({
      url: `redis://127.0.0.1:${redisPort}`,
      connectTimeoutMs: 200,
      commandTimeoutMs: 50,
    });
    await redis.connect().catch(() => undefined);
    const policy = parsePolicy(`version: 1\nenforcement:\n  failMode: ${failMode}\n`);
    const service = createEnforceService({
      resolveKey: a.ctx.apiKeys.lookup,
      rules: a.ctx.rules,
      limiter: createSlidingWindowLimiter(redis),
      redis,
      keys: a.ctx.keys,
      asn: a.ctx.asn,
      hosting: createHostingClassifier(),
      policy: () => policy,
      emergencyFactor: () => 1,
      logger: a.ctx.logger,
    });
    return { service, key, close: () => redis.disconnect() };
  }

  it('fails closed by default: limiter_unavailable, at once', async () => {
    const { service, key, close } = await serviceOnDeadRedis('closed');
    try {
      const started = Date.now();
      const outcome = await service.decide({ key, ip: '73.50.2.2' });
      expect(outcome).toMatchObject({ decision: 'deny', reason: 'limiter_unavailable', retryAfterMs: 1000 });
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      close();
    }
  });

  it('fails open when the policy says so: allow, counting nothing', async () => {
    const { service, key, close } = await serviceOnDeadRedis('open');
    try {
      const outcome = await service.decide({ key, ip: '73.50.2.3' });
      expect(outcome).toMatchObject({ decision: 'allow', limits: [] });
    } finally {
      close();
    }
  });

  it('answers by the fail mode within the command budget when Redis stops answering', async () => {
    const { service, key, close } = await serviceOnDeadRedis('closed', stallingPort);
    try {
      const started = Date.now();
      const outcome = await service.decide({ key, ip: '73.50.2.4' });
      expect(outcome).toMatchObject({ decision: 'deny', reason: 'limiter_unavailable' });
      // 50 ms budget, swept every 13 ms: well under the 500 ms deadline of the HTTP layer.
      expect(Date.now() - started).toBeGreaterThanOrEqual(45);
      expect(Date.now() - started).toBeLessThan(400);
    } finally {
      close();
    }
  });

  async function serveWithDeadline(
    enforce: EnforceService,
    failMode: 'open' | 'closed',
    wire = false,
  ): Promise<{ url: string; server: Server }> {
    const routes = createEnforceRoutes({
      enforce,
      tokens: a.ctx.tokens,
      metrics: null,
      logger: a.ctx.logger,
      trustedProxies: [],
      deadlineMs: 100,
      failMode: () => failMode,
    });
    const handler = nodeHandler(routes);
    const server = createHttp((req, res) => {
      if (!handler(req, res)) res.writeHead(404).end();
    });
    if (wire) {
      attachWire(server, {
        accepts: routes.accepts,
        maxBody: MAX_BODY,
        answer: (request) => routes.answer(request) ?? Promise.reject(new Error('not an enforcement route')),
      });
    }
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
  }

  it.each([
    ['node:http', false],
    ['the socket', true],
  ])(
    'answers 500 problem+json, logged, to a decision with a header value that cannot be sent (%s)',
    async (_name, wire) => {
      const broken: EnforceService = {
        decide: async (input) => ({
          decision: 'allow',
          accountId: input.key,
          limits: [],
          headers: { RateLimit: 'a\r\nSet-Cookie: x=1' },
        }),
        usage: async () => [],
      };
      const { url, server } = await serveWithDeadline(broken, 'closed', wire);
      try {
        const logged = a.logs.length;
        const res = await fetch(`${url}/v1/enforce`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gatewayA}`, 'content-type': 'application/json' },
          body: JSON.stringify({ key: 'gh_live_x', ip: '73.50.3.4' }),
        });
        expect(res.status).toBe(500);
        expect(res.headers.get('set-cookie')).toBeNull();
        expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(await res.json()).toMatchObject({ code: 'internal_error' });
        expect(a.logs.slice(logged).join('')).toContain('cannot be sent');
      } finally {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  );

  it('answers decisions behind a hanging one at once, and the hanging one at its deadline', async () => {
    // One key's lookup never ends; the others answer. Requests wait for the deadline in arrival
    // order, so the hanging one stays at the front of the queue while later ones come and go.
    const mixed: EnforceService = {
      decide: (input) =>
        input.key === 'gh_live_stuck'
          ? new Promise(() => undefined)
          : Promise.resolve({ decision: 'allow', accountId: input.key, limits: [], headers: {} }),
      usage: async () => [],
    };
    const { url, server } = await serveWithDeadline(mixed, 'closed');
    const ask = async (key: string) => {
      const started = Date.now();
      const res = await fetch(`${url}/v1/enforce`, {
        method: 'POST',
        headers: { authorization: `Bearer ${gatewayA}`, 'content-type': 'application/json' },
        body: JSON.stringify({ key, ip: '73.50.3.3' }),
      });
      return { body: (await res.json()) as Record<string, unknown>, ms: Date.now() - started };
    };
    try {
      const stuck = ask('gh_live_stuck');
      await new Promise((r) => setTimeout(r, 10));
      const quick = await Promise.all(Array.from({ length: 20 }, (_, i) => ask(`gh_live_${i}`)));
      for (const [i, answer] of quick.entries()) {
        // Past the deadline these would have been answered by the fail mode (deny).
        expect(answer.body).toMatchObject({ decision: 'allow', accountId: `gh_live_${i}` });
      }
      const late = await stuck;
      expect(late.body).toMatchObject({ decision: 'deny', reason: 'limiter_unavailable' });
      expect(late.ms).toBeGreaterThanOrEqual(100);
      expect(late.ms).toBeLessThan(1_000);
      // The queue is empty again: a new hanging request gets its own full deadline, not a stale one.
      const again = await ask('gh_live_stuck');
      expect(again.body).toMatchObject({ decision: 'deny', reason: 'limiter_unavailable' });
      expect(again.ms).toBeGreaterThanOrEqual(100);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('answers within its deadline by the fail mode when a decision hangs', async () => {
    // A key store that never answers (a PostgreSQL stuck on a lock, say).
    const hanging: EnforceService = { decide: () => new Promise(() => undefined), usage: async () => [] };
    for (const [mode, expected] of [
      ['closed', { decision: 'deny', reason: 'limiter_unavailable' }],
      ['open', { decision: 'allow' }],
    ] as const) {
      const { url, server } = await serveWithDeadline(hanging, mode);
      try {
        const started = Date.now();
        const res = await fetch(`${url}/v1/enforce`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gatewayA}`, 'content-type': 'application/json' },
          body: JSON.stringify({ key: 'gh_live_x', ip: '73.50.3.3' }),
        });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject(expected);
        expect(Date.now() - started).toBeLessThan(1_000);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }
  });
});
