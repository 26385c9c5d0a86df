import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { createAccount, createKey } from '../support/accounts.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

// deploy/nginx/gatehouse.conf in a real nginx, between a real client and a real upstream: the
// status mapping (429 and 503 folded into 403 and back), the headers on both sides and the
// client-address chain only show their worth end to end.
//
// Addresses: clients connect from their own loopback addresses (127.0.0.2 and up, which Linux
// routes without setup), nginx reaches Gatehouse from 127.0.0.1, and Gatehouse trusts 127.0.0.1
// only. With the default TRUSTED_PROXIES (all of 127.0.0.0/8) a client on loopback would itself be
// a trusted proxy whose X-Forwarded-For is believed, and nothing would be proved.

const NGINX = findNginx();
const MISSING = `nginx was not found (looked in /usr/sbin, /usr/local/sbin and PATH). .ci/run installs it (apt-get install -y nginx-light); on a workstation install nginx-light or nginx-full`;
// In CI a missing nginx is a failure, counted as one: a skip there would hide an untested config.
// On a workstation without nginx the file is skipped, saying why.
const skip = NGINX === null;
if (skip && !process.env.CI) console.warn(`nginx.e2e.test.ts skipped: ${MISSING}`);

const policy = parsePolicy(`
version: 1
enforcement:
  defaultTier: free
  endpointCosts: { /v1/chat: 5 }
  throttle: { nearLimitRatio: 0.9, maxDelayMs: 200, flaggedDelayMs: 150, flaggedLimitFactor: 0.5 }
  tiers:
    free:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 30, buckets: 12 }]
        ip: [{ window: 1m, limit: 15, buckets: 12 }]
    tight:
      maxKeys: 3
      limits:
        key: [{ window: 1m, limit: 2, buckets: 12 }]
`);

function findNginx(): string | null {
  const dirs = [
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/nginx/sbin',
    ...(process.env.PATH ?? '').split(delimiter),
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      accessSync(join(dir, 'nginx'), constants.X_OK);
      return join(dir, 'nginx');
    } catch {
      // not here
    }
  }
  return null;
}

interface Echo {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

let app: TestApp;
let keysToken: string;
let upstream: Server;
let nginx: ChildProcess | null = null;
let nginxPort = 0;
let dir = '';
let nginxOutput = '';

/** Writes the shipped config with this run's addresses and token, inside a minimal nginx.conf. */
function render(upstreamPort: number, gatehousePort: number, listenPort: number, token: string): string {
  let site = readFileSync(new URL('../../deploy/nginx/gatehouse.conf', import.meta.url), 'utf8');
  const substitute = (from: string, to: string) => {
    if (!site.includes(from)) {
      throw new Error(
        `deploy/nginx/gatehouse.conf no longer contains "${from}": update this test's render()`,
      );
    }
    site = site.replace(from, to);
  };
  substitute('server 127.0.0.1:3000;', `server 127.0.0.1:${upstreamPort};`);
  substitute('server 127.0.0.1:8080;', `server 127.0.0.1:${gatehousePort};`);
  substitute('listen 80;', `listen 127.0.0.1:${listenPort};`);
  substitute('ght_replace_with_the_gateway_token', token);
  writeFileSync(join(dir, 'gatehouse.conf'), site);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      'worker_processes 1;',
      'events { worker_connections 256; }',
      'http {',
      `  access_log ${join(dir, 'access.log')};`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (t) => `  ${t}_temp_path ${join(dir, `${t}_temp`)};`,
      ),
      `  include ${join(dir, 'gatehouse.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  return conf;
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}:\n${nginxOutput}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not accept on 127.0.0.1:${port} within the deadline:\n${nginxOutput}`);
}

