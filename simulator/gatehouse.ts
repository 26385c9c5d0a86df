import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { dropDatabase, ensureDatabase } from '../src/db/migrate.ts';
import { deleteMatching } from '../src/redis/client.ts';
import type { Hooks } from './hooks.ts';

// A Gatehouse of the simulator's own: `tsx src/main.ts all` as a child process, on a fresh
// database and Redis prefix, with its captcha and notifier pointed at the simulator's hooks. The
// simulator talks to it over HTTP only, exactly as it would to one started by someone else.

export interface Instance {
  url: string;
  adminToken: string;
  /** Stops the process and, unless kept, drops its database and Redis keys. */
  stop(): Promise<void>;
  /** Where its data lives, for `--keep`. */
  readonly databaseUrl: string;
  readonly redisPrefix: string;
}

export interface InstanceOptions {
  seed: number;
  hooks: Hooks;
  /** PostgreSQL server URL without a database, e.g. postgresql://postgres@127.0.0.1:5432 */
  databaseServer?: string;
  redisUrl?: string;
  policyPath?: string;
  keep?: boolean;
  /** Lines the instance writes on stderr (its warnings and errors). */
  onLog?: (line: string) => void;
  startTimeoutMs?: number;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// Settings of the parent's environment that would otherwise leak into the instance.
const GATEHOUSE_SETTINGS =
  /^(DATABASE_URL|REDIS_|HOST$|PORT$|GATEHOUSE_|LOG_LEVEL$|POLICY_PATH$|BODY_LIMIT|SHUTDOWN_|CONNECT_|WORKER_|METRICS_|CAPTCHA_|NOTIFIER$|NOTIFY_|SMTP_|ASN_MMDB|ENFORCE_|TRUSTED_PROXIES$|EMAIL_MX)/;

export async function startInstance(opts: InstanceOptions): Promise<Instance> {
  const server = (
    opts.databaseServer ??
    process.env.SIM_DATABASE_SERVER ??
    'postgresql://postgres@127.0.0.1:5432'
  ).replace(/\/+$/, '');
  const redisUrl = opts.redisUrl ?? process.env.SIM_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const suffix = randomBytes(4).toString('hex');
  const databaseUrl = `${server}/gatehouse_sim_${opts.seed}_${suffix}`;
  const redisPrefix = `sim${suffix}`;
  const adminToken = `sim-admin-${randomBytes(18).toString('hex')}`;
  await ensureDatabase(databaseUrl);

  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!GATEHOUSE_SETTINGS.test(k)) env[k] = v;
  Object.assign(env, {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: redisPrefix,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    GATEHOUSE_ADMIN_TOKEN: adminToken,
    GATEHOUSE_PEPPER: randomBytes(24).toString('hex'),
    CAPTCHA_PROVIDER: 'hcaptcha',
    CAPTCHA_SECRET: '0x0000000000000000000000000000000000000000',
    CAPTCHA_VERIFY_URL: opts.hooks.siteverifyUrl,
    NOTIFIER: 'webhook',
    NOTIFY_WEBHOOK_URL: opts.hooks.webhookUrl,
    NOTIFY_WEBHOOK_SECRET: opts.hooks.webhookSecret,
    // History arrives in batches of thousands of events; the default 1 MB would cut them small.
    BODY_LIMIT_BYTES: String(16 * 1024 * 1024),
    WORKER_CONCURRENCY: '8',
    ...(opts.policyPath ? { POLICY_PATH: opts.policyPath } : {}),
  });

  const child = spawn(`${ROOT}node_modules/.bin/tsx`, ['src/main.ts', 'all'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderrTail: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (!line.trim()) continue;
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      opts.onLog?.(line);
    }
  });

  let url: string;
  try {
    url = await waitForReady(child, opts.startTimeoutMs ?? 90_000, stderrTail);
  } catch (err) {
    await kill(child);
    if (!opts.keep) await cleanUp(databaseUrl, redisUrl, redisPrefix);
    throw err;
  }

  return {
    url,
    adminToken,
    databaseUrl,
    redisPrefix,
    async stop() {
      await kill(child);
      if (!opts.keep) await cleanUp(databaseUrl, redisUrl, redisPrefix);
    },
  };
}

function waitForReady(child: ChildProcess, timeoutMs: number, stderrTail: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(
      () => reject(new Error(`Gatehouse did not start within ${timeoutMs} ms: ${stderrTail.join(' | ')}`)),
      timeoutMs,
    );
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const ready = /ready at (http:\/\/\S+)/.exec(buffer);
      if (ready?.[1]) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
      if (buffer.length > 100_000) buffer = buffer.slice(-10_000);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Gatehouse exited with code ${code} before it was ready: ${stderrTail.join(' | ')}`));
    });
  });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function cleanUp(databaseUrl: string, redisUrl: string, prefix: string): Promise<void> {
  await dropDatabase(databaseUrl).catch(() => undefined);
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    await redis.connect();
    await deleteMatching(redis, [`{${prefix}:*`, `${prefix}:*`]);
  } catch {
    // A Redis that went away takes its keys with it.
  } finally {
    redis.disconnect();
  }
}
