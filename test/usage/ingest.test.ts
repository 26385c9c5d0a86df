import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Context } from '../../src/context.ts';
import { createDb } from '../../src/db/client.ts';
import { createKeys } from '../../src/redis/keys.ts';
import { encodeUsageEvent, flattenFields, type UsageEventRecord } from '../../src/usage/event.ts';
import {
  DISTINCT_CAP,
  decodeForIngest,
  fieldsOf,
  type IngestEntry,
  pruneIngested,
  writeBatch,
} from '../../src/usage/ingest.ts';
import {
  startUsageIngestor,
  streamEntries,
  USAGE_INGEST_GROUP,
  type UsageIngestor,
  type UsageIngestorOptions,
} from '../../workers/usage-ingest.ts';
import { cleanRedisPrefix, startTestApp, type TestApp, testPrefix } from '../support/harness.ts';

const H0 = Date.UTC(2026, 0, 15, 10, 0, 0);
const H1 = H0 + 3_600_000;
const MIN = 60_000;

let app: TestApp;
const prefixes: string[] = [];
const running: UsageIngestor[] = [];

beforeAll(async () => {
  app = await startTestApp();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((i) => i.close()));
  await Promise.all(prefixes.splice(0).map((p) => cleanRedisPrefix(app.ctx.config.REDIS_URL, p)));
});

afterAll(async () => {
  await app.close();
});

/** The test app's context with a stream of its own, so no test sees another's entries. */
function isolated(): Context {
  const prefix = testPrefix();
  prefixes.push(prefix);
  return { ...app.ctx, keys: createKeys(prefix) };
}

async function start(ctx: Context, opts: UsageIngestorOptions = {}): Promise<UsageIngestor> {
  const ingestor = await startUsageIngestor(ctx, { blockMs: 50, retryMs: 20, consumer: 'test', ...opts });
  running.push(ingestor);
  return ingestor;
}

async function account(): Promise<string> {
  const tag = randomBytes(8).toString('hex');
  const id = `acc_${tag}`;
  await app.ctx.db.account.create({
    data: {
      id,
      email: `u.${tag}@example.com`,
      emailCanonicalHash: `usage-test:${tag}`,
      emailDomain: 'example.com',
    },
  });
  return id;
}

async function apiKey(accountId: string, lastUsedAt: Date | null = null): Promise<string> {
  const tag = randomBytes(8).toString('hex');
  const id = `key_${tag}`;
  await app.ctx.db.apiKey.create({
    data: { id, accountId, hash: `usage-test:${tag}`, prefix: 'gh_test', lastUsedAt },
  });
  return id;
}

function event(accountId: string, overrides: Partial<UsageEventRecord> = {}): UsageEventRecord {
  return {
    accountId,
    keyId: null,
    at: H0 + MIN,
    ip: '203.0.113.1',
    asn: 64500,
    fingerprint: 'fp1',
    tlsFingerprint: null,
    userAgent: 'sdk/1.0',
    endpoint: '/v1/complete',
    cost: 1,
    decision: 'allow',
    reason: null,
    minhash: [],
    sampled: false,
    ...overrides,
  };
}

async function append(ctx: Context, ...events: UsageEventRecord[]): Promise<string[]> {
  const ids: string[] = [];
  for (const e of events) {
    const id = await ctx.redis.xadd(ctx.keys.usageStream(), '*', ...flattenFields(encodeUsageEvent(e)));
    if (id) ids.push(id);
  }
  return ids;
}

/** Until every entry was delivered and acknowledged. */
async function drained(ingestor: UsageIngestor): Promise<void> {
  await vi.waitFor(
    async () => {
      const s = await ingestor.stats();
      expect([s.lag, s.pending]).toEqual([0, 0]);
    },
    { timeout: 10_000, interval: 20 },
  );
}

const hours = (accountIds: string[]) =>
  app.ctx.db.usageHour.findMany({
    where: { accountId: { in: accountIds } },
    orderBy: [{ accountId: 'asc' }, { hour: 'asc' }],
  });

