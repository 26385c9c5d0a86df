import type { SignupPolicy } from '../policy/policy.ts';

// The signup decision is a pure function of what the checks found and of the policy: no I/O here,
// so every combination can be tested directly and the same facts always give the same answer.

export type RuleKind = 'cidr' | 'asn' | 'email_domain' | 'email_pattern';
export type VelocityDimension =
  | 'ip'
  | 'subnet'
  | 'asn'
  | 'email_domain'
  | 'email_pattern'
  | 'fingerprint'
  | 'global';

export interface SignupFacts {
  captcha: 'ok' | 'failed' | 'unavailable';
  email: { disposable: boolean; privacyRelay: boolean; inUse: boolean };
  phone:
    | null
    | { ok: true; inUse: boolean }
    | { ok: false; reason: 'invalid_phone' | 'phone_type_not_allowed' | 'phone_country_not_allowed' };
  network: { hosting: boolean };
  rules: ReadonlyArray<{ kind: RuleKind; mode: 'block' | 'challenge' | 'allow' }>;
  /** Dimensions whose velocity window is over its limit (this attempt counted), with the wait. */
  velocity: ReadonlyArray<{ dimension: VelocityDimension; retryAfterMs: number }>;
}

export type NextStep = 'verify_email' | 'verify_phone';

export type SignupOutcome =
  | { decision: 'allow' | 'challenge'; reasons: string[]; next: NextStep[] }
  | { decision: 'deny'; status: 403 | 429 | 503; reasons: string[]; retryAfterMs?: number };

const BLOCK_REASON: Record<RuleKind, string> = {
  cidr: 'blocked_ip',
  asn: 'blocked_asn',
  email_domain: 'blocked_email_domain',
  email_pattern: 'blocked_email_pattern',
};
const CHALLENGE_REASON: Record<RuleKind, string> = {
  cidr: 'challenge_ip',
  asn: 'challenge_asn',
  email_domain: 'challenge_email_domain',
  email_pattern: 'challenge_email_pattern',
};
const NETWORK_KINDS: ReadonlySet<RuleKind> = new Set(['cidr', 'asn']);
const EMAIL_KINDS: ReadonlySet<RuleKind> = new Set(['email_domain', 'email_pattern']);
const NETWORK_DIMENSIONS: ReadonlySet<VelocityDimension> = new Set(['ip', 'subnet', 'asn']);
const EMAIL_DIMENSIONS: ReadonlySet<VelocityDimension> = new Set(['email_domain', 'email_pattern']);

export function decideSignup(facts: SignupFacts, policy: SignupPolicy): SignupOutcome {
  // An allow rule vouches for its side only: a trusted network (a university NAT) lifts the network
  // heuristics and network velocity; a trusted e-mail domain lifts the e-mail heuristics. Neither
  // lifts captcha, identity reuse or an explicit block.
  const allowNetwork = facts.rules.some((r) => r.mode === 'allow' && NETWORK_KINDS.has(r.kind));
  const allowEmail = facts.rules.some((r) => r.mode === 'allow' && EMAIL_KINDS.has(r.kind));

  const deny: string[] = [];
  const challenge: string[] = [];
  const verdict = (v: 'allow' | 'challenge' | 'deny', reason: string) => {
    if (v === 'deny') deny.push(reason);
    else if (v === 'challenge') challenge.push(reason);
  };

  if (facts.captcha === 'failed') deny.push('captcha_failed');
  for (const rule of facts.rules) {
    if (rule.mode === 'block') deny.push(BLOCK_REASON[rule.kind]);
    if (rule.mode === 'challenge') challenge.push(CHALLENGE_REASON[rule.kind]);
  }
  if (!allowEmail) {
    if (facts.email.disposable) verdict(policy.email.disposable, 'disposable_email');
    if (facts.email.privacyRelay) verdict(policy.email.privacyRelay, 'privacy_relay');
  }
  if (facts.email.inUse) deny.push('email_in_use');
  if (facts.phone && !facts.phone.ok) deny.push(facts.phone.reason);
  if (facts.phone?.ok && facts.phone.inUse) deny.push('phone_in_use');
  if (!allowNetwork && facts.network.hosting) verdict(policy.network.hostingAsn, 'hosting_network');

  const velocity = facts.velocity.filter(
    (v) =>
      !(allowNetwork && NETWORK_DIMENSIONS.has(v.dimension)) &&
      !(allowEmail && EMAIL_DIMENSIONS.has(v.dimension)),
  );
  const velocityReasons = velocity.map((v) => `velocity_${v.dimension}`);

  if (deny.length > 0)
    return { decision: 'deny', status: 403, reasons: unique([...deny, ...velocityReasons]) };
  // Fail closed: without a working captcha nothing else can vouch for the caller being a person.
  if (facts.captcha === 'unavailable')
    return { decision: 'deny', status: 503, reasons: ['captcha_unavailable'] };
  if (velocity.length > 0) {
    const retryAfterMs = Math.max(...velocity.map((v) => v.retryAfterMs));
    return { decision: 'deny', status: 429, reasons: unique(velocityReasons), retryAfterMs };
  }

  const next: NextStep[] = [];
  if (policy.verification.required.includes('email')) next.push('verify_email');
  if (policy.verification.required.includes('phone') || challenge.length > 0) next.push('verify_phone');
  if (challenge.length > 0) return { decision: 'challenge', reasons: unique(challenge), next };
  return { decision: 'allow', reasons: [], next };
}

const unique = (xs: string[]) => [...new Set(xs)];
