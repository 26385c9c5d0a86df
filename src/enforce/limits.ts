import { sha256Hex } from '../lib/secrets.ts';
import type { LimitSpec } from '../limits/limiter.ts';
import { specProblem } from '../limits/window.ts';
import { formatDuration } from '../policy/format.ts';
import type { EnforcementPolicy, QuotaDimension, TierPolicy, WindowLimit } from '../policy/policy.ts';
import type { RedisKeys } from '../redis/keys.ts';

// Which quota windows a request is checked against: pure, from the tier, the account's overrides,
// the emergency factor and whether detection flagged the account.
//
// This runs on every gateway call, so what depends only on the tier, the override and the factor
// (labels, scaled limits, the RateLimit-Policy field) is worked out once per combination and kept;
// a request adds only its own Redis key names.

export type TierLimits = TierPolicy['limits'];

export interface QuotaSubject {
  keyId: string;
  accountId: string;
  tier: string;
  fingerprint: string | null;
  ip: string;
  asn: number | null;
  hosting: boolean;
}

export interface QuotaSpec extends LimitSpec {
  dimension: QuotaDimension;
  /** Label for responses and headers, e.g. `key:1m`. */
  label: string;
}

/** The windows of one dimension, ready but for the subject's value. */
interface DimensionPlan {
  dimension: QuotaDimension;
  windows: ReadonlyArray<{
    label: string;
    slot: string;
    limit: number;
    windowMs: number;
    buckets: number;
  }>;
}

/** Every window a tier (with an override and factor) applies, and its RateLimit-Policy field. */
export interface QuotaPlan {
  /** Dimensions in answer order; `asn` and `hostingAsn` are alternatives, never both applied. */
  readonly dimensions: readonly DimensionPlan[];
  /** The RateLimit-Policy field for the windows of the given dimensions. */
  policyField(applied: readonly QuotaDimension[]): string;
}

export function resolveTier(policy: EnforcementPolicy, tier: string): TierPolicy {
  return policy.tiers[tier] ?? policy.tiers[policy.defaultTier]!;
}

const DIMENSION_ORDER: readonly QuotaDimension[] = [
  'key',
  'user',
  'device',
  'ip',
  'asn',
  'hostingAsn',
  'tier',
];

function buildPlan(tier: TierPolicy, override: Partial<TierLimits> | null, factor: number): QuotaPlan {
  const limits: TierLimits = { ...tier.limits, ...(override ?? {}) };
  const dimensions: DimensionPlan[] = [];
  for (const dimension of DIMENSION_ORDER) {
    const windows: WindowLimit[] | undefined = limits[dimension];
    if (!windows || windows.length === 0) continue;
    dimensions.push({
      dimension,
      windows: windows.map((w) => {
        const label = `${dimension}:${formatDuration(w.window)}`;
        const window = {
          label,
          // The window's place in the dimension's hash: its length, so it survives policy edits
          // that add or drop other windows.
          slot: w.window.toString(36),
          limit: Math.max(0, Math.floor(w.limit * factor)),
          windowMs: w.window,
          buckets: w.buckets,
        };
        // The policy schema already guarantees this; a plan is built once, so it costs nothing here.
        const problem = specProblem(window);
        if (problem) throw new RangeError(`limit ${label}: ${problem}`);
        return window;
      }),
    });
  }
  const fields = new Map<string, string>();
  return {
    dimensions,
    policyField(applied) {
      const id = applied.join(',');
      let field = fields.get(id);
      if (field === undefined) {
        field = dimensions
          .filter((d) => applied.includes(d.dimension))
          .flatMap((d) =>
            d.windows.map((w) => `"${w.label}";q=${w.limit};w=${Math.round(w.windowMs / 1000)}`),
          )
          .join(', ');
        fields.set(id, field);
      }
      return field;
    },
  };
}

// Plans without an override, per tier object (a policy reload brings new objects) and factor.
const plans = new WeakMap<TierPolicy, Map<number, QuotaPlan>>();
// Overrides are per account: keyed by the override object itself, which the key cache keeps
// for as long as it keeps the account.
const overridePlans = new WeakMap<object, { tier: TierPolicy; factor: number; plan: QuotaPlan }>();

