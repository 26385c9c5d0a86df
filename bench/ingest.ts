// Usage ingestion benchmark: `tsx bench/ingest.ts [--events 100000] [--accounts 1000]
// [--batch 500] [--query-share 0.25]`.
//
// The usage stream is filled first (the events a decision appends: every one sampled, as the
// policy's default eventSampleRate of 1 has it, a quarter carrying a query's MinHash), then one
// ingestion worker drains it into PostgreSQL the way `npm run start:workers` runs it: batches read
// through the consumer group, written (ledger, hourly aggregates, events, keys' last use) and only
// then acknowledged. Reported:
//   - events per second, from the first read to the last acknowledgement;
//   - the worker's CPU per event (this process runs nothing else while it measures);
//   - PostgreSQL's CPU per event: its backends for the benchmark's database and its background
//     processes (Linux /proc, as bench/lib/cpu.ts splits it);
//   - the worker's event-loop delay (its longest and its p99): what enforcement sees when the
//     worker shares its process, as in `npm start`.
// It checks that every event was counted once before it reports anything.
//
// PostgreSQL comes from DATABASE_URL (default: the local server) and Redis from REDIS_URL; the
// database and the Redis keys are removed at the end, also on failure or Ctrl-C.
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { createDb, type Db } from '../src/db/client.ts';
import { applyMigrations, dropDatabase, ensureDatabase, withDatabase } from '../src/db/migrate.ts';
import { inSlices } from '../src/lib/in-slices.ts';
import { createLogger } from '../src/logger.ts';
import { deleteMatching } from '../src/redis/client.ts';
import { createKeys } from '../src/redis/keys.ts';
import { encodeUsageEvent, flattenFields } from '../src/usage/event.ts';
import { startUsageIngestor, type UsageIngestor } from '../workers/usage-ingest.ts';
import { cpuShare, sampleCpu } from './lib/cpu.ts';

const { values: argv } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    accounts: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '500' },
    'query-share': { type: 'string', default: '0.25' },
  },
  strict: true,
});
const count = (name: string, raw: string | undefined, max: number): number => {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    process.stderr.write(`bench/ingest: --${name} must be an integer from 1 to ${max}\n`);
    process.exit(2);
  }
  return n;
};
const EVENTS = count('events', argv.events, 10_000_000);
const ACCOUNTS = count('accounts', argv.accounts, 1_000_000);
const BATCH = count('batch', argv.batch, 10_000);
const QUERY_SHARE = Number(argv['query-share']);
if (!(QUERY_SHARE >= 0 && QUERY_SHARE <= 1)) {
  process.stderr.write('bench/ingest: --query-share must be between 0 and 1\n');
  process.exit(2);
}

const log = (msg: string) => process.stderr.write(`[bench:ingest] ${msg}\n`);
const tag = randomBytes(5).toString('hex');
const database = `gatehouse_bench_ingest_${tag}`;
const databaseUrl = withDatabase(
  process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
  database,
);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `benchingest${tag}`;
const keys = createKeys(prefix);

