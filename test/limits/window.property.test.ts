import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CheckResult, createSlidingWindowLimiter, type LimitSpec } from '../../src/limits/limiter.ts';
import {
  bucketWidth,
  type Decision,
  decide,
  EMPTY_WINDOW,
  type LimitState,
  type Mode,
  type WindowSpec,
  type WindowState,
} from '../../src/limits/window.ts';
import { deleteMatching } from '../../src/redis/client.ts';

const PREFIX = `test:limits:prop:${randomUUID()}:`;
let redis: Redis;

beforeAll(() => {
  redis = new Redis({ host: '127.0.0.1', port: 6379, db: 0 });
});

afterAll(async () => {
  await deleteKeys(PREFIX);
  redis.disconnect();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function deleteKeys(prefix: string): Promise<void> {
  await deleteMatching(redis, [`${prefix}*`]);
}

interface Step {
  readonly delta: number;
  readonly cost: number;
  readonly mode: Mode;
}

/**
 * Where the windows live: each in a hash of its own; all in one hash under their own slots, as
 * enforcement keeps a dimension's windows; or as enforcement keeps a decision's dimensions: several
 * hashes that each hold the same windows with limits of their own (the script reads such hashes'
 * windows once, as one group), and, with two windows or more, a last hash with only the first (a
 * group of its own).
 */
type Layout = 'separate' | 'shared' | 'dimensions';

interface Scenario {
  readonly start: number;
  readonly layout: Layout;
  /** With 'dimensions': how many hashes hold every window. */
  readonly dimensions: number;
  readonly specs: readonly WindowSpec[];
  readonly steps: readonly Step[];
}

// Bucket widths of whole seconds keep each key's real TTL (W + B) far above a run's wall time,
// so Redis never expires a hash the model still holds; the logical clock still jumps freely.
const specArb: fc.Arbitrary<WindowSpec> = fc
  .record({
    limit: fc.integer({ min: 0, max: 20 }),
    buckets: fc.integer({ min: 1, max: 12 }),
    width: fc.integer({ min: 1_000, max: 3_000 }),
  })
  .map(({ limit, buckets, width }) => ({ limit, buckets, windowMs: buckets * width }));

function stepArb(minDelta: number): fc.Arbitrary<Step> {
  return fc.record({
    // Same-ms bursts, sub-bucket moves, bucket-scale moves and gaps beyond W + B (full reset).
    delta: fc.oneof(
      { arbitrary: fc.constant(0), weight: 2 },
      { arbitrary: fc.integer({ min: Math.max(minDelta, -500), max: 500 }), weight: 3 },
      { arbitrary: fc.integer({ min: minDelta, max: 4_000 }), weight: 3 },
      { arbitrary: fc.integer({ min: 0, max: 60_000 }), weight: 1 },
    ),
    cost: fc.oneof({ arbitrary: fc.constant(1), weight: 2 }, fc.integer({ min: 0, max: 6 })),
    mode: fc.oneof({ arbitrary: fc.constant<Mode>('enforce'), weight: 3 }, fc.constant<Mode>('record')),
  });
}

function scenarioArb(minDelta: number, maxSteps: number): fc.Arbitrary<Scenario> {
  return fc.record({
    start: fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_000 + 10_000_000 }),
    layout: fc.constantFrom<Layout>('separate', 'shared', 'dimensions'),
    dimensions: fc.integer({ min: 2, max: 3 }),
    specs: fc.array(specArb, { minLength: 1, maxLength: 3 }),
    steps: fc.array(stepArb(minDelta), { maxLength: maxSteps, size: 'max' }),
  });
}

function expected(decision: Decision, limits: readonly LimitSpec[]): CheckResult {
  const results = decision.limits.map((outcome, k) => ({
    name: limits[k]!.name,
    limit: limits[k]!.limit,
    ...outcome,
  }));
  const violated = limits[decision.violated]?.name;
  return violated === undefined
    ? { admitted: decision.admitted, limits: results }
    : { admitted: decision.admitted, violated, limits: results };
}

