import type { DetectionPolicy } from '../policy/policy.ts';
import { parseIp, subnetOf } from '../signals/ip.ts';

// How much two accounts sharing signals say about being one actor: pure, tested without I/O.

/** One signal value two accounts share, with the size of its bucket (accounts holding it). */
export interface SharedSignal {
  kind: string;
  value: string;
  /** Accounts in the bucket, counted up to the largest cap (+1). */
  bucket: number;
  /** Event times each account was first seen with it. */
  atA: number;
  atB: number;
}

export interface LinkEvidence {
  kind: string;
  /** Shared values of this kind (several for multi-valued kinds such as usage IPs). */
  shared: number;
  weight: number;
  /** One example value (hashed kinds carry their hash), for the analyst. */
  value: string;
}

/** Kinds observed at signup: their timing (made minutes or months apart) matters. */
const SIGNUP_KINDS: ReadonlySet<string> = new Set([
  'email',
  'email_pattern',
  'email_domain',
  'disposable',
  'ip',
  'subnet',
  'hosting_asn',
  'fingerprint',
  'tls_fingerprint',
  'user_agent',
  'phone',
  'phone_prefix',
]);

/**
 * Rarity of a bucket: shared by two accounts says everything, by thousands very little.
 * 1 for two, ~0.7 for four, 0.5 for sixteen, ~0.3 for two thousand.
 */
export function rarity(bucket: number): number {
  if (bucket <= 2) return 1;
  return 1 / Math.sqrt(Math.log2(bucket));
}

/**
 * Signup-time proximity: 1.5x for accounts made together, falling with the half-life to a floor of
 * 0.25x for accounts made months apart (the same device years later is still worth something).
 */
export function timeFactor(deltaMs: number, halfLifeMs: number): number {
  return 0.25 + 1.25 * 2 ** (-Math.abs(deltaMs) / halfLifeMs);
}

/**
 * A kind that says nothing more once a finer one is shared: two accounts on one IP share its
 * subnet too, and must not be counted twice for it (a family behind one router stays unlinked).
 */
const IMPLIED_BY: Readonly<Record<string, string>> = {
  subnet: 'ip',
  usage_subnet: 'usage_ip',
  phone_prefix: 'phone',
  email_domain: 'email',
};

/** The most time proximity adds: timeFactor(0). */
const MAX_TIME_FACTOR = 1.5;

/**
 * The most one kind can add to a pair's weight in `pairWeight`: its weight times the largest scale
 * it can get (rarity ≤ 1, signup-time proximity ≤ 1.5, a saturated multi-valued kind 1).
 */
export function maxContribution(
  kind: string,
  policy: Pick<DetectionPolicy, 'weights' | 'saturation'>,
): number {
  const w = policy.weights[kind] ?? 0;
  if (w <= 0) return 0;
  if (policy.saturation[kind] !== undefined) return w;
  return SIGNUP_KINDS.has(kind) ? w * MAX_TIME_FACTOR : w;
}

/** The link weight of a pair and the evidence behind it. */
export function pairWeight(
  shared: readonly SharedSignal[],
  policy: Pick<DetectionPolicy, 'weights' | 'saturation' | 'timeHalfLife'>,
): { weight: number; evidence: LinkEvidence[] } {
  const byKind = new Map<string, SharedSignal[]>();
  for (const s of shared) {
    const list = byKind.get(s.kind);
    if (list) list.push(s);
    else byKind.set(s.kind, [s]);
  }
  const evidence: LinkEvidence[] = [];
  let weight = 0;
  for (const [kind, signals] of byKind) {
    const w = policy.weights[kind] ?? 0;
    if (w <= 0) continue;
    const finer = IMPLIED_BY[kind];
    if (finer && byKind.has(finer) && (policy.weights[finer] ?? 0) > 0) continue;
    let contribution: number;
    const saturation = policy.saturation[kind];
    if (saturation !== undefined) {
      // Multi-valued kinds: each shared value adds its rarity, up to full weight at `saturation`.
      const sum = groupedRarity(kind, signals);
      contribution = w * Math.min(1, sum / saturation);
    } else {
      // Single-valued kinds: the best shared value counts (two accounts share one e-mail pattern).
      let best = 0;
      for (const s of signals) {
        const t = SIGNUP_KINDS.has(kind) ? timeFactor(s.atA - s.atB, policy.timeHalfLife) : 1;
        best = Math.max(best, rarity(s.bucket) * t);
      }
      contribution = w * best;
    }
    weight += contribution;
    evidence.push({ kind, shared: signals.length, weight: round(contribution), value: signals[0]!.value });
  }
  evidence.sort((a, b) => b.weight - a.weight);
  return { weight: round(weight), evidence };
}

/** Kinds whose shared values count once per network they fall in (see `groupedRarity`). */
const PER_NETWORK: ReadonlySet<string> = new Set(['usage_ip']);

/**
 * The summed rarity of a multi-valued kind's shared values. Shared usage addresses count once per
 * /24 (/64): a carrier's CGNAT hands all its subscribers the same few addresses of one block, so
 * sharing ten of them is one coincidence, while ten addresses in ten networks (a proxy list, a
 * set of machines: EvilCohort) are ten.
 */
export function groupedRarity(kind: string, signals: readonly SharedSignal[]): number {
  if (!PER_NETWORK.has(kind)) return signals.reduce((acc, s) => acc + rarity(s.bucket), 0);
  const best = new Map<string, number>();
  for (const s of signals) {
    const ip = parseIp(s.value);
    const network = ip ? subnetOf(ip) : s.value;
    best.set(network, Math.max(best.get(network) ?? 0, rarity(s.bucket)));
  }
  let sum = 0;
  for (const r of best.values()) sum += r;
  return sum;
}

const round = (x: number) => Math.round(x * 1000) / 1000;
