import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { EncodedArgs, RespClient } from '../redis/resp-client.ts';
import { bucketIndex, costProblem, type Mode, specProblem } from './window.ts';

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
   * and `<slot>:c` (letters and digits; default '' = the bare names, for a window alone in its
   * hash). Windows sharing a hash cost one read and one write for all of them instead of one each.
   */
  readonly slot?: string;
  readonly limit: number;
  readonly windowMs: number;
  /** Bucket count N: the window may over-count by up to windowMs / N (see window.ts). */
  readonly buckets: number;
  /**
   * Optional, for a caller that checks the same windows over and over under different keys: one
   * object shared by every spec of a hash whose windows (slots, limits, lengths, bucket counts, in
   * order) are the same each time. The limiter keeps those windows' encoded arguments with it and
   * reuses them while their buckets last; a mismatch only costs a fresh encoding.
   */
  readonly shape?: object;
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

interface SlotNames {
  p: string;
  o: string;
  t: string;
  c: string;
}

// A decision names 30 fields; built afresh each time, they were a good part of its garbage.
const slotNameCache = new Map<string, SlotNames>();

function slotNames(slot: string): SlotNames {
  let names = slotNameCache.get(slot);
  if (!names) {
    const p = slot === '' ? '' : `${slot}:`;
    names = { p, o: `${p}o`, t: `${p}t`, c: `${p}c` };
    if (slotNameCache.size > 1_000) slotNameCache.clear();
    slotNameCache.set(slot, names);
  }
  return names;
}

interface Encoded {
  keys: string[];
  /** The script's arguments in order: runs of plain strings and runs encoded before. */
  args: Array<string[] | EncodedArgs>;
  /** order[j] = where the caller's j-th limit sits in the script's numbering (grouped by hash). */
  order: number[];
}

// Limits, window lengths and bucket counts repeat from call to call, and so does each window's
// current bucket for as long as it lasts: their decimal strings are kept rather than made anew.
const integerTexts = new Map<number, string>();
function integerText(n: number): string {
  let text = integerTexts.get(n);
  if (text === undefined) {
    text = String(n);
    if (integerTexts.size >= 4_096) integerTexts.clear();
    integerTexts.set(n, text);
  }
  return text;
}

const currentBuckets = new Map<number, { index: number; text: string }>();
function currentBucketText(now: number, width: number): string {
  const index = bucketIndex(now, width);
  const last = currentBuckets.get(width);
  if (last?.index === index) return last.text;
  const text = String(index);
  if (currentBuckets.size >= 1_024) currentBuckets.clear();
  currentBuckets.set(width, { index, text });
  return text;
}

// Each window's current bucket, between encode's two passes over the windows (encode runs start
// to end without yielding, so one array serves every call).
const currents: string[] = [];

/** A group's windows as last encoded, kept with the caller's shape object (LimitSpec.shape). */
interface EncodedGroup {
  slots: string[];
  windowMs: number[];
  buckets: number[];
  currents: string[];
  encoded: EncodedArgs;
}
const encodedGroups = new WeakMap<object, EncodedGroup>();

/**
 * A group of windows (j in `members`) as the script reads it: count, names, then parameters. The
 * limits are not part of it: hashes with the same windows share one group and send only theirs.
 */
function groupArgs(limits: readonly LimitSpec[], members: readonly number[]): string[] {
  const m = members.length;
  const args = new Array<string>(1 + 7 * m);
  args[0] = integerText(m);
  let a = 1;
  for (const j of members) {
    const names = slotNames(limits[j]!.slot ?? '');
    args[a++] = names.o;
    args[a++] = names.t;
    args[a++] = names.c;
  }
  for (const j of members) {
    const spec = limits[j]!;
    args[a++] = integerText(spec.windowMs);
    args[a++] = integerText(spec.buckets);
    args[a++] = currents[j]!;
    args[a++] = slotNames(spec.slot ?? '').p;
  }
  return args;
}

/** The group encoded before, if `shape` holds exactly these windows at these buckets. */
function reusable(
  limits: readonly LimitSpec[],
  members: readonly number[],
  shape: object,
): EncodedArgs | null {
  const kept = encodedGroups.get(shape);
  if (!kept || kept.slots.length !== members.length) return null;
  for (let i = 0; i < members.length; i++) {
    const j = members[i]!;
    const spec = limits[j]!;
    if (
      kept.currents[i] !== currents[j] ||
      kept.windowMs[i] !== spec.windowMs ||
      kept.buckets[i] !== spec.buckets ||
      kept.slots[i] !== (spec.slot ?? '')
    ) {
      return null;
    }
  }
  return kept.encoded;
}

