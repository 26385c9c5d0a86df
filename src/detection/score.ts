import type { DetectionPolicy } from '../policy/policy.ts';

// A cluster is scored as a whole: no single account of a farm looks wrong, the group does. Pure.

export interface MemberFacts {
  accountId: string;
  createdAt: number;
  disposable: boolean;
  hosting: boolean;
  /** Usage features from the feature store (null for accounts without usage). */
  features: Record<string, unknown> | null;
  /** The account's phone (E.164) once given or verified by the run's event time. */
  phone?: string | null;
}

export interface ClusterFacts {
  members: readonly MemberFacts[];
  /** For each signal kind, the number of member links it took part in. */
  linkKinds: ReadonlyMap<string, number>;
  /** Links resting on something beyond the network alone (a device, an identity, a template). */
  identityLinks?: number;
  /** Of those, the links that also show activity in the same minutes. */
  syncedIdentityLinks?: number;
  links: number;
  /** One account's daily quota (the tier's daily user budget), for the multiplication factor. */
  dailyQuota: number | null;
  /**
   * Signup attempts refused for farm-like reasons (velocity, disposable or blocked e-mail, phone
   * type, …) from the members' own devices: the accounts the operator could not make.
   */
  refusedSignups?: number;
}

export interface ClusterScore {
  score: number;
  /** Each part's contribution in 0..1 before they are combined. */
  parts: Record<string, number>;
  features: Record<string, number>;
}

const num = (f: Record<string, unknown> | null, key: string): number | null => {
  const v = f?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
};

const mean = (xs: readonly number[]): number =>
  xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;

/** Most signups inside any 24 hours, as a share of the cluster: farms are made in bursts. */
export function signupBurstiness(createdAt: readonly number[]): number {
  if (createdAt.length === 0) return 0;
  const sorted = [...createdAt].sort((a, b) => a - b);
  let best = 1;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! > 86_400_000) start++;
    best = Math.max(best, end - start + 1);
  }
  return best / sorted.length;
}

const STRONG_KINDS = ['fingerprint', 'usage_fingerprint', 'phone', 'phone_prefix', 'email'];

/** Numbers bought in bulk come in consecutive blocks: the block of a hundred a number falls in. */
const phoneBlock = (e164: string): string | null => (/^\+\d{8,15}$/.test(e164) ? e164.slice(0, -2) : null);

/**
 * Share of the members whose phone shares its block of a hundred numbers with another member's
 * different number (the same number twice is the phone link's business, not a sequence).
 */
export function sequentialPhoneShare(phones: ReadonlyArray<string | null | undefined>): number {
  if (phones.length === 0) return 0;
  const blocks = new Map<string, Set<string>>();
  for (const p of phones) {
    const block = p ? phoneBlock(p) : null;
    if (!p || !block) continue;
    const numbers = blocks.get(block) ?? new Set<string>();
    numbers.add(p);
    blocks.set(block, numbers);
  }
  let inSequence = 0;
  for (const p of phones) {
    const block = p ? phoneBlock(p) : null;
    if (block && (blocks.get(block)?.size ?? 0) >= 2) inSequence++;
  }
  return inSequence / phones.length;
}

export function scoreCluster(facts: ClusterFacts): ClusterScore {
  const n = facts.members.length;
  const f = facts.members.map((m) => m.features);
  const linkShare = (kinds: readonly string[]) =>
    facts.links === 0
      ? 0
      : Math.min(1, kinds.reduce((acc, k) => acc + (facts.linkKinds.get(k) ?? 0), 0) / facts.links);

  const features: Record<string, number> = {
    size: n,
    burstiness: signupBurstiness(facts.members.map((m) => m.createdAt)),
    disposableShare: mean(facts.members.map((m) => (m.disposable ? 1 : 0))),
    hostingShare: mean(facts.members.map((m) => (m.hosting ? 1 : 0))),
    patternLinkShare: linkShare(['email_pattern']),
    deviceLinkShare: linkShare(STRONG_KINDS),
    // Acting in the same minutes from one network is what a university NAT does all day; it counts
    // only on links that something beyond the network already supports.
    syncLinkShare: facts.links === 0 ? 0 : Math.min(1, (facts.syncedIdentityLinks ?? 0) / facts.links),
    queryLinkShare: linkShare(['query_lsh']),
    sequentialPhoneShare: sequentialPhoneShare(facts.members.map((m) => m.phone)),
    refusedPerMember: n === 0 ? 0 : (facts.refusedSignups ?? 0) / n,
    ceilingShare: mean(f.map((x) => num(x, 'ceilingShare') ?? 0)),
    alwaysOnShare: mean(f.map((x) => ((num(x, 'activeHoursShare') ?? 0) >= 0.9 ? 1 : 0))),
    midnightBurstShare: mean(f.map((x) => num(x, 'midnightBurstShare') ?? 0)),
    regularShare: mean(
      f.map((x) => {
        const cv = num(x, 'timingRegularity');
        return cv !== null && cv < 0.3 ? 1 : 0;
      }),
    ),
  };
  const dailyCost = facts.members.reduce((acc, m) => acc + (num(m.features, 'meanDailyCost') ?? 0), 0);
  features.multiplication = facts.dailyQuota ? dailyCost / facts.dailyQuota : 0;

  // Each part is a probability-like piece of evidence; noisy-OR combines them, so independent
  // weak signs add up while no single one (a shared office network) decides alone.
  const parts: Record<string, number> = {
    size: Math.min(0.25, 0.015 * Math.max(0, n - 2)),
    burst: n >= 5 ? 0.35 * features.burstiness! : 0,
    disposable: 0.45 * features.disposableShare!,
    hosting: 0.3 * features.hostingShare!,
    pattern: 0.4 * features.patternLinkShare!,
    device: 0.5 * features.deviceLinkShare!,
    sync: 0.45 * features.syncLinkShare!,
    query: 0.45 * features.queryLinkShare!,
    limitHugging: 0.55 * features.ceilingShare!,
    alwaysOn: 0.35 * features.alwaysOnShare!,
    resetBurst: 0.45 * features.midnightBurstShare!,
    regular: 0.3 * features.regularShare!,
    multiplication: Math.min(0.4, 0.04 * Math.max(0, features.multiplication! - 2)),
    // Consecutive numbers among unrelated people are rare; a family plan is a handful, and small.
    sequentialPhones: 0.45 * features.sequentialPhoneShare!,
    // One refusal per member (an operator pushing past the velocity limits) counts in full.
    refusedSignups: 0.35 * Math.min(1, features.refusedPerMember!),
  };
  let none = 1;
  for (const p of Object.values(parts)) none *= 1 - Math.max(0, Math.min(1, p));
  return { score: round(1 - none), parts: roundAll(parts), features: roundAll(features) };
}

export type ClusterAction = 'none' | 'review' | 'throttle' | 'challenge' | 'suspend';

/** The policy's ladder: small clusters are never suspended automatically, at most challenged. */
export function actionFor(score: number, size: number, policy: DetectionPolicy['actions']): ClusterAction {
  if (score >= policy.suspend) {
    if (size >= policy.minSuspendSize) return 'suspend';
    return policy.challenge !== null ? 'challenge' : 'throttle';
  }
  if (policy.challenge !== null && score >= policy.challenge) return 'challenge';
  if (score >= policy.throttle) return 'throttle';
  if (score >= policy.review) return 'review';
  return 'none';
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const roundAll = (o: Record<string, number>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v)]));
