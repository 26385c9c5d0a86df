import { sha256Hex } from '../lib/secrets.ts';
import type { LimitSpec } from '../limits/limiter.ts';
import { formatDuration } from '../policy/format.ts';
import type { EnforcementPolicy, QuotaDimension, TierPolicy, WindowLimit } from '../policy/policy.ts';
import type { RedisKeys } from '../redis/keys.ts';

// Which quota windows a request is checked against: pure, from the tier, the account's overrides,
// the emergency factor and whether detection flagged the account.

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

export function resolveTier(policy: EnforcementPolicy, tier: string): TierPolicy {
  return policy.tiers[tier] ?? policy.tiers[policy.defaultTier]!;
}

const keyPart = (value: string) =>
  /^[A-Za-z0-9.:_-]{1,64}$/.test(value) ? value : `h${sha256Hex(value).slice(0, 32)}`;

export function quotaSpecs(
  keys: RedisKeys,
  tier: TierPolicy,
  override: Partial<TierLimits> | null,
  subject: QuotaSubject,
  factor: number,
): QuotaSpec[] {
  const limits: TierLimits = { ...tier.limits, ...(override ?? {}) };
  const values: Array<[QuotaDimension, string | null]> = [
    ['key', subject.keyId],
    ['user', subject.accountId],
    ['device', subject.fingerprint],
    ['ip', subject.ip],
    // A hosting network gets the stricter hostingAsn windows when the tier has them.
    subject.hosting && limits.hostingAsn
      ? ['hostingAsn', subject.asn === null ? null : String(subject.asn)]
      : ['asn', subject.asn === null ? null : String(subject.asn)],
    ['tier', subject.tier],
  ];
  const specs: QuotaSpec[] = [];
  for (const [dimension, value] of values) {
    if (value === null) continue;
    const windows: WindowLimit[] | undefined = limits[dimension];
    for (const w of windows ?? []) {
      const label = `${dimension}:${formatDuration(w.window)}`;
      specs.push({
        dimension,
        label,
        name: label,
        key: keys.window(`q_${dimension}`, keyPart(value), String(w.window)),
        limit: Math.max(0, Math.floor(w.limit * factor)),
        windowMs: w.window,
        buckets: w.buckets,
      });
    }
  }
  return specs;
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
