/**
 * Bucketed sliding window: the pure reference model of `lua/sliding-window.lua`.
 *
 * A window of length W (ms) is split into N buckets of width B = W / N; an event at time s (ms)
 * lands in bucket ⌊s / B⌋. A request at time t counts every bucket that overlaps [t − W, t]: the
 * current, partly elapsed bucket ⌊t / B⌋ and the N whole buckets before it (N + 1 buckets in all;
 * counting only N − 1 before the current one would forget events up to B younger than W).
 *
 * Error bound, with `now` non-decreasing per key (the only error is on the strict side):
 *
 * - Never more than the limit in any window. An event at s with t − W ≤ s ≤ t has
 *   ⌊s / B⌋ ≥ ⌊(t − W) / B⌋ = ⌊t / B⌋ − N, so it is counted at t. A request admitted at t therefore
 *   brings the admitted cost stamped in [t − W, t] (itself included) to at most `limit`. Any closed
 *   interval of length W ends at or after its last admitted request t and starts at or after t − W,
 *   so it holds at most `limit` admitted cost — bursts timed to a reset gain nothing.
 * - At most B too strict. An event at s is counted until (⌊s / B⌋ + N + 1)·B = s + W + (B − s mod B),
 *   i.e. for an effective window in (W, W + B]. A request denied at t is over the limit counting
 *   only events in (t − W − B, t]: a caller is let back in at most B later than an exact sliding
 *   window of length W would.
 *
 * If `now` goes backwards (clock skew between gateway nodes), a request is judged against the
 * current total, which may include buckets newer than its own (an over-count), and it is written
 * no earlier than the oldest live bucket (so it expires late, never early). What skew can lose:
 * buckets already expired by a later clock are gone, so a request stamped δ ms behind the latest
 * one misses events from its own [t − W, t − W + δ). Keep gateway clocks within a few ms.
 */

export type Mode = 'enforce' | 'record';

export interface WindowSpec {
  readonly limit: number;
  readonly windowMs: number;
  readonly buckets: number;
}

/**
 * What one window's Redis fields hold: bucket index → count, plus the running total (`t`) and the
 * oldest non-empty bucket (`o`); the script keeps the newest bucket's count in a field of its own
 * (`c`, see sliding-window.lua), which does not change these counts. An absent hash is the
 * empty window; a window whose total drops to 0 loses its buckets (alone in its hash, the hash).
 */
export interface WindowState {
  readonly counts: ReadonlyMap<number, number>;
  readonly total: number;
  readonly oldest: number | null;
}

export interface LimitState {
  readonly spec: WindowSpec;
  readonly window: WindowState;
}

export interface CheckInput {
  readonly cost: number;
  readonly mode: Mode;
}

export interface LimitOutcome {
  /** Count after this request (includes its cost only if it was consumed). */
  readonly used: number;
  readonly remaining: number;
  readonly resetMs: number;
}

export interface Decision {
  readonly admitted: boolean;
  /** Index of the first limit the request does not fit, or -1. */
  readonly violated: number;
  /** Whether the cost was added to every window (admitted, or `record` mode; never for cost 0). */
  readonly consumed: boolean;
  readonly limits: readonly LimitOutcome[];
}

/** Caps the Lua walk over one hash (at most N + 1 fields) so one check stays well under a millisecond. */
export const MAX_BUCKETS = 1_000;

export const EMPTY_WINDOW: WindowState = { counts: new Map(), total: 0, oldest: null };

