import { Redis, type RedisOptions } from 'ioredis';

export interface RedisClientOptions {
  url: string;
  connectTimeoutMs: number;
  /** Workers (BullMQ) block on commands and must never give up on a request. */
  forWorkers?: boolean;
  /** Per-command timeout for hot paths: a slow Redis must not hang a decision. */
  commandTimeoutMs?: number;
  /** Fail commands at once while disconnected instead of queueing them (hot paths). */
  failFast?: boolean;
}

export function createRedis(opts: RedisClientOptions): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs,
    maxRetriesPerRequest: opts.forWorkers ? null : opts.failFast ? 0 : 2,
    enableAutoPipelining: !opts.forWorkers,
    // Reconnect with a capped back-off; a dropped connection must heal without a restart.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
  if (opts.commandTimeoutMs !== undefined) options.commandTimeout = opts.commandTimeoutMs;
  // The offline queue would hold commands until a reconnect; a hot path wants an error now. It is
  // switched off once connected (connectRedis), so the first connect can still queue.
  if (opts.failFast) options.enableOfflineQueue = true;
  return new Redis(opts.url, options);
}

/** Connects, or rejects within the timeout naming the reason. */
export async function connectRedis(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect().then(() => redis.ping()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
      // A refused connection is final: do not wait for the timeout while ioredis retries.
      new Promise((_, reject) => redis.once('error', reject)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * After the first connect: fail commands at once while disconnected instead of queueing them, and
 * (when given) give each command a budget.
 */
export function failFastWhenDisconnected(redis: Redis, commandTimeoutMs?: number): void {
  redis.options.enableOfflineQueue = false;
  if (commandTimeoutMs !== undefined) redis.options.commandTimeout = commandTimeoutMs;
}

/**
 * Deletes every key matching the patterns (SCAN, never KEYS, so Redis is not blocked); returns how
 * many went. For cleaning up a deployment's or a test's key prefix.
 */
export async function deleteMatching(redis: Redis, patterns: readonly string[]): Promise<number> {
  let deleted = 0;
  for (const pattern of patterns) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  }
  return deleted;
}