/**
 * A window as its hash fields hold it (see sliding-window.lua): bucket b counts field <b>, or `c`
 * when b is the newest bucket, packed into `o` with the oldest as -(oldest * 1024 + newest - oldest)
 * - 1; a plain `o` is an older version's, every bucket under its own field; `t` = 0 is empty.
 * Fields of other slots are left alone; anything of this slot that is neither a bucket nor o, t or
 * c is stray.
 */
function windowOf(hash: Record<string, string>, slot = ''): { window: WindowState; stray: string[] } {
  const p = slot === '' ? '' : `${slot}:`;
  const counts = new Map<number, number>();
  const stray: string[] = [];
  for (const [name, value] of Object.entries(hash)) {
    if (p !== '' && !name.startsWith(p)) continue;
    const rest = name.slice(p.length);
    if (/^\d+$/.test(rest)) counts.set(Number(rest), Number(value));
    else if (!['o', 't', 'c'].includes(rest)) stray.push(name);
  }
  let oldest: number | null = null;
  const packed = hash[`${p}o`];
  const total = Number(hash[`${p}t`] ?? 0);
  if (total === 0) {
    // Empty: an emptied window of a shared hash keeps `o`, and `t` and `c` at 0.
    if (Number(hash[`${p}c`] ?? 0) !== 0) stray.push(`${p}c`);
  } else if (packed !== undefined && Number(packed) < 0) {
    const v = -Number(packed) - 1;
    oldest = Math.floor(v / 1024);
    const hot = Number(hash[`${p}c`] ?? 0);
    if (hot > 0) {
      const newest = oldest + (v % 1024);
      if (counts.has(newest)) stray.push(`${p}${newest}`);
      counts.set(newest, hot);
    }
  } else if (packed !== undefined) {
    oldest = Number(packed);
    if (hash[`${p}c`] !== undefined) stray.push(`${p}c`);
  }
  return { window: { counts, total, oldest }, stray };
}

const sortedCounts = (w: WindowState) => [...w.counts].sort(([a], [b]) => a - b);

interface Applied {
  readonly now: number;
  readonly cost: number;
  readonly decision: Decision;
}

/** The scenario's windows as the limiter is given them (see Layout). */
function limitsOf(scenario: Scenario, runPrefix: string): LimitSpec[] {
  const { layout, specs } = scenario;
  if (layout === 'separate') {
    return specs.map((spec, k) => ({ name: `l${k}`, key: `${runPrefix}${k}`, ...spec }));
  }
  if (layout === 'shared') {
    return specs.map((spec, k) => ({ name: `l${k}`, key: `${runPrefix}shared`, slot: `s${k}`, ...spec }));
  }
  const limits: LimitSpec[] = [];
  for (let d = 0; d < scenario.dimensions; d++) {
    for (const [k, spec] of specs.entries()) {
      // Limits of each hash's own, over the same windows.
      const limit = (spec.limit + 3 * d) % 21;
      limits.push({ name: `d${d}l${k}`, key: `${runPrefix}d${d}`, slot: `s${k}`, ...spec, limit });
    }
  }
  for (const [k, spec] of specs.entries()) {
    // The first window with one bucket instead of several; when it has one already, the hash
    // holds that window alone (a group of its own by its size).
    if (k === 0 && spec.buckets === 1) {
      limits.push({ name: 'odd0', key: `${runPrefix}odd`, slot: 's0', ...spec });
      break;
    }
    const buckets = k === 0 ? 1 : spec.buckets;
    limits.push({ name: `odd${k}`, key: `${runPrefix}odd`, slot: `s${k}`, ...spec, buckets });
  }
  return limits;
}

/**
 * Drives Lua and model side by side; every reply and, at the end, every hash must match. Gives the
 * requests as the model decided them, and every window the limiter was given.
 */
