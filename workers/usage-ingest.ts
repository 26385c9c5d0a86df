import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Context } from '../src/context.ts';
import { createRedis } from '../src/redis/client.ts';
import {
  decodeForIngest,
  fieldsOf,
  type IngestEntry,
  isDataError,
  pruneIngested,
  type WriteResult,
  writeBatch,
} from '../src/usage/ingest.ts';

// Drains the usage stream into PostgreSQL through one consumer group: a loop, not a queue job, since
// the stream already is the queue. Every batch is written (src/usage/ingest.ts) and only then
// acknowledged; a batch the process could not acknowledge is delivered again and the ingestion
// ledger makes that harmless. Entries are never XDELed: appends trim the stream by MAXLEN, which
// bounds its memory and, through `pruneIngested`, the ledger's size too.

export const USAGE_INGEST_GROUP = 'usage-ingest';

export interface UsageIngestorOptions {
  /** Entries per read and per transaction; by default the configured USAGE_INGEST_BATCH. */
  batchSize?: number;
  /** How long one read waits for new entries. */
  blockMs?: number;
  /** This process's name in the group; a restart under the same name resumes its own pending entries. */
  consumer?: string;
  /** Entries pending this long with another consumer are presumed orphaned and claimed. */
  claimIdleMs?: number;
  /** How often to look for orphaned entries. */
  claimEveryMs?: number;
  /** How often to prune the ledger and forget consumers long gone. */
  pruneEveryMs?: number;
  /** First back-off after a failure; doubles up to 30 s. */
  retryMs?: number;
  /** The batch writer; tests wrap it to inject faults. */
  write?: typeof writeBatch;
}

export interface UsageIngestStats {
  /** Entries counted into the hourly aggregates. */
  ingested: number;
  /** Redelivered entries that had already been counted. */
  duplicates: number;
  /** Entries of accounts that no longer exist. */
  orphaned: number;
  /** Entries that were not usage events. */
  malformed: number;
  /** Entries PostgreSQL refused on their data alone, after the rest of their batch was written. */
  rejected: number;
  /** Pending entries the stream had already trimmed away: lost before they could be read. */
  trimmed: number;
  /** Failed write attempts (each retried). */
  failures: number;
  /** Entries not yet delivered to the group (null when Redis cannot say). */
  lag: number | null;
  /** Entries delivered but not yet acknowledged. */
  pending: number | null;
}

export interface UsageIngestor {
  stats(): Promise<UsageIngestStats>;
  /** Stops reading, lets the batch in flight finish (or leaves it pending), closes the connection. */
  close(): Promise<void>;
}

const MAX_RETRY_MS = 30_000;
// A consumer name a restarted process will never use again (hostname-pid) is dropped once it has
// nothing pending and has been silent this long, so the group does not collect them forever.
const FORGET_CONSUMER_MS = 3_600_000;

type RawEntry = [id: string, fields: string[] | null];

/** The entries of a one-stream XREADGROUP reply, whichever protocol the connection speaks. */
export function streamEntries(reply: unknown): RawEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  // RESP2 answers [[key, entries]]; RESP3 (ioredis' default) answers a map, flattened to [key, entries].
  const entries: unknown = Array.isArray(reply[0]) ? reply[0][1] : reply[1];
  return Array.isArray(entries) ? (entries as RawEntry[]) : [];
}

