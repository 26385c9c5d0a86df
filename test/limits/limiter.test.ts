import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type CheckRequest,
  createSlidingWindowLimiter,
  type LimitSpec,
  type SlidingWindowLimiter,
} from '../../src/limits/limiter.ts';
import { deleteMatching } from '../../src/redis/client.ts';
import { RespClient } from '../../src/redis/resp-client.ts';

const PREFIX = `test:limits:limiter:${randomUUID()}:`;
const MINUTE = 60_000;
let redis: Redis;
let limiter: SlidingWindowLimiter;

beforeAll(() => {
  redis = new Redis({ host: '127.0.0.1', port: 6379, db: 0 });
  limiter = createSlidingWindowLimiter(redis);
});

afterAll(async () => {
  await deleteMatching(redis, [`${PREFIX}*`]);
  redis.disconnect();
});

let sequence = 0;
function key(name: string): string {
  return `${PREFIX}${sequence++}:${name}`;
}

/** 60 s window in 10 buckets of 6 s: a 6 s over-count at most. */
function perMinute(name: string, limit: number): LimitSpec {
  return { name, key: key(name), limit, windowMs: MINUTE, buckets: 10 };
}

function enforce(now: number, limits: LimitSpec[], cost = 1): CheckRequest {
  return { now, mode: 'enforce', cost, limits };
}

function usedOf(result: { limits: readonly { used: number }[] }): number[] {
  return result.limits.map((limit) => limit.used);
}

/** Collects the commands the server runs while `action` runs; ordering is fenced by a marker PING. */
/**
 * One MONITOR line's arguments: `+1700000000.123456 [0 127.0.0.1:5000] "evalsha" "…"`, each
 * argument quoted with backslash escapes (\", \\, \n, \r, \t, \xNN).
 */
function monitorLine(line: string): { args: string[]; source: string } | null {
  const head = /^\+\d+\.\d+ \[\d+ (\S+)\] /.exec(line);
  if (!head) return null;
  const args: string[] = [];
  for (const m of line.slice(head[0].length).matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    args.push(
      m[1]!.replace(/\\(x[0-9a-f]{2}|.)/g, (_, e: string) =>
        e.length === 3
          ? String.fromCharCode(Number.parseInt(e.slice(1), 16))
          : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' }[e] ?? e),
      ),
    );
  }
  return { args, source: head[1]! };
}

/**
 * Collects the commands the server runs while `action` runs; ordering is fenced by a marker PING.
 * MONITOR is read from a raw socket line by line: the test files run side by side, and a client
 * library's monitor mode has to keep up with every other file's commands too.
 */
async function monitored(action: () => Promise<void>): Promise<Array<{ args: string[]; source: string }>> {
  const socket = connect({ host: '127.0.0.1', port: 6379 });
  const seen: Array<{ args: string[]; source: string }> = [];
  const marker = `fence-${randomUUID()}`;
  let started: () => void = () => undefined;
  const monitoring = new Promise<void>((resolve) => {
    started = resolve;
  });
  let fence: () => void = () => undefined;
  const fenced = new Promise<void>((resolve) => {
    fence = resolve;
  });
  let open = true;
  createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
    if (line === '+OK') return started();
    if (!open) return;
    const command = monitorLine(line);
    if (!command) return;
    if (command.args[0]?.toLowerCase() === 'ping' && command.args[1] === marker) {
      open = false;
      fence();
    } else {
      seen.push(command);
    }
  });
  try {
    socket.write('MONITOR\r\n');
    await monitoring;
    await action();
    await redis.ping(marker);
    await fenced;
  } finally {
    socket.destroy();
  }
  return seen;
}

async function addressOf(connection: Redis): Promise<string> {
  const info = String(await connection.call('CLIENT', 'INFO'));
  const addr = /(?:^|\s)addr=(\S+)/.exec(info)?.[1];
  if (!addr) throw new Error(`no addr in CLIENT INFO: ${info}`);
  return addr;
}

/** A connection of its own, over ioredis or over the enforcement client. */
async function clientFor(client: 'ioredis' | 'the enforcement client'): Promise<Redis | RespClient> {
  if (client === 'ioredis') return redis.duplicate();
  const connection = new RespClient({
    url: 'redis://127.0.0.1:6379',
    connectTimeoutMs: 1_000,
    commandTimeoutMs: 1_000,
  });
  await connection.connect();
  return connection;
}