export function quotaPlan(tier: TierPolicy, override: Partial<TierLimits> | null, factor: number): QuotaPlan {
  if (override) {
    const hit = overridePlans.get(override);
    if (hit && hit.tier === tier && hit.factor === factor) return hit.plan;
    const plan = buildPlan(tier, override, factor);
    overridePlans.set(override, { tier, factor, plan });
    return plan;
  }
  let byFactor = plans.get(tier);
  if (!byFactor) {
    byFactor = new Map();
    plans.set(tier, byFactor);
  }
  let plan = byFactor.get(factor);
  if (!plan) {
    // Factors are few (1, the flagged factor, the emergency factor and their products).
    if (byFactor.size > 64) byFactor.clear();
    plan = buildPlan(tier, null, factor);
    byFactor.set(factor, plan);
  }
  return plan;
}

const SAFE_KEY_PART = /^[A-Za-z0-9.:_-]{1,64}$/;
const keyPart = (value: string) => (SAFE_KEY_PART.test(value) ? value : `h${sha256Hex(value).slice(0, 32)}`);

/** The subject's value for a dimension; null leaves the dimension out (no fingerprint, no ASN). */
function subjectValue(dimension: QuotaDimension, subject: QuotaSubject): string | null {
  switch (dimension) {
    case 'key':
      return subject.keyId;
    case 'user':
      return subject.accountId;
    case 'device':
      return subject.fingerprint;
    case 'ip':
      return subject.ip;
    case 'asn':
    case 'hostingAsn':
      return subject.asn === null ? null : String(subject.asn);
    case 'tier':
      return subject.tier;
  }
}

export interface QuotaSpecs {
  specs: QuotaSpec[];
  /** The dimensions that applied, in order (for the RateLimit-Policy field). */
  applied: QuotaDimension[];
}

export function quotaSpecsFor(keys: RedisKeys, plan: QuotaPlan, subject: QuotaSubject): QuotaSpecs {
  const specs: QuotaSpec[] = [];
  const applied: QuotaDimension[] = [];
  // A hosting network gets the stricter hostingAsn windows when the tier has them.
  const hostingPlan = subject.hosting && plan.dimensions.some((d) => d.dimension === 'hostingAsn');
  for (const dimensionPlan of plan.dimensions) {
    const { dimension, windows } = dimensionPlan;
    if (dimension === 'asn' && hostingPlan) continue;
    if (dimension === 'hostingAsn' && !hostingPlan) continue;
    const value = subjectValue(dimension, subject);
    if (value === null) continue;
    applied.push(dimension);
    // Every window of a dimension lives in one hash: one read and one write per dimension.
    const key = keys.quota(dimension, keyPart(value));
    for (const w of windows) {
      specs.push({
        dimension,
        label: w.label,
        name: w.label,
        key,
        slot: w.slot,
        limit: w.limit,
        windowMs: w.windowMs,
        buckets: w.buckets,
        // The same windows for every subject of this plan: the limiter reuses their encoding.
        shape: dimensionPlan,
      });
    }
  }
  return { specs, applied };
}

export function quotaSpecs(
  keys: RedisKeys,
  tier: TierPolicy,
  override: Partial<TierLimits> | null,
  subject: QuotaSubject,
  factor: number,
): QuotaSpec[] {
  return quotaSpecsFor(keys, quotaPlan(tier, override, factor), subject).specs;
}

/** The cost of a call: the gateway's word, else the longest matching endpoint prefix, else the default. */
export function costOf(
  policy: EnforcementPolicy,
  endpoint: string | undefined,
  given: number | undefined,
): number {
  if (given !== undefined) return given;
  if (!endpoint) return policy.defaultCost;
  let best: string | null = null;
  for (const prefix of Object.keys(policy.endpointCosts)) {
    if (endpoint.startsWith(prefix) && (best === null || prefix.length > best.length)) best = prefix;
  }
  return best === null ? policy.defaultCost : policy.endpointCosts[best]!;
}