async function hourOf(accountId: string, hour = H0) {
  return app.ctx.db.usageHour.findUnique({ where: { accountId_hour: { accountId, hour: new Date(hour) } } });
}

/** A consumer that read entries and wrote them, then died before acknowledging them. */
async function crashAfterWrite(ctx: Context, consumer: string): Promise<number> {
  const stream = ctx.keys.usageStream();
  await ctx.redis.xgroup('CREATE', stream, USAGE_INGEST_GROUP, '0', 'MKSTREAM');
  const reply = await ctx.redis.call(
    'XREADGROUP',
    'GROUP',
    USAGE_INGEST_GROUP,
    consumer,
    'STREAMS',
    stream,
    '>',
  );
  const entries: IngestEntry[] = streamEntries(reply).map(([id, flat]) => ({
    id,
    event: decodeForIngest(fieldsOf(flat ?? []))!,
  }));
  await writeBatch(ctx.db, stream, entries);
  return entries.length;
}

describe('usage ingestion', () => {
  it('writes hourly aggregates, sampled events and key use for every account and hour', async () => {
    const ctx = isolated();
    const [a, b] = [await account(), await account()];
    const [keyA, keyB] = [await apiKey(a), await apiKey(b, new Date(H1 + 30 * MIN))];
    const ids = await append(
      ctx,
      event(a, { keyId: keyA, at: H0 + MIN, cost: 2, sampled: true, minhash: [5, 6, 7], ip: '203.0.113.1' }),
      event(a, { keyId: keyA, at: H0 + 2 * MIN, cost: 3, ip: '203.0.113.2', fingerprint: 'fp2', asn: 64501 }),
      event(a, { keyId: keyA, at: H0 + 3 * MIN, cost: 4, decision: 'deny', reason: 'rate_limited' }),
      event(a, { keyId: keyA, at: H1 + 5 * MIN, cost: 1 }),
      event(b, {
        keyId: keyB,
        at: H0 + 10 * MIN,
        cost: 10,
        sampled: true,
        ip: null,
        asn: null,
        fingerprint: null,
      }),
    );
    const ingestor = await start(ctx);
    await drained(ingestor);

    const rows = [...(await hours([a])), ...(await hours([b]))];
    expect(
      rows.map((r) => ({
        ...r,
        ips: r.ips.sort(),
        fingerprints: r.fingerprints.sort(),
        asns: r.asns.sort(),
      })),
    ).toEqual([
      {
        accountId: a,
        hour: new Date(H0),
        requests: 3,
        cost: 5n,
        denied: 1,
        ips: ['203.0.113.1', '203.0.113.2'],
        fingerprints: ['fp1', 'fp2'],
        asns: [64500, 64501],
      },
      {
        accountId: a,
        hour: new Date(H1),
        requests: 1,
        cost: 1n,
        denied: 0,
        ips: ['203.0.113.1'],
        fingerprints: ['fp1'],
        asns: [64500],
      },
      {
        accountId: b,
        hour: new Date(H0),
        requests: 1,
        cost: 10n,
        denied: 0,
        ips: [],
        fingerprints: [],
        asns: [],
      },
    ]);

    const events = await app.ctx.db.usageEvent.findMany({
      where: { accountId: { in: [a, b] } },
      orderBy: { at: 'asc' },
    });
    expect(events.map((e) => e.id)).toEqual([`evt_${ids[0]}`, `evt_${ids[4]}`]);
    expect(events[0]).toMatchObject({
      accountId: a,
      keyId: keyA,
      queryMinhash: [5, 6, 7],
      cost: 2,
      source: 'live',
    });

    const keys = await app.ctx.db.apiKey.findMany({
      where: { id: { in: [keyA, keyB] } },
      orderBy: { accountId: 'asc' },
    });
    const lastUsed = new Map(keys.map((k) => [k.id, k.lastUsedAt?.getTime()]));
    expect(lastUsed.get(keyA)).toBe(H1 + 5 * MIN);
    // A later use already recorded is never moved back by an older event.
    expect(lastUsed.get(keyB)).toBe(H1 + 30 * MIN);

    expect(await ingestor.stats()).toMatchObject({ ingested: 5, duplicates: 0, malformed: 0, failures: 0 });
  });

  it('counts a batch written twice only once', async () => {
    const a = await account();
    const stream = `${testPrefix()}:usage`;
    const base = Date.now();
    const batch: IngestEntry[] = [0, 1, 2].map((i) => ({
      id: `${base}-${i}`,
      event: event(a, { cost: 2, sampled: i === 0, ip: `198.51.100.${i}` }),
    }));
    expect(await writeBatch(app.ctx.db, stream, batch)).toEqual({ counted: 3, duplicates: 0, orphaned: 0 });
    expect(await writeBatch(app.ctx.db, stream, batch)).toEqual({ counted: 0, duplicates: 3, orphaned: 0 });
    // Partly new: only the new entry counts.
    const more = [...batch, { id: `${base}-3`, event: event(a, { cost: 2 }) }];
    expect(await writeBatch(app.ctx.db, stream, more)).toEqual({ counted: 1, duplicates: 3, orphaned: 0 });

    expect(await hourOf(a)).toMatchObject({ requests: 4, cost: 8n });
    expect(await app.ctx.db.usageEvent.count({ where: { accountId: a } })).toBe(1);
  });

  it("moves a key's last use only when it moves by a minute or more", async () => {
    const a = await account();
    const key = await apiKey(a, new Date(H1));
    const stream = `${testPrefix()}:usage`;
    const base = Date.now();
    const lastUsed = async () =>
      (await app.ctx.db.apiKey.findUniqueOrThrow({ where: { id: key } })).lastUsedAt;
    const write = (i: number, at: number) =>
      writeBatch(app.ctx.db, stream, [{ id: `${base}-${i}`, event: event(a, { keyId: key, at }) }]);

    await write(0, H1 + MIN);
    expect(await lastUsed()).toEqual(new Date(H1));
    await write(1, H1 + MIN + 1);
    expect(await lastUsed()).toEqual(new Date(H1 + MIN + 1));
    await write(2, H1 + 2 * MIN);
    expect(await lastUsed()).toEqual(new Date(H1 + MIN + 1));
    // The uses still count whether or not the time moved.
    expect(await hourOf(a, H1)).toMatchObject({ requests: 3 });
  });

  it('forgets ledger ids older than the first entry still in the stream, and only those', async () => {
    const a = await account();
    const stream = `${testPrefix()}:usage`;
    const base = Date.now();
    const batch: IngestEntry[] = [0, 1, 2].map((i) => ({ id: `${base + i}-0`, event: event(a) }));
    await writeBatch(app.ctx.db, stream, batch);
    expect(await pruneIngested(app.ctx.db, stream, `${base + 1}-0`)).toBe(1);
    const left = await app.ctx.db.usageIngested.findMany({ where: { stream }, orderBy: { ms: 'asc' } });
    expect(left.map((r) => Number(r.ms))).toEqual([base + 1, base + 2]);
    // What is still in the stream is still protected against a second count.
    expect(await writeBatch(app.ctx.db, stream, batch.slice(1))).toMatchObject({ counted: 0, duplicates: 2 });
  });

  it('acknowledges and skips an entry that is not a usage event', async () => {
    const ctx = isolated();
    const a = await account();
    await ctx.redis.xadd(ctx.keys.usageStream(), '*', 'hello', 'world');
    await ctx.redis.xadd(
      ctx.keys.usageStream(),
      '*',
      ...flattenFields({ ...encodeUsageEvent(event(a)), t: 'soon' }),
    );
    await append(ctx, event(a));
    const ingestor = await start(ctx);
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ ingested: 1, malformed: 2, pending: 0 });
    expect(await hourOf(a)).toMatchObject({ requests: 1 });
  });

  it('skips events of accounts that no longer exist without failing their batch', async () => {
    const ctx = isolated();
    const [a, gone] = [await account(), await account()];
    await app.ctx.db.account.delete({ where: { id: gone } });
    await append(ctx, event(gone, { sampled: true }), event(a, { sampled: true }));
    const ingestor = await start(ctx);
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ ingested: 1, orphaned: 1, failures: 0 });
    expect(await hourOf(a)).toMatchObject({ requests: 1 });
    expect(await hourOf(gone)).toBeNull();
    expect(await app.ctx.db.usageEvent.count({ where: { accountId: gone } })).toBe(0);
  });

  it('recovers its own entries after a crash between write and acknowledgement, counting them once', async () => {
    const ctx = isolated();
    const a = await account();
    await append(ctx, event(a, { cost: 3 }), event(a, { cost: 4, sampled: true }));
    expect(await crashAfterWrite(ctx, 'worker-1')).toBe(2);

    // The same consumer restarts: its pending entries come back first, already counted.
    const ingestor = await start(ctx, { consumer: 'worker-1' });
    await append(ctx, event(a, { cost: 5 }));
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ ingested: 1, duplicates: 2 });
    expect(await hourOf(a)).toMatchObject({ requests: 3, cost: 12n });
    expect(await app.ctx.db.usageEvent.count({ where: { accountId: a } })).toBe(1);
  });

  it("claims a dead consumer's idle entries and counts them once", async () => {
    const ctx = isolated();
    const a = await account();
    await append(ctx, event(a, { cost: 3 }), event(a, { cost: 4 }));
    await crashAfterWrite(ctx, 'worker-gone');
    await new Promise((resolve) => setTimeout(resolve, 60));

    const ingestor = await start(ctx, { consumer: 'worker-2', claimIdleMs: 50 });
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ ingested: 0, duplicates: 2 });
    expect(await hourOf(a)).toMatchObject({ requests: 2, cost: 7n });
  });

  it('retries a batch whose write committed but was reported failed, without counting it twice', async () => {
    const ctx = isolated();
    const a = await account();
    await append(ctx, event(a, { cost: 2 }), event(a, { cost: 2 }));
    let failed = false;
    const ingestor = await start(ctx, {
      write: async (db, stream, entries) => {
        const result = await writeBatch(db, stream, entries);
        if (!failed) {
          failed = true;
          throw new Error('connection reset after commit');
        }
        return result;
      },
    });
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ failures: 1, duplicates: 2 });
    expect(await hourOf(a)).toMatchObject({ requests: 2, cost: 4n });
  });

  it('keeps retrying while PostgreSQL is unreachable and acknowledges nothing until the batch is written', async () => {
    const ctx = isolated();
    const a = await account();
    const unreachable = createDb('postgresql://postgres@127.0.0.1:1/gatehouse', 200);
    let down = true;
    try {
      const ingestor = await start(ctx, {
        retryMs: 10,
        write: (db, stream, entries) => writeBatch(down ? unreachable : db, stream, entries),
      });
      await append(ctx, event(a), event(a));
      await vi.waitFor(async () => expect((await ingestor.stats()).failures).toBeGreaterThanOrEqual(2), {
        timeout: 10_000,
      });
      expect(await ingestor.stats()).toMatchObject({ pending: 2, ingested: 0 });
      expect(await hourOf(a)).toBeNull();

      down = false;
      await drained(ingestor);
      expect(await hourOf(a)).toMatchObject({ requests: 2 });
    } finally {
      await unreachable.$disconnect();
    }
  });

  it('refuses only the entry PostgreSQL cannot store and writes the rest of its batch', async () => {
    const ctx = isolated();
    const a = await account();
    await append(
      ctx,
      event(a, { cost: 1 }),
      event(a, { cost: 2, endpoint: '/poison' }),
      event(a, { cost: 4 }),
    );
    const ingestor = await start(ctx, {
      // Decoding strips NUL bytes; put one back to stand for data no decoder anticipated.
      write: (db, stream, entries) =>
        writeBatch(
          db,
          stream,
          entries.map((e) =>
            e.event.endpoint === '/poison' ? { ...e, event: { ...e.event, ip: 'x\u0000' } } : e,
          ),
        ),
    });
    await drained(ingestor);
    expect(await ingestor.stats()).toMatchObject({ ingested: 2, rejected: 1, failures: 0 });
    expect(await hourOf(a)).toMatchObject({ requests: 2, cost: 5n });
  });

  it('merges a stored hour with new values in order of first sight, and keeps it when nothing is new', async () => {
    const a = await account();
    const stream = `${testPrefix()}:usage`;
    const base = Date.now();
    let seq = 0;
    const batch = (...ips: string[]): IngestEntry[] =>
      ips.map((ip) => ({ id: `${base}-${seq++}`, event: event(a, { ip, fingerprint: `fp-${ip}` }) }));
    const [x, y, z] = ['198.51.100.1', '198.51.100.2', '198.51.100.3'];
    await writeBatch(app.ctx.db, stream, batch(x, y));
    // Nothing new: the stored sets stay as they are.
    await writeBatch(app.ctx.db, stream, batch(y, y));
    expect(await hourOf(a)).toMatchObject({ requests: 4, ips: [x, y], fingerprints: [`fp-${x}`, `fp-${y}`] });
    // One new value among known ones: appended after the values already stored.
    await writeBatch(app.ctx.db, stream, batch(z, x));
    expect(await hourOf(a)).toMatchObject({
      requests: 6,
      ips: [x, y, z],
      fingerprints: [`fp-${x}`, `fp-${y}`, `fp-${z}`],
      asns: [64500],
    });
  });

  it(`stores at most ${DISTINCT_CAP} distinct values per set while counting every request`, async () => {
    const ctx = isolated();
    const a = await account();
    const many = Array.from({ length: 100 }, (_, i) =>
      event(a, { at: H0 + i * 1_000, ip: `198.51.100.${i}`, fingerprint: `fp${i}`, asn: 64_500 + i }),
    );
    await append(ctx, ...many);
    // Small batches, so the cap is also applied when a stored row is merged with a new one.
    const ingestor = await start(ctx, { batchSize: 30 });
    await drained(ingestor);
    const row = await hourOf(a);
    expect(row?.requests).toBe(100);
    expect(row?.ips).toHaveLength(DISTINCT_CAP);
    expect(row?.fingerprints).toHaveLength(DISTINCT_CAP);
    expect(row?.asns).toHaveLength(DISTINCT_CAP);
    // The first values seen are the ones kept.
    expect(row?.ips).toContain('198.51.100.0');
    expect(row?.ips).not.toContain('198.51.100.99');
  });

  it('lets the batch in flight finish and acknowledges it when closed', async () => {
    const ctx = isolated();
    const a = await account();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started: () => void = () => undefined;
    const writing = new Promise<void>((resolve) => {
      started = resolve;
    });
    const ingestor = await startUsageIngestor(ctx, {
      blockMs: 50,
      consumer: 'closing',
      write: async (db, stream, entries) => {
        started();
        await gate;
        return writeBatch(db, stream, entries);
      },
    });
    await append(ctx, event(a), event(a));
    await writing;
    const closed = ingestor.close();
    release();
    await closed;
    expect(await hourOf(a)).toMatchObject({ requests: 2 });
    const pending = (await ctx.redis.xpending(ctx.keys.usageStream(), USAGE_INGEST_GROUP)) as [
      number,
      ...unknown[],
    ];
    expect(pending[0]).toBe(0);
  });

  it('starts its group at the beginning of the stream: nothing appended earlier is lost', async () => {
    const ctx = isolated();
    const a = await account();
    await append(ctx, event(a), event(a), event(a));
    const ingestor = await start(ctx);
    await drained(ingestor);
    expect(await hourOf(a)).toMatchObject({ requests: 3 });
  });
});