describe('sliding-window limiter', () => {
  it('admits until the limit, then names the violated dimension and when it frees up', async () => {
    const limits = [perMinute('key', 3)];
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await limiter.check(enforce(1_000, limits)));
    expect(answers.map((a) => a.admitted)).toEqual([true, true, true, false]);
    expect(answers.map((a) => a.limits[0]?.remaining)).toEqual([2, 1, 0, 0]);
    expect(answers[3]).toEqual({
      admitted: false,
      violated: 'key',
      limits: [{ name: 'key', limit: 3, used: 3, remaining: 0, resetMs: 66_000 - 1_000 }],
    });
  });

  it('consumes nothing in any dimension when another dimension denies (all or nothing)', async () => {
    const limits = [perMinute('key', 10), perMinute('ip', 1)];
    expect(usedOf(await limiter.check(enforce(0, limits)))).toEqual([1, 1]);

    const denied = await limiter.check(enforce(0, limits));
    expect(denied.admitted).toBe(false);
    expect(denied.violated).toBe('ip');
    expect(usedOf(denied)).toEqual([1, 1]);
    expect(await redis.hget(limits[0]!.key, 't')).toBe('1');
  });

  it('names the first violated dimension in the order the caller gave', async () => {
    const limits = [perMinute('user', 1), perMinute('device', 1), perMinute('asn', 1)];
    await limiter.check(enforce(0, limits));
    expect((await limiter.check(enforce(0, limits))).violated).toBe('user');
  });

  it('counts denied attempts in record mode and still reports which dimension is over', async () => {
    const limits = [perMinute('signup-ip', 2)];
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await limiter.check({ ...enforce(0, limits), mode: 'record' }));
    expect(answers.map((a) => a.admitted)).toEqual([true, true, false, false]);
    expect(answers.map((a) => a.violated)).toEqual([undefined, undefined, 'signup-ip', 'signup-ip']);
    expect(answers.map((a) => a.limits[0]?.used)).toEqual([1, 2, 3, 4]);

    // An enforce check after the flood is refused and does not add to the count.
    const after = await limiter.check(enforce(0, limits));
    expect(after).toMatchObject({ admitted: false, limits: [{ used: 4, remaining: 0 }] });
  });

  it('answers a cost-0 lookup with the same remaining and consumes nothing', async () => {
    const limits = [perMinute('key', 5), perMinute('user', 8)];
    const spent = await limiter.check(enforce(0, limits, 2));
    for (let i = 0; i < 3; i++) {
      expect(await limiter.check(enforce(0, limits, 0))).toEqual(spent);
    }
    expect((await limiter.check(enforce(3_000, limits, 0))).limits).toMatchObject([
      { used: 2, remaining: 3, resetMs: 63_000 },
      { used: 2, remaining: 6, resetMs: 63_000 },
    ]);
    expect((await limiter.check(enforce(3_000, limits))).limits.map((l) => l.remaining)).toEqual([2, 5]);
  });

  it('admits a lookup on an exhausted dimension but reports nothing left', async () => {
    const limits = [perMinute('key', 2)];
    await limiter.check(enforce(0, limits, 2));
    expect(await limiter.check(enforce(0, limits, 0))).toMatchObject({
      admitted: true,
      limits: [{ used: 2, remaining: 0 }],
    });
  });

  it('has no fixed reset: an exhausted window stays shut until its buckets expire', async () => {
    const limits = [perMinute('key', 5)];
    expect((await limiter.check(enforce(0, limits, 5))).admitted).toBe(true);

    const at59 = await limiter.check(enforce(59_000, limits));
    expect(at59).toMatchObject({ admitted: false, limits: [{ used: 5, resetMs: 7_000 }] });
    expect((await limiter.check(enforce(65_999, limits))).admitted).toBe(false);
    expect(await limiter.check(enforce(66_000, limits))).toMatchObject({
      admitted: true,
      limits: [{ used: 1, remaining: 4 }],
    });
  });

  it('gives a burst timed to the minute boundary nothing extra', async () => {
    const limits = [perMinute('key', 5)];
    expect((await limiter.check(enforce(59_999, limits, 5))).admitted).toBe(true);
    expect((await limiter.check(enforce(60_000, limits))).admitted).toBe(false);
    expect((await limiter.check(enforce(119_999, limits))).admitted).toBe(false);
    expect((await limiter.check(enforce(120_000, limits))).admitted).toBe(true);
  });

  it('enforces a burst window and a daily budget on the same dimension', async () => {
    const day = 24 * 60 * MINUTE;
    const limits: LimitSpec[] = [
      perMinute('burst', 10),
      { name: 'day', key: key('day'), limit: 25, windowMs: day, buckets: 144 },
    ];
    expect((await limiter.check(enforce(0, limits, 10))).admitted).toBe(true);
    expect((await limiter.check(enforce(0, limits))).violated).toBe('burst');
    expect((await limiter.check(enforce(66_000, limits, 10))).admitted).toBe(true);
    expect((await limiter.check(enforce(132_000, limits, 10))).violated).toBe('day');
    const last = await limiter.check(enforce(132_000, limits, 5));
    expect(last).toMatchObject({ admitted: true, limits: [{ used: 5 }, { used: 25, remaining: 0 }] });
    // The daily budget frees up bucket by bucket (10-minute buckets), not at midnight.
    expect(last.limits[1]?.resetMs).toBe(day + 10 * MINUTE - 132_000);
  });

  it('admits exactly 100 of 200 concurrent checks against a limit of 100', async () => {
    const connections = [redis, redis.duplicate(), redis.duplicate(), redis.duplicate()];
    const limiters = connections.map((connection) => createSlidingWindowLimiter(connection));
    const limits = [perMinute('key', 100), perMinute('user', 1_000)];
    try {
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) => limiters[i % limiters.length]!.check(enforce(i, limits))),
      );
      expect(answers.filter((a) => a.admitted)).toHaveLength(100);
      expect(usedOf(await limiter.check(enforce(200, limits, 0)))).toEqual([100, 100]);
    } finally {
      for (const connection of connections.slice(1)) connection.disconnect();
    }
  });

  it('appends the usage event only when admitted, inside the same command', async () => {
    const stream = key('usage');
    const limits = [perMinute('key', 1)];
    const event = { stream, maxLen: 1_000, fields: { key: 'key_1', cost: '1' }, when: 'admitted' } as const;

    const commands = await monitored(async () => {
      expect((await limiter.check({ ...enforce(0, limits), event })).admitted).toBe(true);
      expect((await limiter.check({ ...enforce(0, limits), event })).admitted).toBe(false);
    });

    const entries = await redis.xrange(stream, '-', '+');
    expect(entries.map(([, fields]) => fields)).toEqual([['key', 'key_1', 'cost', '1']]);
    const touchingStream = commands.filter((c) => c.args.includes(stream));
    // One script call per check (EVAL if this limiter has not cached the script yet, else EVALSHA).
    const topLevel = touchingStream.filter((c) => c.source !== 'lua').map((c) => c.args[0]?.toLowerCase());
    expect(topLevel).toHaveLength(2);
    for (const name of topLevel) expect(name).toMatch(/^eval(sha)?$/);
    expect(touchingStream.filter((c) => c.source === 'lua').map((c) => c.args[0]?.toLowerCase())).toEqual([
      'xadd',
    ]);
  });

  it('appends the event on denial too when asked to (signup attempts)', async () => {
    const stream = key('attempts');
    const limits = [perMinute('signup-ip', 1)];
    const event = { stream, maxLen: 1_000, fields: { ip: '203.0.113.7' }, when: 'always' } as const;
    await limiter.check({ ...enforce(0, limits), mode: 'record', event });
    await limiter.check({ ...enforce(0, limits), mode: 'record', event });
    const entries = await redis.xrange(stream, '-', '+');
    expect(entries.map(([, fields]) => fields)).toEqual([
      ['ok', '1', 'ip', '203.0.113.7'],
      ['ok', '0', 'ip', '203.0.113.7'],
    ]);
  });

  it.each(['ioredis', 'the enforcement client'] as const)(
    'sends exactly one Redis command per check, 5 dimensions × 2 windows with an event (%s)',
    async (client) => {
      const connection = await clientFor(client);
      const own = createSlidingWindowLimiter(connection);
      const dimensions = ['key', 'user', 'device', 'ip', 'asn'];
      // As enforcement keeps them: both windows of a dimension in one hash.
      const limits = dimensions.flatMap((d): LimitSpec[] => {
        const hash = key(d);
        return [
          { ...perMinute(`${d}:minute`, 50), key: hash, slot: 'm' },
          { name: `${d}:day`, key: hash, slot: 'd', limit: 1_000, windowMs: 24 * 60 * MINUTE, buckets: 96 },
        ];
      });
      const event = { stream: key('usage'), maxLen: 100, fields: { k: 'v' }, when: 'always' } as const;
      try {
        const source =
          connection instanceof RespClient
            ? /(?:^|\s)addr=(\S+)/.exec(String(await connection.call(['CLIENT', 'INFO'])))?.[1]
            : await addressOf(connection);
        const commands = await monitored(async () => {
          for (let i = 0; i < 10; i++) await own.check({ ...enforce(i * 1_000, limits), event });
        });
        const sent = commands.filter((c) => c.source === source).map((c) => c.args[0]?.toLowerCase());
        // The first check carries the source (EVAL caches it); the rest send only its SHA.
        expect(sent).toEqual(['eval', ...Array<string>(9).fill('evalsha')]);
        // Inside the script: one read and one write per dimension, and the event.
        const inside = commands.filter((c) => c.source === 'lua' && c.args.some((a) => a.startsWith(PREFIX)));
        const perCheck = inside.slice(-11).map((c) => c.args[0]?.toLowerCase());
        expect(perCheck).toEqual([
          ...Array<string>(5).fill('hmget'),
          ...Array<string>(5).fill('hset'),
          'xadd',
        ]);
      } finally {
        connection.disconnect();
      }
    },
  );

  it.each(['ioredis', 'the enforcement client'] as const)(
    'answers the same with a shape as without, across keys, buckets and a shape misused (%s)',
    async (client) => {
      const connection = await clientFor(client);
      const own = createSlidingWindowLimiter(connection);
      const shape = {};
      const windows = (hash: string, minute: number, day: number, shaped: boolean): LimitSpec[] => [
        { ...perMinute('minute', minute), key: hash, slot: 'm', ...(shaped ? { shape } : {}) },
        {
          name: 'day',
          key: hash,
          slot: 'd',
          limit: day,
          windowMs: 24 * 60 * MINUTE,
          buckets: 96,
          ...(shaped ? { shape } : {}),
        },
      ];
      // Two subjects under one shape, the bucket moving on, then the same shape object handed
      // other limits (a caller's mistake): each answer must equal the one given without a shape.
      const steps: Array<{ now: number; subject: 'a' | 'b'; minute: number; day: number }> = [
        ...Array.from({ length: 4 }, (_, i) => ({ now: i, subject: 'a' as const, minute: 3, day: 5 })),
        ...Array.from({ length: 2 }, (_, i) => ({ now: 10 + i, subject: 'b' as const, minute: 3, day: 5 })),
        { now: 7_000, subject: 'a', minute: 3, day: 5 },
        { now: 7_001, subject: 'b', minute: 1, day: 5 },
        { now: 7_002, subject: 'b', minute: 3, day: 2 },
        { now: 70_000, subject: 'a', minute: 3, day: 5 },
      ];
      const hashes = { shaped: { a: key('a'), b: key('b') }, plain: { a: key('a'), b: key('b') } };
      try {
        for (const step of steps) {
          const answer = (shaped: boolean) =>
            own.check(
              enforce(
                step.now,
                windows((shaped ? hashes.shaped : hashes.plain)[step.subject], step.minute, step.day, shaped),
              ),
            );
          const withShape = await answer(true);
          expect(withShape).toEqual(await answer(false));
        }
        // And what was counted is what the plain path counted.
        const final = await own.check(enforce(70_001, windows(hashes.shaped.a, 3, 5, false), 0));
        expect(usedOf(final)).toEqual(
          usedOf(await own.check(enforce(70_001, windows(hashes.plain.a, 3, 5, false), 0))),
        );
        // a: three admitted at 0-3 ms (the minute limit), none at 7 s (the first bucket still counts), one at 70 s.
        expect(usedOf(final)).toEqual([1, 4]);
      } finally {
        connection.disconnect();
      }
    },
  );

  it('falls back to the script source once when the server has lost it (NOSCRIPT)', async () => {
    const connection = redis.duplicate();
    const own = createSlidingWindowLimiter(connection);
    const limits = [perMinute('key', 5)];
    try {
      await own.check(enforce(0, limits));
      vi.spyOn(connection, 'evalsha').mockRejectedValueOnce(new Error('NOSCRIPT No matching script.'));
      const eval_ = vi.spyOn(connection, 'eval');
      expect(await own.check(enforce(0, limits))).toMatchObject({ admitted: true, limits: [{ used: 2 }] });
      expect(eval_).toHaveBeenCalledTimes(1);
    } finally {
      connection.disconnect();
    }
  });

  it('lets idle hashes expire after W + B', async () => {
    const limits = [perMinute('key', 5)];
    await limiter.check(enforce(0, limits));
    const ttl = await redis.pttl(limits[0]!.key);
    expect(ttl).toBeGreaterThan(MINUTE);
    expect(ttl).toBeLessThanOrEqual(MINUTE + 6_000);
  });

  it('counts a window whose stored fields are not numbers as empty instead of failing', async () => {
    // Written by something other than the script (an operator's mistake, say): every decision on
    // the hash must not fail until it expires.
    const limits = [perMinute('key', 5)];
    for (let i = 0; i < 3; i++) await limiter.check(enforce(1_000, limits));
    await redis.hset(limits[0]!.key, { o: 'garbage', t: 'x', c: '' });
    const result = await limiter.check(enforce(2_000, limits));
    expect(result.admitted).toBe(true);
    expect(usedOf(result)).toEqual([1]);
    expect(usedOf(await limiter.check(enforce(3_000, limits)))).toEqual([2]);
  });

  it('refuses limits it cannot enforce exactly, before touching Redis', async () => {
    const good = perMinute('key', 5);
    const bad: Array<[string, CheckRequest]> = [
      ['window not a multiple of buckets', enforce(0, [{ ...good, windowMs: 60_001 }])],
      ['fractional cost', enforce(0, [good], 1.5)],
      ['negative cost', enforce(0, [good], -1)],
      ['negative limit', enforce(0, [{ ...good, limit: -1 }])],
      ['no limits', enforce(0, [])],
      ['two limits on one hash', enforce(0, [good, { ...good, name: 'again' }])],
      ['fractional now', enforce(0.5, [good])],
      ['now before 1970', enforce(-1, [good])],
      [
        'event without fields',
        { ...enforce(0, [good]), event: { stream: key('s'), maxLen: 10, fields: {}, when: 'always' } },
      ],
    ];
    for (const [why, request] of bad) {
      await expect(limiter.check(request), why).rejects.toBeInstanceOf(RangeError);
    }
    expect(await redis.exists(good.key)).toBe(0);
  });

  it('answers -1 to window groups that do not add up, and touches nothing', async () => {
    // The encoder never sends these; the script's own guard is what stands between a caller that
    // gets the layout wrong and the counters.
    const source = readFileSync(new URL('../../src/limits/lua/sliding-window.lua', import.meta.url), 'utf8');
    const hash = key('raw');
    const head = (n: number, groups: number) => [n, 1_000, 1, 'enforce', '', '', 1, groups].map(String);
    // One group: one window of a minute in six buckets (current bucket 0), bare names.
    const group = ['1', 'o', 't', 'c', '60000', '6', '0', ''];
    const run = (args: string[]) => redis.eval(source, 1, hash, ...args);
    // Admitted, 1 used, 4 left; bucket 0 counts until (0 + 6 + 1) × 10 s, 69 s after `now`.
    expect(await run([...head(1, 1), ...group, '1', '5'])).toEqual([1, 1, 4, 69_000]);
    await redis.del(hash);
    const malformed: Array<[string, string[]]> = [
      ['a hash naming a group not sent', [...head(1, 1), ...group, '2', '5']],
      ['no group at all', [...head(1, 0), '1', '5']],
      ['a group of no window', [...head(1, 1), '0', '1', '5']],
      ['more windows announced than the groups hold', [...head(2, 1), ...group, '1', '5']],
    ];
    for (const [why, args] of malformed) expect(await run(args), why).toBe(-1);
    expect(await redis.exists(hash)).toBe(0);
  });
});