async function runAgainstRedis(
  scenario: Scenario,
  runPrefix: string,
): Promise<{ applied: Applied[]; specs: WindowSpec[] }> {
  const limiter = createSlidingWindowLimiter(redis);
  const limits = limitsOf(scenario, runPrefix);
  const specs: WindowSpec[] = limits.map(({ limit, windowMs, buckets }) => ({ limit, windowMs, buckets }));
  let state: LimitState[] = specs.map((spec) => ({ spec, window: EMPTY_WINDOW }));
  let now = scenario.start;
  const applied: Applied[] = [];
  try {
    for (const step of scenario.steps) {
      now += step.delta;
      const actual = await limiter.check({ now, mode: step.mode, cost: step.cost, limits });
      const model = decide(state, now, step);
      expect(actual).toEqual(expected(model.decision, limits));
      state = model.state;
      applied.push({ now, cost: step.cost, decision: model.decision });
    }
    // Every hash holds exactly its windows' model state, and lives no longer than its longest
    // window needs (W + B).
    for (const key of new Set(limits.map((l) => l.key))) {
      const members = [...limits.entries()].filter(([, l]) => l.key === key);
      const hash = await redis.hgetall(key);
      for (const [k, l] of members) {
        const { window, stray } = windowOf(hash, l.slot);
        expect(stray).toEqual([]);
        const model = state[k]!.window;
        expect({ ...window, counts: sortedCounts(window) }).toEqual({
          ...model,
          counts: sortedCounts(model),
        });
        // An empty window leaves no bucket behind (windowOf read them all, and the model has none);
        // a window alone in its hash leaves nothing at all.
        if (model.oldest === null && members.length === 1) expect(hash).toEqual({});
      }
      const ttl = await redis.pttl(key);
      // A hash whose windows are all empty holds no count, and expires like any other.
      if (Object.keys(hash).length === 0) expect(ttl).toBe(-2);
      else expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(Math.max(...members.map(([, l]) => l.windowMs + bucketWidth(l))));
    }
  } finally {
    await redis.del(...new Set(limits.map((limit) => limit.key)));
  }
  return { applied, specs };
}

/** Max admitted cost in any closed interval of length W: the worst interval ends at an admitted request. */
function maxAdmittedInWindow(applied: readonly Applied[], windowMs: number): number {
  const admitted = applied.filter((a) => a.decision.admitted && a.cost > 0);
  let worst = 0;
  for (const end of admitted) {
    let sum = 0;
    for (const a of admitted) if (a.now >= end.now - windowMs && a.now <= end.now) sum += a.cost;
    worst = Math.max(worst, sum);
  }
  return worst;
}

/** Denials are justified by consumption in (t − W − B, t]: never refused more than B early. */
function assertDenialsJustified(applied: readonly Applied[], specs: readonly WindowSpec[]): void {
  for (const [i, request] of applied.entries()) {
    if (request.decision.admitted) continue;
    const spec = specs[request.decision.violated]!;
    const horizon = request.now - spec.windowMs - bucketWidth(spec);
    let consumed = 0;
    for (const earlier of applied.slice(0, i)) {
      if (earlier.decision.consumed && earlier.now > horizon) consumed += earlier.cost;
    }
    expect(consumed + request.cost).toBeGreaterThan(spec.limit);
  }
}

describe('sliding window: Lua agrees with the pure model', () => {
  it('answers every request exactly like decide() and never admits more than the limit within W', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb(0, 200), async (scenario) => {
        const { applied, specs } = await runAgainstRedis(scenario, `${PREFIX}m${run++}:`);
        for (const spec of specs) {
          expect(maxAdmittedInWindow(applied, spec.windowMs)).toBeLessThanOrEqual(spec.limit);
        }
        assertDenialsJustified(applied, specs);
      }),
      { numRuns: 100 },
    );
  }, 30_000);

  it('still agrees when clocks of different callers go backwards', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb(-5_000, 100), async (scenario) => {
        await runAgainstRedis(scenario, `${PREFIX}s${run++}:`);
      }),
      { numRuns: 50 },
    );
  }, 30_000);
});

