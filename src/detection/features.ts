import { MINHASH_SIZE } from '../enforce/minhash.ts';
import { parseIp, subnetOf } from '../signals/ip.ts';

// Usage features of one account and the usage signals it adds to the inverted index. Pure: every
// input is passed in, every time is event time (ms since the epoch), never the machine clock, so a
// rerun over the same rows and the same asOf gives the same answer.
//
// The window is [asOf - featureWindow, asOf). Hourly rows count only when their whole hour lies
// inside it: an hour still open at asOf would keep growing after it and break reruns.

const HOUR = 3_600_000;
const DAY = 86_400_000;
/** SynchroTrap's unit: accounts acting in the same ten minutes from the same network. */
const SLOT = 600_000;
/** A request this soon after a denial ignored the denial (and any Retry-After). */
const RETRY_WITHIN = 2_000;
/** A day at or above this share of the daily limit is a day at the ceiling. */
const CEILING_RATIO = 0.9;
/** Fewer gaps than this say nothing about regularity. */
const MIN_GAPS = 10;
/** LSH: 8 bands of 4 rows over the 32-value MinHash (similar prompts collide in some band). */
const LSH_ROWS = 4;
const LSH_BANDS = MINHASH_SIZE / LSH_ROWS;
/** Values per signal kind per account, so one account cannot flood a kind of the index. */
export const USAGE_SIGNAL_CAP = 200;

/**
 * Per-kind caps below the general one: every value is a bucket the linking engine visits, and
 * the multi-valued kinds need only a recent sample to show shared templates and shared minutes.
 */
export const USAGE_SIGNAL_CAPS: Readonly<Record<string, number>> = {
  sync_slot: 48,
  query_lsh: 48,
  usage_ip: 50,
  usage_subnet: 30,
  usage_fingerprint: 20,
  tls_fingerprint: 10,
};

export interface UsageHourInput {
  /** Start of the UTC hour. */
  hour: number;
  requests: number;
  /** Cost served: denied requests cost nothing. */
  cost: number;
  denied: number;
  ips: readonly string[];
  fingerprints: readonly string[];
  asns: readonly number[];
}

export interface UsageEventInput {
  at: number;
  ip: string | null;
  asn: number | null;
  fingerprint: string | null;
  tlsFingerprint: string | null;
  decision: string;
  /** MinHash of the query text, or empty. */
  queryMinhash: readonly number[];
}

/** [from, to) in event time. */
export interface FeatureWindow {
  from: number;
  to: number;
}

export const featureWindow = (asOf: number, windowMs: number): FeatureWindow => ({
  from: asOf - windowMs,
  to: asOf,
});

export interface HourFeatures {
  requests: number;
  cost: number;
  activeDays: number;
  /** Distinct hours of the day (UTC) with any request: a 24/7 bot uses all 24, people sleep. */
  activeHours: number;
  activeHoursShare: number;
  /** Mean active hours per active day. */
  hoursPerDay: number;
  /** Cost per UTC day (YYYY-MM-DD), active days only. */
  dailyUsage: Record<string, number>;
  meanDailyCost: number;
  /** Whole days in the window at ≥ 90% of the daily limit, and their share of whole active days. */
  ceilingDays: number;
  ceilingShare: number;
  /** Share of the cost spent in the first hour after 00:00 UTC (bursts at the daily reset). */
  midnightBurstShare: number;
  distinctIps: number;
  distinctFingerprints: number;
  distinctAsns: number;
  deniedShare: number;
}

export interface EventFeatures {
  events: number;
  /** Coefficient of variation of the gaps between events: near 0 for a metronome, ~1 for people. */
  timingRegularity: number | null;
  denials: number;
  /** Share of denials followed by another request within 2 s. */
  retryAfterDenialShare: number;
  /** Most distinct countries the account was used from within one hour. */
  countriesPerHourMax: number;
  querySamples: number;
  /** Shannon entropy (bits) of the signatures' first LSH band: low when the queries are templates. */
  queryEntropy: number | null;
  /** Distinct signatures per signed event. */
  queryDistinctShare: number | null;
  tlsFingerprints: number;
}

export type AccountFeatures = HourFeatures & EventFeatures;

export interface FeatureInput {
  hours: readonly UsageHourInput[];
  events: readonly UsageEventInput[];
  asOf: number;
  windowMs: number;
  /** The account's daily limit (cost); null when its tier has none. */
  dailyLimit: number | null;
  countryOf: (ip: string) => string | null;
}

