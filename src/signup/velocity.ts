import { sha256Hex } from '../lib/secrets.ts';
import type { LimitSpec, SlidingWindowLimiter } from '../limits/limiter.ts';
import type { SignupPolicy, WindowLimit } from '../policy/policy.ts';
import type { RedisKeys } from '../redis/keys.ts';
import type { VelocityDimension } from './decide.ts';

export interface VelocitySubject {
  ip: string;
  subnet: string;
  asn: number | null;
  hosting: boolean;
  /** Null for the big public providers: thousands of real people share gmail.com. */
  emailDomain: string | null;
  emailPattern: string | null;
  fingerprint: string | null;
}

// Values become parts of Redis key names: long or odd ones are hashed to keep keys short and safe.
const keyPart = (value: string) =>
  /^[A-Za-z0-9.:@_-]{1,64}$/.test(value) ? value : `h${sha256Hex(value).slice(0, 32)}`;

const windowName = (w: WindowLimit) => `${w.window}`;

/**
 * Records this attempt in every velocity window in one Redis round trip (record mode: rejected
 * attempts count too, so a farm cannot probe for free) and answers which dimensions are over.
 */
export async function recordSignupVelocity(
  limiter: SlidingWindowLimiter,
  keys: RedisKeys,
  policy: SignupPolicy['velocity'],
  subject: VelocitySubject,
  now: number,
): Promise<Array<{ dimension: VelocityDimension; retryAfterMs: number }>> {
  const dims: Array<[VelocityDimension, string, WindowLimit[]]> = [
    ['ip', subject.ip, policy.ip],
    ['subnet', subject.subnet, policy.subnet],
    ['global', 'all', policy.global],
  ];
  if (subject.asn !== null) {
    dims.push(['asn', String(subject.asn), subject.hosting ? policy.hostingAsn : policy.asn]);
  }
  if (subject.emailDomain) dims.push(['email_domain', subject.emailDomain, policy.emailDomain]);
  if (subject.emailPattern) dims.push(['email_pattern', subject.emailPattern, policy.emailPattern]);
  if (subject.fingerprint) dims.push(['fingerprint', subject.fingerprint, policy.fingerprint]);

  const specs: Array<LimitSpec & { dimension: VelocityDimension }> = [];
  for (const [dimension, value, windows] of dims) {
    for (const w of windows) {
      specs.push({
        dimension,
        name: `${dimension}:${windowName(w)}`,
        key: keys.window(`su_${dimension}`, keyPart(value), windowName(w)),
        limit: w.limit,
        windowMs: w.window,
        buckets: w.buckets,
      });
    }
  }
  if (specs.length === 0) return [];
  const result = await limiter.check({ now, mode: 'record', cost: 1, limits: specs });
  const over = new Map<VelocityDimension, number>();
  result.limits.forEach((l, i) => {
    if (l.used > l.limit) {
      const dimension = specs[i]!.dimension;
      over.set(dimension, Math.max(over.get(dimension) ?? 0, l.resetMs));
    }
  });
  return [...over].map(([dimension, retryAfterMs]) => ({ dimension, retryAfterMs }));
}