/** The hash's TTL right after a check at `start`, and right after one at `later`, 30 ms on. */
async function ttlsAcross(limits: LimitSpec[], start: number, later: number): Promise<[number, number]> {
  const limiter = createSlidingWindowLimiter(redis);
  await limiter.check({ now: start, mode: 'enforce', cost: 1, limits });
  const first = await redis.pttl(limits[0]!.key);
  await sleep(30);
  await limiter.check({ now: later, mode: 'enforce', cost: 1, limits });
  return [first, await redis.pttl(limits[0]!.key)];
}

describe('sliding window: key lifetime', () => {
  it('sets the TTL to W + B when a bucket appears and leaves it alone while the bucket fills', async () => {
    const limiter = createSlidingWindowLimiter(redis);
    const spec: LimitSpec = { name: 'l', key: `${PREFIX}ttl`, limit: 100, windowMs: 60_000, buckets: 6 };
    const full = spec.windowMs + bucketWidth(spec);
    const start = 1_700_000_000_000;
    const check = (now: number, cost = 1) => limiter.check({ now, mode: 'enforce', cost, limits: [spec] });
    try {
      await check(start);
      const first = await redis.pttl(spec.key);
      expect(first).toBeGreaterThan(full - 1_000);
      await sleep(30);
      // Same bucket: the newest bucket still dies when it did, so the TTL must not move.
      await check(start + 5_000);
      await check(start + 6_000, 0);
      const same = await redis.pttl(spec.key);
      expect(same).toBeLessThanOrEqual(first - 20);
      // A new bucket counts until W + B after it appears: the key must live that long again.
      await check(start + 10_000);
      expect(await redis.pttl(spec.key)).toBeGreaterThan(same);
      expect(await redis.pttl(spec.key)).toBeLessThanOrEqual(full);
    } finally {
      await redis.del(spec.key);
    }
  });
  it('keeps a shared hash alive for its longest window, whichever window opens a bucket', async () => {
    const key = `${PREFIX}ttl-shared`;
    const minute: LimitSpec = { name: 'm', key, slot: 'm', limit: 100, windowMs: 60_000, buckets: 6 };
    const day: LimitSpec = { name: 'd', key, slot: 'd', limit: 1_000, windowMs: 86_400_000, buckets: 24 };
    const longest = day.windowMs + bucketWidth(day);
    const start = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000);
    try {
      // Only the minute window opens a bucket the second time (same hour): the TTL must not drop
      // to its W + B, and need not move at all, since the day's stored bucket outlives it.
      const [first, ttl] = await ttlsAcross([minute, day], start, start + 20_000);
      expect(first).toBeGreaterThan(longest - 1_000);
      expect(ttl).toBeGreaterThan(longest - 1_000);
      expect(ttl).toBeLessThanOrEqual(first - 20);
      // The newest bucket's count sits in `c` (its index packed into `o`); the one before moved
      // to its own field.
      const packed = (oldest: number, newest: number) => String(-(oldest * 1024 + newest - oldest) - 1);
      expect(await redis.hgetall(key)).toEqual({
        'm:o': packed(start / 10_000, start / 10_000 + 2),
        'm:t': '2',
        'm:c': '1',
        [`m:${start / 10_000}`]: '1',
        'd:o': packed(start / 3_600_000, start / 3_600_000),
        'd:t': '2',
        'd:c': '2',
      });
    } finally {
      await redis.del(key);
    }
  });

  it('keeps a window emptied in a shared hash at the start of the hash', async () => {
    // A small hash is a listpack that Redis searches from its start: the fields read on every call
    // stay there, also after the minute window went idle and was emptied.
    const limiter = createSlidingWindowLimiter(redis);
    const key = `${PREFIX}emptied`;
    const minute: LimitSpec = { name: 'm', key, slot: 'm', limit: 100, windowMs: 60_000, buckets: 6 };
    const day: LimitSpec = { name: 'd', key, slot: 'd', limit: 1_000, windowMs: 86_400_000, buckets: 24 };
    const start = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000);
    const check = (now: number) => limiter.check({ now, mode: 'enforce', cost: 1, limits: [minute, day] });
    try {
      await check(start);
      await check(start + 10_000);
      expect(await redis.hkeys(key)).toEqual([
        'm:c',
        'm:t',
        'm:o',
        'd:c',
        'd:t',
        'd:o',
        `m:${start / 10_000}`,
      ]);
      const result = await check(start + 180_000);
      expect(result.limits.map((l) => l.used)).toEqual([1, 3]);
      expect(await redis.hkeys(key)).toEqual(['m:c', 'm:t', 'm:o', 'd:c', 'd:t', 'd:o']);
      expect(await redis.hmget(key, 'm:c', 'm:t', 'd:c', 'd:t')).toEqual(['1', '1', '3', '3']);
    } finally {
      await redis.del(key);
    }
  });

  it('moves the TTL when a new bucket could outlive the buckets already stored', async () => {
    const key = `${PREFIX}ttl-close`;
    // Both one minute long: a new 1 s bucket counts for 61 s, the stored 10 s bucket only promises
    // a little over 60 s, so the TTL has to be set again.
    const coarse: LimitSpec = { name: 'c', key, slot: 'c', limit: 100, windowMs: 60_000, buckets: 6 };
    const fine: LimitSpec = { name: 'f', key, slot: 'f', limit: 100, windowMs: 60_000, buckets: 60 };
    const longest = coarse.windowMs + bucketWidth(coarse);
    const start = 1_700_000_000_000 - (1_700_000_000_000 % 10_000);
    try {
      const [first, ttl] = await ttlsAcross([coarse, fine], start, start + 2_000);
      expect(first).toBeGreaterThan(longest - 1_000);
      expect(ttl).toBeGreaterThan(first - 20);
      expect(ttl).toBeLessThanOrEqual(longest);
    } finally {
      await redis.del(key);
    }
  });

  it('reads hashes written before the newest bucket was kept apart', async () => {
    const limiter = createSlidingWindowLimiter(redis);
    const key = `${PREFIX}layout`;
    const spec: LimitSpec = { name: 'm', key, slot: 'm', limit: 10, windowMs: 60_000, buckets: 6 };
    const start = 1_700_000_000_000;
    const b = start / 10_000;
    const check = async (now: number) =>
      (await limiter.check({ now, mode: 'enforce', cost: 1, limits: [spec] })).limits[0]!.used;
    try {
      // Three calls in bucket b and two in b + 1, every count under its bucket's own field.
      await redis.hset(key, { 'm:o': String(b), 'm:t': '5', [`m:${b}`]: '3', [`m:${b + 1}`]: '2' });
      expect(await check(start + 15_000)).toBe(6);
      expect(await check(start + 25_000)).toBe(7);
      // Bucket b leaves the window: its 3 go, b + 1 keeps 2 + 1 across its field and `c`.
      expect(await check(start + 70_000)).toBe(5);
      expect(windowOf(await redis.hgetall(key), 'm').window).toEqual({
        oldest: b + 1,
        total: 5,
        counts: new Map([
          [b + 1, 3],
          [b + 2, 1],
          [b + 7, 1],
        ]),
      });
      // Every old bucket expires, the old layout's included.
      expect(await check(start + 140_000)).toBe(1);
      expect(await redis.hgetall(key)).toEqual({
        'm:o': String(-((b + 14) * 1024) - 1),
        'm:t': '1',
        'm:c': '1',
      });
    } finally {
      await redis.del(key);
    }
  });

  it('keeps an old hash in its old form while it holds a bucket ahead of the clock', async () => {
    const limiter = createSlidingWindowLimiter(redis);
    const key = `${PREFIX}layout-ahead`;
    const spec: LimitSpec = { name: 'm', key, slot: 'm', limit: 10, windowMs: 60_000, buckets: 6 };
    const start = 1_700_000_000_000;
    const b = start / 10_000;
    const check = async (now: number) =>
      (await limiter.check({ now, mode: 'enforce', cost: 1, limits: [spec] })).limits[0]!.used;
    try {
      // A caller with a clock 20 s ahead already counted in bucket b + 2.
      await redis.hset(key, { 'm:o': String(b), 'm:t': '2', [`m:${b}`]: '1', [`m:${b + 2}`]: '1' });
      expect(await check(start + 15_000)).toBe(3);
      expect(await redis.hmget(key, 'm:o', 'm:c', `m:${b + 1}`)).toEqual([String(b), null, '1']);
      // Once the clock reaches that bucket, its count moves into `c`; the next bucket moves it back.
      expect(await check(start + 25_000)).toBe(4);
      expect(await redis.hmget(key, 'm:o', 'm:c', `m:${b + 2}`)).toEqual([
        String(-(b * 1024 + 2) - 1),
        '2',
        null,
      ]);
      expect(await check(start + 35_000)).toBe(5);
      expect(windowOf(await redis.hgetall(key), 'm')).toEqual({
        window: {
          oldest: b,
          total: 5,
          counts: new Map([
            [b, 1],
            [b + 1, 1],
            [b + 2, 2],
            [b + 3, 1],
          ]),
        },
        stray: [],
      });
    } finally {
      await redis.del(key);
    }
  });

  it('refuses two windows in one place of a hash', async () => {
    const limiter = createSlidingWindowLimiter(redis);
    const key = `${PREFIX}clash`;
    const a: LimitSpec = { name: 'a', key, limit: 1, windowMs: 1_000, buckets: 1 };
    const check = (limits: LimitSpec[]) =>
      limiter.check({ now: 1_700_000_000_000, mode: 'enforce', cost: 1, limits });
    await expect(check([a, { ...a, name: 'b' }])).rejects.toThrow(/distinct, non-empty slots/);
    await expect(check([a, { ...a, name: 'b', slot: 'x' }])).rejects.toThrow(/distinct, non-empty slots/);
    await expect(
      check([
        { ...a, slot: 'x' },
        { ...a, name: 'b', slot: 'x' },
      ]),
    ).rejects.toThrow(/distinct/);
    await expect(check([{ ...a, slot: 'x:y' }])).rejects.toThrow(/slot must be/);
    expect(await redis.exists(key)).toBe(0);
  });
});

