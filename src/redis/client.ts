import { Redis, type RedisOptions } from 'ioredis';

export interface RedisClientOptions {
  url: string;
  connectTimeoutMs: number;
  /** Workers (BullMQ) block on commands and must never give up on a request. */
  forWorkers?: boolean;
}

export function createRedis(opts: RedisClientOptions): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs,
    maxRetriesPerRequest: opts.forWorkers ? null : 2,
    enableAutoPipelining: !opts.forWorkers,
    // Reconnect with a capped back-off; a dropped connection must heal without a restart.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
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
