import { Redis } from 'ioredis';
import pg from 'pg';
import { type Config, redactUrl } from './config.ts';
import { applyMigrations, ensureDatabase } from './db/migrate.ts';

// Start-up checks that run before the rest of Gatehouse is even loaded, so an unreachable store
// is reported in one line within seconds, whatever the machine is busy with.

/** A store that could not be reached at start-up, named with its (password-free) address. */
export class DependencyError extends Error {
  constructor(
    readonly dependency: 'PostgreSQL' | 'Redis',
    readonly where: string,
    readonly reason: string,
  ) {
    super(`cannot reach ${dependency} at ${where} (${reason})`);
  }
}

const reasonOf = (err: unknown): string => {
  const e = err as { code?: string; message?: string; errors?: Array<{ code?: string }> };
  if (/timeout/i.test(e.message ?? '')) return 'connection timeout';
  return e.code ?? e.errors?.[0]?.code ?? e.message?.split('\n')[0] ?? 'unknown error';
};

/** Creates the database if missing and applies pending migrations (the quick start's `npm start`). */
export async function migrate(config: Config, log: (msg: string) => void): Promise<void> {
  const where = redactUrl(config.DATABASE_URL);
  try {
    if (await ensureDatabase(config.DATABASE_URL)) log(`created database ${where}`);
    const { applied } = await applyMigrations(config.DATABASE_URL, { log });
    if (applied.length > 0) log(`applied ${applied.length} migration(s)`);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if ((e.code && /^E[A-Z]+$/.test(e.code)) || /timeout/i.test(e.message ?? '')) {
      throw new DependencyError('PostgreSQL', where, reasonOf(err));
    }
    throw err;
  }
}

export async function checkPostgres(config: Config): Promise<void> {
  const client = new pg.Client({
    connectionString: config.DATABASE_URL,
    connectionTimeoutMillis: config.CONNECT_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new DependencyError('PostgreSQL', redactUrl(config.DATABASE_URL), reasonOf(err));
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** One connection attempt, no retries: a refused port fails at once, a silent one at the timeout. */
export async function checkRedis(config: Config): Promise<void> {
  const redis = new Redis(config.REDIS_URL, {
    lazyConnect: true,
    connectTimeout: config.CONNECT_TIMEOUT_MS,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  redis.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect().then(() => redis.ping()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('connection timeout')), config.CONNECT_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    throw new DependencyError('Redis', redactUrl(config.REDIS_URL), reasonOf(err));
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
