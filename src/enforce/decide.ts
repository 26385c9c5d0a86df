import type { CheckResult } from '../limits/limiter.ts';
import type { EnforcementPolicy } from '../policy/policy.ts';
import type { QuotaSpec } from './limits.ts';

// The enforcement answer, as a pure function of the limiter's result and the policy.

export type DenyReason =
  | 'invalid_key'
  | 'account_suspended'
  | 'verification_required'
  | 'rate_limited'
  | 'quota_exhausted'
  | 'blocked_ip'
  | 'limiter_unavailable';

export interface LimitView {
  name: string;
  limit: number;
  remaining: number;
  resetSeconds: number;
}

export interface EnforcementDecision {
  decision: 'allow' | 'throttle' | 'deny';
  reason?: DenyReason | 'near_limit' | 'flagged';
  accountId?: string;
  delayMs?: number;
  retryAfterMs?: number;
  degrade?: boolean;
  limits: LimitView[];
}

/** Windows up to an hour are bursts (rate_limited); longer ones are budgets (quota_exhausted). */
const BURST_MAX_MS = 3_600_000;

export function decideEnforcement(
  specs: readonly QuotaSpec[],
  result: CheckResult,
  throttle: EnforcementPolicy['throttle'],
  flagged: boolean,
  accountId: string,
): EnforcementDecision {
  const limits: LimitView[] = result.limits.map((l) => ({
    name: l.name,
    limit: l.limit,
    remaining: l.remaining,
    resetSeconds: Math.ceil(l.resetMs / 1000),
  }));
  if (!result.admitted) {
    const i = specs.findIndex((s) => s.name === result.violated);
    const spec = specs[i];
    return {
      decision: 'deny',
      reason: spec && spec.windowMs > BURST_MAX_MS ? 'quota_exhausted' : 'rate_limited',
      accountId,
      retryAfterMs: result.limits[i]?.resetMs ?? 1000,
      limits,
    };
  }
  // Soft throttling: past `nearLimitRatio` of a key's or user's window, each call waits longer,
  // growing to maxDelayMs at the limit — extraction slows down without learning where the line is.
  let ratio = 0;
  result.limits.forEach((l, i) => {
    const dim = specs[i]?.dimension;
    if ((dim === 'key' || dim === 'user') && l.limit > 0) ratio = Math.max(ratio, l.used / l.limit);
  });
  const near = throttle.nearLimitRatio;
  const nearDelay =
    ratio > near && near < 1 ? Math.round(throttle.maxDelayMs * ((ratio - near) / (1 - near)) ** 2) : 0;
  if (flagged) {
    return {
      decision: 'throttle',
      reason: 'flagged',
      accountId,
      delayMs: Math.max(throttle.flaggedDelayMs, nearDelay),
      degrade: true,
      limits,
    };
  }
  if (nearDelay > 0)
    return { decision: 'throttle', reason: 'near_limit', accountId, delayMs: nearDelay, limits };
  return { decision: 'allow', accountId, limits };
}

/**
 * IETF RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers): every window
 * in the policy field (worked out once per tier, see QuotaPlan); the one closest to running out in
 * the RateLimit field.
 */
export function rateLimitHeaders(limits: readonly LimitView[], policyField: string): Record<string, string> {
  if (limits.length === 0) return {};
  let tightest = limits[0]!;
  let best = tightest.limit === 0 ? 0 : tightest.remaining / tightest.limit;
  for (const l of limits) {
    const share = l.limit === 0 ? 0 : l.remaining / l.limit;
    if (share < best) {
      tightest = l;
      best = share;
    }
  }
  return {
    'RateLimit-Policy': policyField,
    RateLimit: `"${tightest.name}";r=${tightest.remaining};t=${tightest.resetSeconds}`,
  };
}