describe('sliding window: pure model', () => {
  it('reports resetMs as the exact ms at which remaining rises or the same request would fit', () => {
    fc.assert(
      fc.property(scenarioArb(0, 60), (scenario) => {
        let state: LimitState[] = scenario.specs.map((spec) => ({ spec, window: EMPTY_WINDOW }));
        let now = scenario.start;
        for (const step of scenario.steps) {
          now += step.delta;
          const { decision, state: next } = decide(state, now, step);
          state = next;
          for (const [k, outcome] of decision.limits.entries()) {
            const spec = scenario.specs[k]!;
            const usedAt = (t: number) =>
              decide(state, t, { cost: 0, mode: 'enforce' }).decision.limits[k]!.used;
            const usedBefore = outcome.used - (decision.consumed ? step.cost : 0);
            const fits = usedBefore + step.cost <= spec.limit;
            if (step.cost > spec.limit) {
              expect(outcome.resetMs).toBe(spec.windowMs);
            } else if (outcome.used === 0) {
              expect(outcome.resetMs).toBe(0);
            } else {
              const target = fits ? outcome.used - 1 : spec.limit - step.cost;
              expect(usedAt(now + outcome.resetMs - 1)).toBeGreaterThan(target);
              expect(usedAt(now + outcome.resetMs)).toBeLessThanOrEqual(target);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