export async function startUsageIngestor(
  // What it reads of the context, nothing more (bench:ingest runs it on these alone).
  ctx: Pick<Context, 'config' | 'db' | 'keys' | 'logger' | 'redis'>,
  opts: UsageIngestorOptions = {},
): Promise<UsageIngestor> {
  const batchSize = opts.batchSize ?? ctx.config.USAGE_INGEST_BATCH;
  const blockMs = opts.blockMs ?? 1_000;
  const consumer = opts.consumer ?? `${hostname()}-${process.pid}`;
  const claimIdleMs = opts.claimIdleMs ?? 60_000;
  const claimEveryMs = opts.claimEveryMs ?? 30_000;
  const pruneEveryMs = opts.pruneEveryMs ?? 300_000;
  const retryMs = opts.retryMs ?? 1_000;
  const write = opts.write ?? writeBatch;
  const stream = ctx.keys.usageStream();
  const log = ctx.logger.child({ component: 'usage-ingest', consumer });

  // Its own connection: a blocking read would hold up every other command on a shared one.
  const redis: Redis = createRedis({
    url: ctx.config.REDIS_URL,
    connectTimeoutMs: ctx.config.CONNECT_TIMEOUT_MS,
    forWorkers: true,
  });
  redis.on('error', (err) =>
    log.warn({ err: { message: err.message } }, 'usage ingest Redis connection error'),
  );
  const ensureGroup = async (): Promise<void> => {
    try {
      // From 0, not $: whatever gateways appended before the first worker started is counted too.
      await redis.xgroup('CREATE', stream, USAGE_INGEST_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err as Error).message.startsWith('BUSYGROUP')) throw err;
    }
  };
  try {
    await redis.connect();
    await ensureGroup();
  } catch (err) {
    redis.disconnect();
    throw err;
  }

  const counters = {
    ingested: 0,
    duplicates: 0,
    orphaned: 0,
    malformed: 0,
    rejected: 0,
    trimmed: 0,
    failures: 0,
  };
  let stopping = false;
  let writing: Promise<WriteResult> | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const read = async (id: '0' | '>'): Promise<RawEntry[]> => {
    const block = id === '>' ? ['BLOCK', blockMs] : [];
    const reply = await redis.call(
      'XREADGROUP',
      'GROUP',
      USAGE_INGEST_GROUP,
      consumer,
      'COUNT',
      batchSize,
      ...block,
      'STREAMS',
      stream,
      id,
    );
    return streamEntries(reply);
  };

  const tally = (r: WriteResult) => {
    counters.ingested += r.counted;
    counters.duplicates += r.duplicates;
    counters.orphaned += r.orphaned;
  };

  /** Writes until it succeeds; false only when the ingestor is stopping first. */
  const writeUntilDone = async (entries: IngestEntry[]): Promise<boolean> => {
    let delay = retryMs;
    for (;;) {
      try {
        const result = write(ctx.db, stream, entries);
        writing = result;
        tally(await result);
        return true;
      } catch (err) {
        if (isDataError(err)) {
          // One bad entry must not hold back the whole stream: halve until it stands alone.
          if (entries.length === 1) {
            counters.rejected += 1;
            log.error(
              { id: entries[0]?.id, err: { message: (err as Error).message } },
              'usage event refused',
            );
            return true;
          }
          const half = Math.ceil(entries.length / 2);
          return (await writeUntilDone(entries.slice(0, half))) && writeUntilDone(entries.slice(half));
        }
        counters.failures += 1;
        log.error(
          { entries: entries.length, retryInMs: delay, err: { message: (err as Error).message } },
          'usage batch not written; retrying',
        );
        if (stopping) return false;
        await pause(delay);
        if (stopping) return false;
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    }
  };

  /** Writes then acknowledges; false when the batch was left pending. */
  const handle = async (raw: RawEntry[]): Promise<boolean> => {
    const entries: IngestEntry[] = [];
    for (const [id, flat] of raw) {
      if (flat === null) {
        counters.trimmed += 1;
        continue;
      }
      const event = decodeForIngest(fieldsOf(flat));
      if (event) entries.push({ id, event });
      else {
        counters.malformed += 1;
        log.warn({ id }, 'not a usage event; skipped');
      }
    }
    if (entries.length > 0 && !(await writeUntilDone(entries))) return false;
    await redis.xack(stream, USAGE_INGEST_GROUP, ...raw.map(([id]) => id));
    return true;
  };

  /** Takes over entries another consumer (or this one, before a failed acknowledgement) left idle. */
  const claimIdle = async (): Promise<void> => {
    let cursor = '0-0';
    do {
      const reply = (await redis.call(
        'XAUTOCLAIM',
        stream,
        USAGE_INGEST_GROUP,
        consumer,
        claimIdleMs,
        cursor,
        'COUNT',
        batchSize,
      )) as [string, RawEntry[], string[]?];
      cursor = reply[0];
      if (reply[1].length > 0) {
        log.info({ entries: reply[1].length }, 'claimed idle usage entries');
        if (!(await handle(reply[1]))) return;
      }
      // Redis already dropped the pending entries whose data was trimmed away.
      counters.trimmed += reply[2]?.length ?? 0;
    } while (cursor !== '0-0' && !stopping);
  };

  const tidy = async (): Promise<void> => {
    const first = (await redis.xrange(stream, '-', '+', 'COUNT', 1))[0];
    if (first) await pruneIngested(ctx.db, stream, first[0]);
    const consumers = (await redis.xinfo('CONSUMERS', stream, USAGE_INGEST_GROUP)) as unknown[][];
    for (const info of consumers) {
      const c = fieldsOf(info.map(String));
      if (c.name && c.name !== consumer && c.pending === '0' && Number(c.idle) > FORGET_CONSUMER_MS) {
        await redis.xgroup('DELCONSUMER', stream, USAGE_INGEST_GROUP, c.name);
      }
    }
  };

  const run = async (): Promise<void> => {
    // After a restart under the same name, this consumer's unacknowledged entries come first.
    let ownPending = true;
    let nextClaim = 0;
    let nextTidy = 0;
    let delay = retryMs;
    while (!stopping) {
      try {
        const now = Date.now();
        if (ownPending) {
          const raw = await read('0');
          if (raw.length === 0) ownPending = false;
          else await handle(raw);
        } else if (now >= nextClaim) {
          nextClaim = now + claimEveryMs;
          await claimIdle();
        } else if (now >= nextTidy) {
          nextTidy = now + pruneEveryMs;
          await tidy();
        } else {
          const raw = await read('>');
          if (raw.length > 0 && !(await handle(raw))) ownPending = true;
        }
        delay = retryMs;
      } catch (err) {
        // Redis unreachable, or an acknowledgement lost: whatever was read stays pending and is
        // read again from this consumer's own list once Redis answers.
        ownPending = true;
        if (stopping) break;
        // The stream was deleted (a flushed Redis): start again from whatever is appended next.
        if ((err as Error).message.startsWith('NOGROUP')) await ensureGroup().catch(() => undefined);
        log.error({ retryInMs: delay, err: { message: (err as Error).message } }, 'usage ingest loop failed');
        await pause(delay);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    }
  };

  const loop = run();
  log.info({ stream, group: USAGE_INGEST_GROUP }, 'usage ingestion started');

  return {
    async stats() {
      let lag: number | null = null;
      let pending: number | null = null;
      try {
        const groups = (await ctx.redis.xinfo('GROUPS', stream)) as unknown[][];
        const ours = groups.map((g) => fieldsOf(g.map((v) => (v === null ? '' : String(v)))));
        const group = ours.find((g) => g.name === USAGE_INGEST_GROUP);
        if (group) {
          pending = Number(group.pending);
          lag = group.lag === '' || group.lag === undefined ? null : Number(group.lag);
        }
      } catch {
        // Stats must never fail a scrape: unknown stays null.
      }
      return { ...counters, lag, pending };
    },
    async close() {
      stopping = true;
      wake?.();
      // A healthy Redis answers the blocking read within blockMs. Past that Redis is what the loop
      // waits on: let a write in flight finish, then drop the connection so the loop can end; an
      // unacknowledged batch is delivered again and the ledger keeps it from counting twice.
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        loop.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), blockMs + 2_000);
        }),
      ]);
      clearTimeout(timer);
      if (late) {
        await writing?.catch(() => undefined);
        redis.disconnect();
      }
      await loop;
      await redis.quit().catch(() => redis.disconnect());
      log.info(counters, 'usage ingestion stopped');
    },
  };
}