export function usageFeatures(input: FeatureInput): AccountFeatures {
  const w = featureWindow(input.asOf, input.windowMs);
  const hours = hoursIn(input.hours, w);
  return {
    ...hourFeatures(hours, w, input.dailyLimit),
    ...eventFeatures(eventsIn(input.events, w), hours, input.countryOf),
  };
}

export const hoursIn = (hours: readonly UsageHourInput[], w: FeatureWindow): UsageHourInput[] =>
  hours.filter((h) => h.hour >= w.from && h.hour + HOUR <= w.to);

export const eventsIn = (events: readonly UsageEventInput[], w: FeatureWindow): UsageEventInput[] =>
  events.filter((e) => e.at >= w.from && e.at < w.to);

const dayOf = (t: number): number => Math.floor(t / DAY) * DAY;
const hourOfDay = (t: number): number => Math.floor((t - dayOf(t)) / HOUR);
const share = (part: number, whole: number): number => (whole > 0 ? part / whole : 0);

/** Over hourly rows already inside the window (see `hoursIn`). */
export function hourFeatures(
  hours: readonly UsageHourInput[],
  w: FeatureWindow,
  dailyLimit: number | null,
): HourFeatures {
  const days = new Map<number, { cost: number; hours: number }>();
  const hoursOfDay = new Set<number>();
  const ips = new Set<string>();
  const fingerprints = new Set<string>();
  const asns = new Set<number>();
  let requests = 0;
  let cost = 0;
  let denied = 0;
  let midnightCost = 0;
  for (const h of hours) {
    if (h.requests <= 0) continue;
    requests += h.requests;
    cost += h.cost;
    denied += h.denied;
    const hod = hourOfDay(h.hour);
    hoursOfDay.add(hod);
    if (hod === 0) midnightCost += h.cost;
    const day = days.get(dayOf(h.hour)) ?? { cost: 0, hours: 0 };
    day.cost += h.cost;
    day.hours += 1;
    days.set(dayOf(h.hour), day);
    for (const ip of h.ips) ips.add(ip);
    for (const fp of h.fingerprints) fingerprints.add(fp);
    for (const asn of h.asns) asns.add(asn);
  }
  const sortedDays = [...days].sort((a, b) => a[0] - b[0]);
  // Only whole days can reach the ceiling: a day cut by the window's edge would understate it.
  const wholeDays = sortedDays.filter(([d]) => d >= w.from && d + DAY <= w.to);
  const ceilingDays =
    dailyLimit !== null && dailyLimit > 0
      ? wholeDays.filter(([, d]) => d.cost >= CEILING_RATIO * dailyLimit).length
      : 0;
  let hourSum = 0;
  for (const [, d] of sortedDays) hourSum += d.hours;
  return {
    requests,
    cost,
    activeDays: days.size,
    activeHours: hoursOfDay.size,
    activeHoursShare: hoursOfDay.size / 24,
    hoursPerDay: share(hourSum, days.size),
    dailyUsage: Object.fromEntries(
      sortedDays.map(([d, v]) => [new Date(d).toISOString().slice(0, 10), v.cost]),
    ),
    meanDailyCost: share(cost, days.size),
    ceilingDays,
    ceilingShare: share(ceilingDays, wholeDays.length),
    midnightBurstShare: share(midnightCost, cost),
    distinctIps: ips.size,
    distinctFingerprints: fingerprints.size,
    distinctAsns: asns.size,
    deniedShare: share(denied, requests),
  };
}

/**
 * Over sampled events already inside the window (see `eventsIn`). The hourly rows add the addresses
 * of unsampled requests to the countries-per-hour count.
 */
export function eventFeatures(
  events: readonly UsageEventInput[],
  hours: readonly UsageHourInput[],
  countryOf: (ip: string) => string | null,
): EventFeatures {
  const sorted = [...events].sort((a, b) => a.at - b.at);
  let denials = 0;
  let retried = 0;
  const gaps: number[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    const next = sorted[i + 1];
    if (next) gaps.push(next.at - e.at);
    if (e.decision === 'deny') {
      denials++;
      if (next && next.at - e.at <= RETRY_WITHIN) retried++;
    }
  }

  const countriesByHour = new Map<number, Set<string>>();
  const addCountry = (hour: number, ip: string): void => {
    const country = countryOf(ip);
    if (country === null) return;
    const set = countriesByHour.get(hour) ?? new Set<string>();
    set.add(country);
    countriesByHour.set(hour, set);
  };
  for (const e of sorted) if (e.ip) addCountry(Math.floor(e.at / HOUR) * HOUR, e.ip);
  for (const h of hours) for (const ip of h.ips) addCountry(h.hour, ip);
  let countriesPerHourMax = 0;
  for (const set of countriesByHour.values()) countriesPerHourMax = Math.max(countriesPerHourMax, set.size);

  const firstBands = new Map<string, number>();
  const signatures = new Set<string>();
  let querySamples = 0;
  const tls = new Set<string>();
  for (const e of sorted) {
    if (e.tlsFingerprint) tls.add(e.tlsFingerprint);
    if (e.queryMinhash.length !== MINHASH_SIZE) continue;
    querySamples++;
    const band = e.queryMinhash.slice(0, LSH_ROWS).join(',');
    firstBands.set(band, (firstBands.get(band) ?? 0) + 1);
    signatures.add(e.queryMinhash.join(','));
  }

  return {
    events: sorted.length,
    timingRegularity: coefficientOfVariation(gaps),
    denials,
    retryAfterDenialShare: share(retried, denials),
    countriesPerHourMax,
    querySamples,
    queryEntropy: querySamples === 0 ? null : entropy(firstBands.values(), querySamples),
    queryDistinctShare: querySamples === 0 ? null : signatures.size / querySamples,
    tlsFingerprints: tls.size,
  };
}

