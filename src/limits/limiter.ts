import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { costProblem, type Mode, specProblem } from './window.ts';

/**
 * Multi-dimension sliding-window limiter: one Redis command per check (EVALSHA of
 * `lua/sliding-window.lua`), deciding every (dimension, window) at once and consuming all or
 * nothing. The algorithm and its error bound are documented in `window.ts`.
 *
 * Keys are supplied by the caller, never built here. In Redis Cluster a script may only touch keys
 * of one slot, so every hash of one request and its usage stream must share a hash tag
 * (`{...}`); the key-naming module is responsible for that.
 */

const LUA = readFileSync(new URL('./lua/sliding-window.lua', import.meta.url), 'utf8');
const SHA = createHash('sha1').update(LUA).digest('hex');

export interface LimitSpec {
  /** Reported back as `violated`, so callers can tell which dimension refused. */
  readonly name: string;
  /** The Redis hash holding this window's buckets; windows may share one under different slots. */
  readonly key: string;
  /**
   * Where in the hash the window lives: its fields are `<slot>:<bucket>`, `<slot>:t`, `<slot>:o`
   * (letters and digits; default '' = the bare names, for a window alone in its hash). Windows
   * sharing a hash cost one read and one write for all of them instead of one each.
   */
  readonly slot?: string;
  readonly limit: number;
  readonly windowMs: number;
  /** Bucket count N: the window may over-count by up to windowMs / N (see window.ts). */
  readonly buckets: number;
}

export interface UsageEvent {
  readonly stream: string;
  /** Approximate MAXLEN (~), so trimming stays O(1) amortised. */
  readonly maxLen: number;
  readonly fields: Readonly<Record<string, string>>;
  readonly when: 'admitted' | 'always';
}

export interface CheckRequest {
  /** Ms since the epoch; passed in so every gateway node and every test controls the clock. */
  readonly now: number;
  readonly mode: Mode;
  readonly cost: number;
  readonly limits: readonly LimitSpec[];
  readonly event?: UsageEvent;
}

export interface LimitResult {
  readonly name: string;
  readonly limit: number;
  readonly used: number;
  readonly remaining: number;
  readonly resetMs: number;
}

export interface CheckResult {
  readonly admitted: boolean;
  readonly violated?: string;
  readonly limits: readonly LimitResult[];
}

export interface SlidingWindowLimiter {
  check(request: CheckRequest): Promise<CheckResult>;
}

/** Negative script replies: the only code is malformed arguments, which `encode` should rule out. */
function scriptError(code: number): Error {
  return new Error(
    code === -1 ? 'sliding-window.lua: malformed arguments' : `sliding-window.lua: code ${code}`,
  );
}

const SLOT = /^[A-Za-z0-9]{0,16}$/;

function encode(request: CheckRequest): { keys: string[]; args: string[] } {
  const { now, mode, cost, limits, event } = request;
  if (!Number.isSafeInteger(now)) throw new RangeError('now must be an integer number of ms');
  const problem = costProblem(cost);
  if (problem) throw new RangeError(problem);
  if (limits.length === 0) throw new RangeError('at least one limit is required');
  const keys: string[] = [];
  // Hash index (1-based, as the script sees KEYS) and the slots already placed in it.
  const hashes = new Map<string, { index: number; slots: string[] }>();
  const args = [String(limits.length), String(now), String(cost), mode, event?.when ?? '', '', '', ''];
  let windows = '';
  for (const spec of limits) {
    const specError = specProblem(spec);
    if (specError) throw new RangeError(`limit ${spec.name}: ${specError}`);
    const slot = spec.slot ?? '';
    if (!SLOT.test(slot)) throw new RangeError(`limit ${spec.name}: slot must be up to 16 letters or digits`);
    let hash = hashes.get(spec.key);
    if (!hash) {
      keys.push(spec.key);
      hash = { index: keys.length, slots: [] };
      hashes.set(spec.key, hash);
    }
    // Two windows in one place would read the same counts twice and double-charge them; the bare
    // names would collide with any slot's bucket fields only through a caller's mistake, so a hash
    // holds either one window with the empty slot or windows that all have slots.
    if (hash.slots.includes(slot) || (hash.slots.length > 0 && (slot === '' || hash.slots.includes('')))) {
      throw new RangeError('windows sharing a key need distinct, non-empty slots');
    }
    hash.slots.push(slot);
    windows += `${hash.index},${slot},${spec.limit},${spec.windowMs},${spec.buckets};`;
  }
  args[6] = String(keys.length);
  args[7] = windows;
  if (event) {
    if (!Number.isSafeInteger(event.maxLen) || event.maxLen < 1) {
      throw new RangeError('event.maxLen must be a positive integer');
    }
    const entries = Object.entries(event.fields);
    if (entries.length === 0) throw new RangeError('event.fields must not be empty');
    keys.push(event.stream);
    args[5] = String(event.maxLen);
    for (const [field, value] of entries) args.push(field, value);
  }
  return { keys, args };
}

function decode(reply: unknown, limits: readonly LimitSpec[]): CheckResult {
  if (typeof reply === 'number') throw scriptError(reply);
  if (!Array.isArray(reply) || reply.length !== 2 + 3 * limits.length) {
    throw new Error('sliding-window.lua: unexpected reply shape');
  }
  const numbers = reply.map((value: unknown) => {
    if (typeof value !== 'number') throw new Error('sliding-window.lua: unexpected reply value');
    return value;
  });
  const results = limits.map((spec, k) => ({
    name: spec.name,
    limit: spec.limit,
    used: numbers[2 + 3 * k]!,
    remaining: numbers[3 + 3 * k]!,
    resetMs: numbers[4 + 3 * k]!,
  }));
  const admitted = numbers[0] === 1;
  const violated = limits[numbers[1]!]?.name;
  return violated === undefined ? { admitted, limits: results } : { admitted, violated, limits: results };
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

export function createSlidingWindowLimiter(redis: Redis): SlidingWindowLimiter {
  // The first call sends the source (EVAL caches it server-side); later calls send only the SHA.
  // A server that lost its cache (restart, failover, SCRIPT FLUSH) answers NOSCRIPT once, and we
  // resend the source: one command per check in steady state, two only right after such an event.
  let cached = false;

  async function run(keys: string[], args: string[]): Promise<unknown> {
    if (!cached) {
      const reply = await redis.eval(LUA, keys.length, ...keys, ...args);
      cached = true;
      return reply;
    }
    try {
      return await redis.evalsha(SHA, keys.length, ...keys, ...args);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return redis.eval(LUA, keys.length, ...keys, ...args);
    }
  }

  return {
    async check(request) {
      const { keys, args } = encode(request);
      return decode(await run(keys, args), request.limits);
    },
  };
}