function isNonNegativeInteger(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** Why a spec cannot be enforced exactly, or null. B must be a whole number of ms for the bound to hold. */
export function specProblem(spec: WindowSpec): string | null {
  if (!isNonNegativeInteger(spec.limit)) return 'limit must be a non-negative integer';
  if (!isNonNegativeInteger(spec.windowMs) || spec.windowMs === 0) {
    return 'windowMs must be a positive integer';
  }
  if (!Number.isInteger(spec.buckets) || spec.buckets < 1 || spec.buckets > MAX_BUCKETS) {
    return `buckets must be an integer in 1..${MAX_BUCKETS}`;
  }
  if (spec.windowMs % spec.buckets !== 0) return 'windowMs must be a multiple of buckets';
  return null;
}

export function costProblem(cost: number): string | null {
  return isNonNegativeInteger(cost) ? null : 'cost must be a non-negative integer';
}

export function bucketWidth(spec: WindowSpec): number {
  return spec.windowMs / spec.buckets;
}

/** ⌊now / width⌋ without float division, whose rounding can push a quotient just below k up to k. */
export function bucketIndex(now: number, width: number): number {
  const offset = ((now % width) + width) % width;
  return (now - offset) / width;
}

/** Drops buckets older than `current − N`; amortised O(1) because `oldest` only moves forward. */
function expire(window: WindowState, current: number, n: number): WindowState {
  const cutoff = current - n;
  if (window.oldest === null || window.oldest >= cutoff) return window;
  // Every field lies in [oldest, oldest + N], so a larger gap means nothing survives.
  if (cutoff - window.oldest > n) return EMPTY_WINDOW;
  const counts = new Map(window.counts);
  let total = window.total;
  let oldest = window.oldest;
  for (; oldest < cutoff; oldest++) {
    const count = counts.get(oldest);
    if (count !== undefined) {
      total -= count;
      counts.delete(oldest);
    }
  }
  if (total <= 0) return EMPTY_WINDOW;
  while (!counts.has(oldest)) oldest++;
  return { counts, total, oldest };
}

function add(window: WindowState, current: number, cost: number): WindowState {
  // A skewed, earlier `now` must not write below `oldest`: that field would never be walked.
  const bucket = window.oldest === null ? current : Math.max(current, window.oldest);
  const counts = new Map(window.counts);
  counts.set(bucket, (counts.get(bucket) ?? 0) + cost);
  return { counts, total: window.total + cost, oldest: window.oldest ?? bucket };
}

/** Ms until the window's count is at most `target`, expiring oldest buckets first. */
function msUntilAtMost(window: WindowState, spec: WindowSpec, target: number, now: number): number {
  const width = bucketWidth(spec);
  let bucket = window.oldest ?? 0;
  let freed = 0;
  const need = window.total - target;
  // Bounded by the N + 1 live fields even if the state were inconsistent.
  for (let step = 0; step <= spec.buckets; step++, bucket++) {
    freed += window.counts.get(bucket) ?? 0;
    if (freed >= need) break;
  }
  return (bucket + spec.buckets + 1) * width - now;
}

function outcome(spec: WindowSpec, window: WindowState, usedBefore: number, cost: number, now: number) {
  const fits = usedBefore + cost <= spec.limit;
  let resetMs: number;
  if (!fits && cost > spec.limit) {
    // Never fits in any window: answer with the full window rather than a misleading short wait.
    resetMs = spec.windowMs;
  } else if (window.total === 0) {
    resetMs = 0;
  } else {
    // Fitting: when `remaining` next rises. Not fitting: when a retry of the same cost would fit.
    resetMs = msUntilAtMost(window, spec, fits ? window.total - 1 : spec.limit - cost, now);
  }
  return { used: window.total, remaining: Math.max(0, spec.limit - window.total), resetMs };
}

/**
 * Decides one request against every window at once: admitted iff `used + cost ≤ limit` for all of
 * them; the cost is then added to all (or, in `record` mode, added even when denied, because
 * velocity limits must count rejected attempts too). Pure: returns the next state.
 */
export function decide(
  state: readonly LimitState[],
  now: number,
  input: CheckInput,
): { decision: Decision; state: LimitState[] } {
  const { cost, mode } = input;
  const current = state.map((s) => bucketIndex(now, bucketWidth(s.spec)));
  const live = state.map((s, k) => ({ spec: s.spec, window: expire(s.window, current[k]!, s.spec.buckets) }));
  const violated = live.findIndex((s) => s.window.total + cost > s.spec.limit);
  const admitted = violated === -1;
  const consumed = cost > 0 && (admitted || mode === 'record');
  const next = live.map((s, k) =>
    consumed ? { spec: s.spec, window: add(s.window, current[k]!, cost) } : s,
  );
  const limits = next.map((s, k) => outcome(s.spec, s.window, live[k]!.window.total, cost, now));
  return { decision: { admitted, violated, consumed, limits }, state: next };
}