function encodeGroup(limits: readonly LimitSpec[], members: readonly number[]): string[] | EncodedArgs {
  const shape = limits[members[0]!]!.shape;
  let shared = shape !== undefined;
  for (const j of members) if (limits[j]!.shape !== shape) shared = false;
  if (!shared) return groupArgs(limits, members);
  const kept = reusable(limits, members, shape!);
  if (kept) return kept;
  const encoded = new EncodedArgs(groupArgs(limits, members));
  encodedGroups.set(shape!, {
    slots: members.map((j) => limits[j]!.slot ?? ''),
    windowMs: members.map((j) => limits[j]!.windowMs),
    buckets: members.map((j) => limits[j]!.buckets),
    currents: members.map((j) => currents[j]!),
    encoded,
  });
  return encoded;
}

/** Whether two hashes' windows (j in `a`, j in `b`) have the same slots, lengths and buckets. */
function sameWindows(limits: readonly LimitSpec[], a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = limits[a[i]!]!;
    const y = limits[b[i]!]!;
    if ((x.slot ?? '') !== (y.slot ?? '') || x.windowMs !== y.windowMs || x.buckets !== y.buckets) {
      return false;
    }
  }
  return true;
}

function encode(request: CheckRequest): Encoded {
  const { now, mode, cost, limits, event } = request;
  // Not before 1970: the script tells its stored bucket indexes from an older version's by sign.
  if (!Number.isSafeInteger(now) || now < 0) {
    throw new RangeError('now must be a non-negative integer number of ms');
  }
  const problem = costProblem(cost);
  if (problem) throw new RangeError(problem);
  const n = limits.length;
  if (n === 0) throw new RangeError('at least one limit is required');
  // The script takes windows grouped by hash, hashes in order of first appearance. A handful of
  // hashes and windows: scans beat Maps here, and arrays are made at their final size where it is
  // known (grown by pushes, they were most of a decision's garbage).
  const keys: string[] = [];
  const hashOf = new Array<number>(n);
  for (let j = 0; j < n; j++) {
    const spec = limits[j]!;
    const specError = specProblem(spec);
    if (specError) throw new RangeError(`limit ${spec.name}: ${specError}`);
    const slot = spec.slot ?? '';
    if (!SLOT.test(slot)) throw new RangeError(`limit ${spec.name}: slot must be up to 16 letters or digits`);
    let g = keys.length - 1;
    if (g < 0 || keys[g] !== spec.key) g = keys.indexOf(spec.key);
    if (g === -1) g = keys.push(spec.key) - 1;
    hashOf[j] = g;
    // Two windows in one place would read the same counts twice and double-charge them; the bare
    // names would collide with any slot's bucket fields only through a caller's mistake, so a hash
    // holds either one window with the empty slot or windows that all have slots.
    for (let i = 0; i < j; i++) {
      if (hashOf[i] !== g) continue;
      const other = limits[i]!.slot ?? '';
      if (other === slot || other === '' || slot === '') {
        throw new RangeError('windows sharing a key need distinct, non-empty slots');
      }
    }
    currents[j] = currentBucketText(now, spec.windowMs / spec.buckets);
  }
  let fieldCount = 0;
  if (event) {
    if (!Number.isSafeInteger(event.maxLen) || event.maxLen < 1) {
      throw new RangeError('event.maxLen must be a positive integer');
    }
    for (const _ in event.fields) fieldCount++;
    if (fieldCount === 0) throw new RangeError('event.fields must not be empty');
  }
  const h = keys.length;
  const order = new Array<number>(n);
  const membersOf = new Array<number[]>(h);
  // Hashes with the same windows share one group (sliding-window.lua): `groups` holds each group's
  // first hash's windows, `groupOf` each hash's group. A handful of hashes: scans, not Maps.
  const groups: number[][] = [];
  const groupOf = new Array<number>(h);
  let k = 0;
  for (let g = 0; g < h; g++) {
    // The script builds no strings on its common path: names and bucket indexes come from here.
    const members: number[] = [];
    for (let j = 0; j < n; j++) {
      if (hashOf[j] !== g) continue;
      members.push(j);
      order[j] = k++;
    }
    membersOf[g] = members;
    let q = 0;
    while (q < groups.length && !sameWindows(limits, groups[q]!, members)) q++;
    if (q === groups.length) groups.push(members);
    groupOf[g] = q;
  }
  const s = groups.length;
  const args: Array<string[] | EncodedArgs> = new Array(s + (event ? 3 : 2));
  args[0] = [
    integerText(n),
    String(now),
    integerText(cost),
    mode,
    event?.when ?? '',
    event ? integerText(event.maxLen) : '',
    integerText(h),
    integerText(s),
  ];
  for (let q = 0; q < s; q++) args[q + 1] = encodeGroup(limits, groups[q]!);
  const perHash = new Array<string>(h + n);
  let a = 0;
  for (let g = 0; g < h; g++) {
    perHash[a++] = integerText(groupOf[g]! + 1);
    for (const j of membersOf[g]!) perHash[a++] = integerText(limits[j]!.limit);
  }
  args[s + 1] = perHash;
  if (event) {
    const fields = new Array<string>(2 * fieldCount);
    let f = 0;
    for (const field in event.fields) {
      fields[f++] = field;
      fields[f++] = event.fields[field]!;
    }
    args[s + 2] = fields;
    keys.push(event.stream);
  }
  return { keys, args, order };
}

