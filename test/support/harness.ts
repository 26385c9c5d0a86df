import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { type Config, loadConfig } from '../../src/config.ts';
import { type Context, createContext } from '../../src/context.ts';
import { applyMigrations, dropDatabase, ensureDatabase } from '../../src/db/migrate.ts';
import { createHttpServer } from '../../src/http/server.ts';
import { createLogger } from '../../src/logger.ts';
import { loadPolicy, type Policy } from '../../src/policy/policy.ts';
import { deleteMatching } from '../../src/redis/client.ts';
import { startWorkers } from '../../workers/index.ts';

export interface TestApp {
  url: string;
  ctx: Context;
  adminToken: string;
  /** Every log line this instance wrote, raw. */
  logs: string[];
  request(method: string, path: string, opts?: RequestOptions): Promise<TestResponse>;
  /** A service token with exactly these scopes. */
  tokenWith(...scopes: Array<'signup' | 'keys' | 'enforce' | 'ingest' | 'admin'>): Promise<string>;
  close(): Promise<void>;
}

export interface RequestOptions {
  token?: string | null;
  body?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/** A unique Redis prefix per app, so tests never see each other's keys. */
export const testPrefix = () => `t${randomBytes(5).toString('hex')}`;

export interface TestAppOptions {
  env?: Record<string, string>;
  policy?: Policy;
  prefix?: string;
  workers?: boolean;
  /**
   * A database of its own (created, migrated and dropped with the app), for tests whose analysis
   * runs read and rewrite the whole link graph and must not see other files' accounts.
   */
  ownDatabase?: boolean;
  /** Keep the policy's analysis schedule (off by default: a scheduled run rewrites clusters). */
  scheduledAnalysis?: boolean;
}

export async function startTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const adminToken = `admin-${randomBytes(16).toString('hex')}`;
  const prefix = opts.prefix ?? testPrefix();
  let databaseUrl = inject('databaseUrl');
  if (opts.ownDatabase) {
    databaseUrl = `${databaseUrl.replace(/\/[^/]+$/, '')}/gatehouse_own_${randomBytes(5).toString('hex')}`;
    await ensureDatabase(databaseUrl);
    await applyMigrations(databaseUrl);
  }
  const basePolicy = opts.policy ?? loadPolicy(new URL('../../config/policy.yaml', import.meta.url).pathname);
  const policy: Policy = opts.scheduledAnalysis
    ? basePolicy
    : { ...basePolicy, detection: { ...basePolicy.detection, schedule: 0 } };
  const config: Config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL: inject('redisUrl'),
    REDIS_PREFIX: prefix,
    GATEHOUSE_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'info',
    PORT: '0',
    HOST: '127.0.0.1',
    METRICS_ENABLED: 'true',
    CAPTCHA_PROVIDER: 'none',
    // A full suite keeps both cores busy: connecting may be slow, and that is not what tests test.
    CONNECT_TIMEOUT_MS: '20000',
    // Likewise the enforcement budgets; the tests of timeouts set production values themselves.
    ENFORCE_REDIS_TIMEOUT_MS: '2000',
    ENFORCE_DEADLINE_MS: '5000',
    GATEHOUSE_PEPPER: 'test-pepper-test-pepper-test-pepper-0001',
    ...opts.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const ctx = await createContext(config, { logger: createLogger(config.LOG_LEVEL, sink), policy });
  const workers = opts.workers ? await startWorkers(ctx) : null;
  const server = createHttpServer(ctx);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const request = async (method: string, path: string, o: RequestOptions = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...o.headers };
    const token = o.token === undefined ? adminToken : o.token;
    if (token !== null && headers.authorization === undefined) headers.authorization = `Bearer ${token}`;
    let body: string | Buffer | undefined;
    if (o.rawBody !== undefined) body = o.rawBody;
    else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    if (/json/.test(res.headers.get('content-type') ?? '') && text) parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: parsed, text };
  };

  return {
    url,
    ctx,
    adminToken,
    logs,
    request,
    async tokenWith(...scopes) {
      const res = await request('POST', '/v1/tokens', { body: { name: `test ${scopes.join(',')}`, scopes } });
      if (res.status !== 201) throw new Error(`token creation failed: ${res.status} ${res.text}`);
      return (res.body as { token: string }).token;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await workers?.close();
      await cleanRedisPrefix(ctx.config.REDIS_URL, prefix);
      await ctx.close();
      if (opts.ownDatabase) await dropDatabase(databaseUrl);
    },
  };
}

/** Deletes every key a test prefix created (counters, queues, caches). */
export async function cleanRedisPrefix(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  try {
    await deleteMatching(redis, [`{${prefix}:*`, `${prefix}:*`]);
  } finally {
    redis.disconnect();
  }
}