function coefficientOfVariation(gaps: readonly number[]): number | null {
  if (gaps.length < MIN_GAPS) return null;
  let sum = 0;
  for (const g of gaps) sum += g;
  const mean = sum / gaps.length;
  if (mean <= 0) return null;
  let sq = 0;
  for (const g of gaps) sq += (g - mean) ** 2;
  return Math.sqrt(sq / gaps.length) / mean;
}

function entropy(counts: Iterable<number>, total: number): number {
  let h = 0;
  for (const c of counts) {
    const p = c / total;
    h -= p * Math.log2(p);
  }
  return h;
}

// --- Risk of one account ------------------------------------------------------------------------

/**
 * Weight of each part when fully present. Calibrated against the policy's account thresholds
 * (review 0.6, throttle 0.85): no part alone goes beyond review; round-the-clock use and hugging
 * the daily limit together (the lone 24/7 limit-hugger) reach throttle.
 */
export const RISK_WEIGHTS = {
  roundTheClock: 0.6,
  limitHugging: 0.65,
  resetBurst: 0.4,
  metronome: 0.45,
  retryStorm: 0.35,
  countryHopping: 0.5,
} as const;

export type RiskPart = keyof typeof RISK_WEIGHTS;

/** 0 at or below `lo`, 1 at or above `hi`, linear between. */
const ramp = (x: number, lo: number, hi: number): number => Math.min(1, Math.max(0, (x - lo) / (hi - lo)));

/**
 * Each part in 0..1, each non-decreasing in the evidence it reads (and in the amount of it, so one
 * odd day weighs less than a habit):
 * - roundTheClock: min(ramp(activeHours, 16, 24), ramp(hoursPerDay, 12, 22)) × min(1, activeDays/3)
 * - limitHugging: ramp(ceilingShare, 0.25, 0.75) × min(1, ceilingDays/3)
 * - resetBurst: ramp(midnightBurstShare, 0.2, 0.6) × min(1, activeDays/3)
 * - metronome: 1 − ramp(timingRegularity, 0.1, 0.6), 0 when unknown
 * - retryStorm: ramp(retryAfterDenialShare, 0.2, 0.8) × min(1, denials/5)
 * - countryHopping: ramp(countriesPerHourMax, 1, 3)
 */
export function riskParts(f: AccountFeatures): Record<RiskPart, number> {
  const habit = Math.min(1, f.activeDays / 3);
  return {
    roundTheClock: Math.min(ramp(f.activeHours, 16, 24), ramp(f.hoursPerDay, 12, 22)) * habit,
    limitHugging: ramp(f.ceilingShare, 0.25, 0.75) * Math.min(1, f.ceilingDays / 3),
    resetBurst: ramp(f.midnightBurstShare, 0.2, 0.6) * habit,
    metronome: f.timingRegularity === null ? 0 : 1 - ramp(f.timingRegularity, 0.1, 0.6),
    retryStorm: ramp(f.retryAfterDenialShare, 0.2, 0.8) * Math.min(1, f.denials / 5),
    countryHopping: ramp(f.countriesPerHourMax, 1, 3),
  };
}

/**
 * risk = 1 − Π (1 − weight × part): a noisy-OR, so independent signs add up, it stays in 0..1, and
 * it never falls when any part grows. A normal user scores 0.
 */
export function accountRisk(
  f: AccountFeatures,
  weights: Readonly<Record<RiskPart, number>> = RISK_WEIGHTS,
): number {
  const parts = riskParts(f);
  let none = 1;
  for (const part of Object.keys(parts) as RiskPart[]) {
    none *= 1 - Math.min(1, Math.max(0, weights[part] * parts[part]));
  }
  return Math.round((1 - none) * 10_000) / 10_000;
}