async function startNginx(conf: string): Promise<ChildProcess> {
  const child = spawn(
    NGINX!,
    ['-c', conf, '-p', `${dir}/`, '-e', join(dir, 'error.log'), '-g', 'daemon off;'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.on('data', (c: Buffer) => {
    nginxOutput += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    nginxOutput += c.toString();
  });
  return child;
}

/** One call at nginx from the given loopback address, on a fresh connection. */
function call(
  from: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: nginxPort,
        localAddress: from,
        agent: false,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/v1/models',
        headers: opts.headers ?? {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const echoed = (r: Reply): Echo => JSON.parse(r.text) as Echo;

let hostSeq = 10;
/** A loopback address of its own per test, so the per-IP window never ties tests together. */
const freshClient = () => `127.0.0.${hostSeq++}`;

async function keyFor(opts: Parameters<typeof createAccount>[1] = {}) {
  const accountId = await createAccount(app, opts);
  const { key } = await createKey(app, accountId, keysToken);
  return { accountId, key };
}

if (skip && process.env.CI) {
  describe('nginx auth_request end to end', () => {
    it('needs nginx installed', () => {
      throw new Error(MISSING);
    });
  });
}

describe.skipIf(skip)(
  `nginx auth_request with deploy/nginx/gatehouse.conf${skip ? ` (skipped: ${MISSING})` : ''}`,
  () => {
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'gatehouse-nginx-'));
      upstream = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = JSON.stringify({
            method: req.method ?? '',
            url: req.url ?? '',
            headers: req.headers,
            body: Buffer.concat(chunks).toString(),
          } satisfies Echo);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(body);
        });
      });
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
      app = await startTestApp({
        policy,
        env: {
          TRUSTED_PROXIES: '127.0.0.1/32',
          ENFORCE_REDIS_TIMEOUT_MS: '2000',
          ENFORCE_DEADLINE_MS: '4000',
        },
      });
      keysToken = await app.tokenWith('keys');
      const gateway = await app.tokenWith('enforce');
      const gatehousePort = Number(new URL(app.url).port);
      const upstreamPort = (upstream.address() as AddressInfo).port;

      // A free port can be taken between probing and nginx binding it: try a few.
      for (let attempt = 0; attempt < 3 && nginx === null; attempt++) {
        nginxPort = await freePort();
        const conf = render(upstreamPort, gatehousePort, nginxPort, gateway);
        const child = await startNginx(conf);
        try {
          await waitForPort(nginxPort, child, Date.now() + 5_000);
          nginx = child;
        } catch (err) {
          child.kill('SIGTERM');
          if (attempt === 2 || !/Address already in use/.test(nginxOutput)) throw err;
        }
      }
    });

    afterAll(async () => {
      const child = nginx;
      if (child && child.exitCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        // SIGTERM is nginx's fast shutdown: the master stops its workers before it exits.
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      upstream?.closeAllConnections();
      await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
      await app?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('lets a valid key through to the upstream, which learns the account; client-sent Gatehouse headers never reach it', async () => {
      const { key, accountId } = await keyFor();
      const from = freshClient();
      const res = await call(from, {
        headers: {
          authorization: `Bearer ${key}`,
          'x-gatehouse-account': 'acc_forged',
          'x-gatehouse-degrade': '1',
        },
      });
      expect(res.status, nginxOutput).toBe(200);
      const seen = echoed(res);
      expect(seen.url).toBe('/v1/models');
      expect(seen.headers['x-gatehouse-account']).toBe(accountId);
      expect(seen.headers['x-gatehouse-degrade']).toBeUndefined();
      expect(seen.headers.authorization).toBe(`Bearer ${key}`);
      expect(seen.headers['x-gatehouse-token']).toBeUndefined();
      expect(res.headers['ratelimit-policy']).toContain('"key:1m";q=30;w=60');

      // A POST keeps its body for the upstream; the check itself went out as GET.
      const post = await call(from, {
        method: 'POST',
        path: '/v1/embeddings',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: '{"input":"hello"}',
      });
      expect(post.status).toBe(200);
      expect(echoed(post)).toMatchObject({
        method: 'POST',
        url: '/v1/embeddings',
        body: '{"input":"hello"}',
      });
    });

    it('answers 401 with WWW-Authenticate for an invalid or missing key', async () => {
      const from = freshClient();
      const invalid = await call(from, { headers: { authorization: 'Bearer gh_live_thisisnotarealkey' } });
      expect(invalid.status).toBe(401);
      expect(invalid.headers['www-authenticate']).toMatch(/error="invalid_token"/);
      const missing = await call(from);
      expect(missing.status).toBe(401);
    });

    it('answers 429 with Retry-After past a limit (403 + X-Gatehouse-Status turned back by error_page)', async () => {
      const { key } = await keyFor({ tier: 'tight' });
      const from = freshClient();
      for (let i = 0; i < 2; i++)
        expect((await call(from, { headers: { 'x-api-key': key } })).status).toBe(200);
      const over = await call(from, { headers: { 'x-api-key': key } });
      expect(over.status).toBe(429);
      expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(over.headers['x-gatehouse-reason']).toBe('rate_limited');
      expect(over.headers.ratelimit).toMatch(/^"key:1m";r=0;t=\d+$/);
      expect(JSON.parse(over.text)).toEqual({ error: 'rate_limited' });
    });

    it('answers 403 for a suspended account, without Retry-After', async () => {
      const { key, accountId } = await keyFor();
      await app.ctx.db.account.update({ where: { id: accountId }, data: { status: 'suspended' } });
      await app.ctx.apiKeys.invalidateAccount(accountId);
      await new Promise((r) => setTimeout(r, 50));
      const res = await call(freshClient(), { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(403);
      expect(res.headers['retry-after']).toBeUndefined();
      expect(JSON.parse(res.text)).toEqual({ error: 'account_suspended' });
    });

    it('holds a flagged account for its delay and tells the upstream to degrade', async () => {
      const { key, accountId } = await keyFor();
      await app.ctx.db.account.update({ where: { id: accountId }, data: { status: 'throttled' } });
      await app.ctx.apiKeys.invalidateAccount(accountId);
      await new Promise((r) => setTimeout(r, 50));
      const started = performance.now();
      const res = await call(freshClient(), { headers: { 'x-api-key': key } });
      const elapsed = performance.now() - started;
      expect(res.status).toBe(200);
      const seen = echoed(res);
      expect(seen.headers['x-gatehouse-account']).toBe(accountId);
      expect(seen.headers['x-gatehouse-degrade']).toBe('1');
      expect(Number(seen.headers['x-gatehouse-delay-ms'])).toBeGreaterThanOrEqual(150);
      expect(elapsed).toBeGreaterThanOrEqual(149);
    });

    it('counts the real client, not what it writes in X-Forwarded-For, and prices by the real path', async () => {
      const spoofer = freshClient();
      const calls: Reply[] = [];
      // Different keys: only the per-IP window (15 a minute, three chat calls at 5) is shared.
      const keys = await Promise.all([keyFor(), keyFor(), keyFor(), keyFor()]);
      for (const [i, { key }] of keys.entries()) {
        calls.push(
          await call(spoofer, {
            path: '/v1/chat/completions',
            headers: {
              'x-api-key': key,
              'x-forwarded-for': `6.6.6.${i + 1}, 73.1.2.${i + 1}`,
              // Also forged: a free call and a cheaper path. The config overwrites both.
              'x-gatehouse-cost': '0',
              'x-forwarded-uri': '/v1/models',
            },
          }),
        );
      }
      expect(calls.map((c) => c.status)).toEqual([200, 200, 200, 429]);

      // Another client is unaffected, even naming the exhausted one in its own header.
      const other = await call(freshClient(), {
        headers: { 'x-api-key': keys[0]!.key, 'x-forwarded-for': spoofer },
      });
      expect(other.status).toBe(200);

      const entries = await app.ctx.redis.xrevrange(app.ctx.keys.usageStream(), '+', '-', 'COUNT', 500);
      const events = entries
        .map(([, f]) => new Map(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i]!, f[2 * i + 1]!])))
        .filter((e) => e.get('a') === keys[1]!.accountId);
      expect(events).toHaveLength(1);
      expect(events[0]!.get('ip')).toBe(spoofer);
      expect(events[0]!.get('c')).toBe('5');
      expect(events[0]!.get('ep')).toBe('/v1/chat/completions');
    });

    it("has nginx's auth subrequests read straight from the socket, none handed to node:http", async () => {
      const counts = async () => {
        const text = (await app.request('GET', '/metrics', { token: null })).text;
        const read = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
        return {
          wire: read(/^gatehouse_wire_requests_total (\d+)/m),
          form: read(/^gatehouse_wire_handovers_total\{reason="form"\} (\d+)/m),
          partial: read(/^gatehouse_wire_handovers_total\{reason="partial"\} (\d+)/m),
        };
      };
      const before = await counts();
      const { key } = await keyFor();
      for (let i = 0; i < 3; i++) {
        expect((await call(freshClient(), { headers: { 'x-api-key': key } })).status).toBe(200);
      }
      const after = await counts();
      expect(after.wire - before.wire).toBe(3);
      expect(after).toMatchObject({ form: before.form, partial: before.partial });
    });
  },
);