function decode(reply: unknown, request: CheckRequest, order: readonly number[]): CheckResult {
  const { limits, cost, mode } = request;
  if (typeof reply === 'number') throw scriptError(reply);
  if (!Array.isArray(reply) || reply.length !== 1 + 3 * limits.length) {
    throw new Error('sliding-window.lua: unexpected reply shape');
  }
  for (const value of reply) {
    if (typeof value !== 'number') throw new Error('sliding-window.lua: unexpected reply value');
  }
  const numbers = reply as number[];
  const admitted = numbers[0] === 1;
  const consumed = cost > 0 && (admitted || mode === 'record');
  let violated: string | undefined;
  const results = limits.map((spec, j) => {
    const at = 1 + 3 * order[j]!;
    const used = numbers[at]!;
    // The script's own test, in the caller's order: the first window the request did not fit.
    if (!admitted && violated === undefined && (consumed ? used : used + cost) > spec.limit) {
      violated = spec.name;
    }
    return {
      name: spec.name,
      limit: spec.limit,
      used,
      remaining: numbers[at + 1]!,
      resetMs: numbers[at + 2]!,
    };
  });
  return violated === undefined ? { admitted, limits: results } : { admitted, violated, limits: results };
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * Runs the script on either client: ioredis, as most of Gatehouse uses, or the small pipelined
 * client the enforcement decision uses (src/redis/resp-client.ts explains why).
 */
function scriptRunner(redis: Redis | RespClient): {
  evalsha(keys: string[], args: Encoded['args']): Promise<unknown>;
  eval(keys: string[], args: Encoded['args']): Promise<unknown>;
} {
  if (redis instanceof RespClient) {
    const evalsha = ['EVALSHA', SHA];
    const eval_ = ['EVAL', LUA];
    return {
      evalsha: (keys, args) => redis.callParts([evalsha, [String(keys.length)], keys, ...args]),
      eval: (keys, args) => redis.callParts([eval_, [String(keys.length)], keys, ...args]),
    };
  }
  const flat = (args: Encoded['args']) =>
    args.flatMap((run) => (run instanceof EncodedArgs ? run.args : run));
  return {
    evalsha: (keys, args) => redis.evalsha(SHA, keys.length, ...keys, ...flat(args)),
    eval: (keys, args) => redis.eval(LUA, keys.length, ...keys, ...flat(args)),
  };
}

export function createSlidingWindowLimiter(redis: Redis | RespClient): SlidingWindowLimiter {
  // The first call sends the source (EVAL caches it server-side); later calls send only the SHA.
  // A server that lost its cache (restart, failover, SCRIPT FLUSH) answers NOSCRIPT once, and we
  // resend the source: one command per check in steady state, two only right after such an event.
  const script = scriptRunner(redis);
  let cached = false;

  async function run(keys: string[], args: Encoded['args']): Promise<unknown> {
    if (!cached) {
      const reply = await script.eval(keys, args);
      cached = true;
      return reply;
    }
    try {
      return await script.evalsha(keys, args);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return script.eval(keys, args);
    }
  }

  return {
    async check(request) {
      const { keys, args, order } = encode(request);
      return decode(await run(keys, args), request, order);
    },
  };
}
