import type { Redis } from 'ioredis';
import { type AuditLog, createAuditLog } from './audit/audit.ts';
import { type Config, redactUrl } from './config.ts';
import { createDb, type Db } from './db/client.ts';
import { createMetrics, type HttpMetrics } from './http/metrics.ts';
import { createLogger, type Logger } from './logger.ts';
import { loadPolicy, type Policy } from './policy/policy.ts';
import { createQueues, type Queues } from './queues/queues.ts';
import { connectRedis, createRedis } from './redis/client.ts';
import { createKeys, type RedisKeys } from './redis/keys.ts';
import { createTokenService, type TokenService } from './tokens/service.ts';

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

export interface Context {
  config: Config;
  policy: Policy;
  logger: Logger;
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  queues: Queues;
  metrics: HttpMetrics;
  audit: AuditLog;
  tokens: TokenService;
  /** Is each store answering now? For /readyz. */
  readiness(): Promise<{ postgres: boolean; redis: boolean }>;
  close(): Promise<void>;
}

const reasonOf = (err: unknown): string => {
  const e = err as { code?: string; message?: string; errors?: Array<{ code?: string }> };
  return e.code ?? e.errors?.[0]?.code ?? e.message?.split('\n')[0] ?? 'unknown error';
};

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The composition root: every dependency is built here once, from the config. */
export async function createContext(
  config: Config,
  opts: { logger?: Logger; policy?: Policy } = {},
): Promise<Context> {
  const logger = opts.logger ?? createLogger(config.LOG_LEVEL);
  const policy = opts.policy ?? loadPolicy(config.POLICY_PATH);
  const timeout = config.CONNECT_TIMEOUT_MS;

  const db = createDb(config.DATABASE_URL, timeout);
  try {
    await withTimeout(db.$queryRaw`SELECT 1`, timeout);
  } catch (err) {
    await db.$disconnect().catch(() => undefined);
    throw new DependencyError('PostgreSQL', redactUrl(config.DATABASE_URL), reasonOf(err));
  }

  const redis = createRedis({ url: config.REDIS_URL, connectTimeoutMs: timeout });
  const bullConnection = createRedis({ url: config.REDIS_URL, connectTimeoutMs: timeout });
  // Until start-up succeeded, connection errors are reported once below rather than logged in a loop.
  const quiet = () => undefined;
  redis.on('error', quiet);
  bullConnection.on('error', quiet);
  try {
    await connectRedis(redis, timeout);
    await connectRedis(bullConnection, timeout);
  } catch (err) {
    redis.disconnect();
    bullConnection.disconnect();
    await db.$disconnect().catch(() => undefined);
    throw new DependencyError('Redis', redactUrl(config.REDIS_URL), reasonOf(err));
  }
  let lastRedisError = 0;
  const onRedisError = (err: Error) => {
    const now = Date.now();
    if (now - lastRedisError > 10_000)
      logger.warn({ err: { message: err.message } }, 'Redis connection error');
    lastRedisError = now;
  };
  redis.off('error', quiet).on('error', onRedisError);
  bullConnection.off('error', quiet).on('error', onRedisError);

  const keys = createKeys(config.REDIS_PREFIX);
  const queues = createQueues(bullConnection, keys.bullPrefix);
  const audit = createAuditLog(db);
  const tokens = createTokenService({ db, audit, adminToken: config.GATEHOUSE_ADMIN_TOKEN });
  const metrics = createMetrics({
    defaultMetrics: config.METRICS_ENABLED,
    queueDepths: () => queues.depths(),
  });

  return {
    config,
    policy,
    logger,
    db,
    redis,
    keys,
    queues,
    metrics,
    audit,
    tokens,
    async readiness() {
      const [postgres, redisOk] = await Promise.all([
        withTimeout(db.$queryRaw`SELECT 1`, 1_000).then(
          () => true,
          () => false,
        ),
        withTimeout(redis.ping(), 1_000).then(
          (r) => r === 'PONG',
          () => false,
        ),
      ]);
      return { postgres, redis: redisOk };
    },
    async close() {
      await queues.close().catch(() => undefined);
      await Promise.all([
        redis.quit().catch(() => redis.disconnect()),
        bullConnection.quit().catch(() => bullConnection.disconnect()),
      ]);
      await db.$disconnect();
    },
  };
}