// --- Usage signals for the inverted index -------------------------------------------------------

export const USAGE_SIGNAL_KINDS = [
  'usage_ip',
  'usage_subnet',
  'usage_fingerprint',
  'tls_fingerprint',
  'query_lsh',
  'sync_slot',
] as const;

export type UsageSignalKind = (typeof USAGE_SIGNAL_KINDS)[number];

export interface UsageSignal {
  kind: UsageSignalKind;
  value: string;
  /** First time seen. */
  at: number;
}

interface Tally {
  count: number;
  first: number;
  last: number;
}

/**
 * The account's usage signals from the rows given (the caller picks the window), at most `cap`
 * values per kind, sorted by kind and value. The kept values are the most frequent ones, except
 * for activity slots: there the most recent, since members of a farm that act together now share
 * their latest slots, while their busiest ones depend on each member's own volume.
 */
export function usageSignals(
  events: readonly UsageEventInput[],
  hours: readonly UsageHourInput[],
  cap: number = USAGE_SIGNAL_CAP,
): UsageSignal[] {
  const tallies = new Map<UsageSignalKind, Map<string, Tally>>(USAGE_SIGNAL_KINDS.map((k) => [k, new Map()]));
  const see = (kind: UsageSignalKind, value: string, at: number): void => {
    const byValue = tallies.get(kind)!;
    const t = byValue.get(value);
    if (!t) byValue.set(value, { count: 1, first: at, last: at });
    else {
      t.count++;
      t.first = Math.min(t.first, at);
      t.last = Math.max(t.last, at);
    }
  };
  const seeIp = (raw: string, at: number): void => {
    // Canonical text only: two spellings of one address must be one value.
    const ip = parseIp(raw);
    if (!ip) return;
    see('usage_ip', ip.address, at);
    see('usage_subnet', subnetOf(ip), at);
  };

  for (const h of hours) {
    for (const ip of h.ips) seeIp(ip, h.hour);
    for (const fp of h.fingerprints) see('usage_fingerprint', fp, h.hour);
  }
  for (const e of events) {
    if (e.ip) seeIp(e.ip, e.at);
    if (e.fingerprint) see('usage_fingerprint', e.fingerprint, e.at);
    if (e.tlsFingerprint) see('tls_fingerprint', e.tlsFingerprint, e.at);
    for (const band of lshBands(e.queryMinhash)) see('query_lsh', band, e.at);
    const network = networkOf(e);
    if (network !== null) see('sync_slot', `${network}|${Math.floor(e.at / SLOT)}`, e.at);
  }

  const out: UsageSignal[] = [];
  for (const kind of USAGE_SIGNAL_KINDS) {
    const ranked = [...tallies.get(kind)!].sort(
      kind === 'sync_slot'
        ? (a, b) => b[1].last - a[1].last || byText(a[0], b[0])
        : (a, b) => b[1].count - a[1].count || a[1].first - b[1].first || byText(a[0], b[0]),
    );
    const kept = ranked
      .slice(0, Math.min(cap, USAGE_SIGNAL_CAPS[kind] ?? cap))
      .sort((a, b) => byText(a[0], b[0]));
    for (const [value, t] of kept) out.push({ kind, value, at: t.first });
  }
  return out;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function networkOf(e: UsageEventInput): string | null {
  if (e.asn !== null) return `as${e.asn}`;
  const ip = e.ip ? parseIp(e.ip) : null;
  return ip ? subnetOf(ip) : null;
}

/** `b<i>:<64-bit hash of the band's four values>` for each band; none for a missing signature. */
export function lshBands(signature: readonly number[]): string[] {
  if (signature.length !== MINHASH_SIZE) return [];
  const out: string[] = [];
  for (let b = 0; b < LSH_BANDS; b++) {
    const start = b * LSH_ROWS;
    out.push(
      `b${b}:${hex(murmur(signature, start, 0x9747b28c))}${hex(murmur(signature, start, 0x5bd1e995))}`,
    );
  }
  return out;
}

const hex = (n: number): string => n.toString(16).padStart(8, '0');

/** MurmurHash3 (x86, 32-bit) of four 32-bit values: two seeds make a 64-bit band key. */
function murmur(values: readonly number[], start: number, seed: number): number {
  let h = seed | 0;
  for (let i = start; i < start + LSH_ROWS; i++) {
    let k = Math.imul(values[i]! | 0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= LSH_ROWS * 4;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