let db: Db | undefined;
let redis: Redis | undefined;
let ingestor: UsageIngestor | undefined;
const cleanup = async () => {
  await ingestor?.close().catch(() => {});
  if (redis) {
    await deleteMatching(redis, [`${prefix}*`, `{${prefix}*`]).catch(() => {});
    redis.disconnect();
  }
  await db?.$disconnect().catch(() => {});
  await dropDatabase(databaseUrl).catch((err: Error) => log(`could not drop the database: ${err.message}`));
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

try {
  log(`database ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, Redis keys under ${prefix}`);
  await ensureDatabase(databaseUrl);
  await applyMigrations(databaseUrl);
  db = createDb(databaseUrl, 5_000);
  redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });

  const accountIds = Array.from({ length: ACCOUNTS }, (_, i) => `acc_bench${tag}${i}`);
  const keyIds = accountIds.map((_, i) => `key_bench${tag}${i}`);
  await inSlices(accountIds, 5_000, async (slice) => {
    await db!.account.createMany({
      data: slice.map((id) => ({
        id,
        email: `${id}@example.com`,
        emailCanonicalHash: id,
        emailDomain: 'example.com',
        status: 'active' as const,
      })),
    });
  });
  await inSlices(keyIds, 5_000, async (slice) => {
    await db!.apiKey.createMany({
      data: slice.map((id) => ({
        id,
        accountId: `acc_${id.slice(4)}`,
        hash: `bench:${id}`,
        prefix: 'gh_bench',
      })),
    });
  });

  log(`${EVENTS.toLocaleString('en-US')} events onto the usage stream`);
  const stream = keys.usageStream();
  const start = Date.now() - 3_600_000;
  for (let i = 0; i < EVENTS; i += 1_000) {
    const pipeline = redis.pipeline();
    for (let j = i; j < Math.min(EVENTS, i + 1_000); j++) {
      const a = j % ACCOUNTS;
      const fields = encodeUsageEvent({
        accountId: accountIds[a]!,
        keyId: keyIds[a]!,
        // Spread over an hour and a bit, so that accounts have two hourly rows.
        at: start + Math.floor((j / EVENTS) * 4_000_000),
        ip: `203.0.${(j >> 8) & 255}.${j & 255}`,
        asn: 64_500 + (j % 50),
        fingerprint: `fp_${j % 3_000}`,
        tlsFingerprint: null,
        userAgent: 'python-requests/2.32.3',
        endpoint: '/v1/chat/completions',
        cost: 1 + (j % 3),
        decision: 'allow',
        reason: null,
        minhash:
          j % 100 < QUERY_SHARE * 100
            ? Array.from({ length: 64 }, (_, k) => (j * 31 + k * 7919) % 2 ** 31)
            : [],
        sampled: true,
      });
      pipeline.xadd(stream, '*', ...flattenFields(fields));
    }
    await pipeline.exec();
  }

  const config = loadConfig({
    ...process.env,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
  });
  const ctx = { config, db, keys, logger: createLogger('warn'), redis };

  log(`draining with one worker, batches of ${BATCH}`);
  const delay = monitorEventLoopDelay({ resolution: 5 });
  const cpu0 = process.cpuUsage();
  const sample0 = sampleCpu();
  const t0 = performance.now();
  delay.enable();
  ingestor = await startUsageIngestor(ctx, { batchSize: BATCH, blockMs: 100, consumer: 'bench' });
  for (;;) {
    const s = await ingestor.stats();
    if (s.lag === 0 && s.pending === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - t0) / 1000;
  delay.disable();
  const cpu = process.cpuUsage(cpu0);
  const sample1 = sampleCpu();
  const stats = await ingestor.stats();

  // Every event counted exactly once: requests over the hourly rows, and one stored event each.
  const [counted] = await db.$queryRaw<Array<{ requests: bigint; events: bigint }>>`
    SELECT (SELECT COALESCE(sum(requests), 0) FROM usage_hours) AS requests,
           (SELECT count(*) FROM usage_events) AS events`;
  const requests = Number(counted?.requests ?? 0);
  const events = Number(counted?.events ?? 0);
  if (requests !== EVENTS || events !== EVENTS || stats.ingested !== EVENTS) {
    throw new Error(
      `counted ${requests} requests and ${events} events (worker: ${stats.ingested}), expected ${EVENTS}`,
    );
  }

  // The worker runs in this process: it is the "gatehouse" of the split, and nothing is left over
  // for the benchmark's own share.
  const postgresUs =
    sample0 === null || sample1 === null
      ? null
      : (cpuShare(sample0, sample1, { bench: process.pid, gatehouse: process.pid, database }).postgresPct /
          100) *
        (sample1.at - sample0.at) *
        1000;
  const perEvent = (us: number) => (us / EVENTS).toFixed(1);
  console.log(
    `\nUsage ingestion: ${EVENTS.toLocaleString('en-US')} events of ${ACCOUNTS.toLocaleString('en-US')} accounts, ` +
      `batches of ${BATCH}, ${Math.round(QUERY_SHARE * 100)}% with a query's MinHash, every event sampled`,
  );
  console.table({
    'one worker': {
      'events/s': Math.round(EVENTS / seconds).toLocaleString('en-US'),
      seconds: seconds.toFixed(1),
      'worker CPU µs/event': perEvent(cpu.user + cpu.system),
      'PostgreSQL CPU µs/event': postgresUs === null ? 'n/a' : perEvent(postgresUs),
      'event-loop delay max ms': (delay.max / 1e6).toFixed(1),
      'event-loop delay p99 ms': (delay.percentile(99) / 1e6).toFixed(1),
    },
  });
} finally {
  await cleanup();
}
