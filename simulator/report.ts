import type { ApiGap } from './client.ts';
import { FARM_KINDS, type FarmKind, type ScenarioName, signupDay } from './model.ts';
import {
  type AccountState,
  type Capabilities,
  type DayRecord,
  type Quota,
  type RunRecord,
  STOPPED,
} from './state.ts';

// The numbers a security team asks for, computed only from what Gatehouse answered during the run.
// Days are numbered from 1 in the report.

export const THRESHOLDS = { farmStoppedMin: 0.95, legitSuspendedMax: 0.005 } as const;

export interface FarmReport {
  scenario: FarmKind | 'all';
  attempted: number;
  blockedAtSignup: number;
  blockedReasons: Record<string, number>;
  /** Exists in Gatehouse: a live signup it allowed, or an imported one. */
  created: number;
  challengedAtSignup: number;
  /** Created but never active: the step-up was not passed, so no key. */
  neverActivated: number;
  throttled: number;
  challenged: number;
  suspended: number;
  /** At the end: blocked, never active, or throttled, challenged or suspended. */
  stopped: number;
  stoppedRate: number;
  caughtDay: { median: number | null; max: number | null; caught: number; never: number };
  queries: { planned: number; served: number };
  /**
   * Calls served to the farm in a day ÷ one account's daily quota: the peak over all days, the mean
   * over the full days of history (today, live, carries only a slice of its calls).
   */
  multiplication: { peak: number; mean: number; plannedPeak: number; byDay: number[] };
  live: { calls: number; served: number; decisions: Record<string, number> };
  probe: Record<string, number>;
  importRefused: number;
}

export interface LegitReport {
  users: number;
  liveSignups: number;
  created: number;
  blockedAtSignup: number;
  blockedAtSignupRate: number;
  blockedReasons: Record<string, number>;
  signedUpTwice: number;
  secondSignupRefused: number;
  challengedAtSignup: number;
  challengedAtSignupRate: number;
  neverActivated: number;
  challenged: number;
  challengedRate: number;
  throttled: number;
  throttledRate: number;
  suspended: number;
  suspendedRate: number;
  stepUps: { attempted: number; verified: number };
  live: { calls: number; served: number; decisions: Record<string, number> };
  probe: Record<string, number>;
  byPersona: Record<string, { users: number; challenged: number; throttled: number; suspended: number }>;
}

export interface DayReport {
  day: number;
  /** Today: live signups and a slice of the calls, analysed as of now. */
  live: boolean;
  /** Farm accounts that had tried to get in by the end of the day. */
  farmAttempted: number;
  farmStopped: number;
  /** What the farm would have been served without Gatehouse, ÷ one account's daily quota. */
  unchecked: number;
  farmServed: number;
  multiplication: number;
  legitAffected: number;
  legitSuspended: number;
  run: string;
  runMs: number | null;
  logLines: number;
}

export interface Report {
  scenario: ScenarioName;
  seed: number;
  days: number;
  legitUsers: number;
  farmAccounts: number;
  gatehouse: string;
  dayZero: string;
  quota: Quota;
  farms: FarmReport[];
  farmTotal: FarmReport;
  legit: LegitReport;
  perDay: DayReport[];
  capabilities: Capabilities;
  gaps: ApiGap[];
  notes: string[];
  thresholds: { farmStoppedMin: number; legitSuspendedMax: number; failures: string[] };
  timings: { wallMs: number; startMs: number; liveMs: number; historyMs: number; probeMs: number };
}

const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
const rate = (n: number, of: number) => (of > 0 ? n / of : 0);
const bump = (m: Record<string, number>, key: string, by = 1) => {
  m[key] = (m[key] ?? 0) + by;
};

/** Median of a list of numbers (the mean of the middle two for an even count); null when empty. */
export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Stopped at the end of the run: never in, never usable, or held back by detection. */
export function isStopped(s: AccountState): boolean {
  if (s.blockedAtSignup) return true;
  if (s.id && !s.activated) return true;
  return s.status !== null && STOPPED.has(s.status);
}

function liveTotals(states: AccountState[]) {
  const decisions: Record<string, number> = {};
  for (const s of states) for (const [k, n] of Object.entries(s.live.decisions)) bump(decisions, k, n);
  return {
    calls: sum(states.map((s) => s.live.calls)),
    served: sum(states.map((s) => s.live.served)),
    decisions,
  };
}

function probeTotals(states: AccountState[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of states)
    if (s.probe) bump(out, s.probe.reason ? `${s.probe.decision}:${s.probe.reason}` : s.probe.decision);
  return out;
}

export function farmReport(
  scenario: FarmKind | 'all',
  states: AccountState[],
  days: number,
  quota: number,
): FarmReport {
  const blocked = states.filter((s) => s.blockedAtSignup);
  const blockedReasons: Record<string, number> = {};
  for (const s of blocked) bump(blockedReasons, s.signup?.code ?? 'unknown');
  const created = states.filter((s) => s.id);
  const stopped = states.filter(isStopped).length;
  const caught = states.filter((s) => s.caughtDay !== null).map((s) => (s.caughtDay as number) + 1);
  const byDay = Array.from({ length: days }, (_, d) => sum(states.map((s) => s.served[d] ?? 0)) / quota);
  const plannedByDay = Array.from(
    { length: days },
    (_, d) => sum(states.map((s) => s.planned[d] ?? 0)) / quota,
  );
  const full = days > 1 ? byDay.slice(0, days - 1) : byDay;
  return {
    scenario,
    attempted: states.length,
    blockedAtSignup: blocked.length,
    blockedReasons,
    created: created.length,
    challengedAtSignup: states.filter((s) => s.challengedAtSignup).length,
    neverActivated: created.filter((s) => !s.activated).length,
    throttled: states.filter((s) => s.ever.throttled).length,
    challenged: states.filter((s) => s.ever.challenged).length,
    suspended: states.filter((s) => s.ever.suspended).length,
    stopped,
    stoppedRate: rate(stopped, states.length),
    caughtDay: {
      median: median(caught),
      max: caught.length ? Math.max(...caught) : null,
      caught: caught.length,
      never: states.length - caught.length,
    },
    queries: { planned: sum(states.flatMap((s) => s.planned)), served: sum(states.flatMap((s) => s.served)) },
    multiplication: {
      peak: Math.max(0, ...byDay),
      mean: sum(full) / Math.max(1, full.length),
      plannedPeak: Math.max(0, ...plannedByDay),
      byDay,
    },
    live: liveTotals(states),
    probe: probeTotals(states),
    importRefused: states.filter((s) => s.importRefused).length,
  };
}

export function legitReport(states: AccountState[]): LegitReport {
  const live = states.filter((s) => s.path === 'live');
  const blocked = states.filter((s) => s.blockedAtSignup);
  const blockedReasons: Record<string, number> = {};
  for (const s of blocked) bump(blockedReasons, s.signup?.code ?? 'unknown');
  const created = states.filter((s) => s.id);
  const twice = states.filter((s) => s.repeat);
  const byPersona: LegitReport['byPersona'] = {};
  for (const s of states) {
    const p = byPersona[s.account.group] ?? { users: 0, challenged: 0, throttled: 0, suspended: 0 };
    byPersona[s.account.group] = p;
    p.users++;
    if (s.ever.challenged || s.challengedAtSignup) p.challenged++;
    if (s.ever.throttled) p.throttled++;
    if (s.ever.suspended) p.suspended++;
  }
  const stepUps = states.flatMap((s) => s.stepUps);
  const n = (f: (s: AccountState) => boolean) => states.filter(f).length;
  const challenged = n((s) => s.ever.challenged);
  const throttled = n((s) => s.ever.throttled);
  const suspended = n((s) => s.ever.suspended);
  const challengedAtSignup = n((s) => s.challengedAtSignup);
  return {
    users: states.length,
    liveSignups: live.length,
    created: created.length,
    blockedAtSignup: blocked.length,
    blockedAtSignupRate: rate(blocked.length, live.length),
    blockedReasons,
    signedUpTwice: twice.length,
    secondSignupRefused: twice.filter((s) => s.repeat && s.repeat.status !== 201).length,
    challengedAtSignup,
    challengedAtSignupRate: rate(challengedAtSignup, live.length),
    neverActivated: created.filter((s) => !s.activated).length,
    challenged,
    challengedRate: rate(challenged, created.length),
    throttled,
    throttledRate: rate(throttled, created.length),
    suspended,
    suspendedRate: rate(suspended, created.length),
    stepUps: { attempted: stepUps.length, verified: stepUps.filter((u) => u.outcome === 'verified').length },
    live: liveTotals(states),
    probe: probeTotals(states),
    byPersona,
  };
}

function perDay(run: RunRecord, farm: AccountState[], legit: AccountState[], quota: number): DayReport[] {
  return run.days.map((d: DayRecord) => {
    const farmServed = sum(farm.map((s) => s.served[d.day] ?? 0));
    const affected = (s: AccountState) => STOPPED.has(s.statusByDay[d.day] ?? '');
    return {
      day: d.day + 1,
      live: d.live,
      farmAttempted: farm.filter((s) => signupDay(s.account) <= d.day).length,
      unchecked: sum(farm.map((s) => s.planned[d.day] ?? 0)) / quota,
      farmStopped: farm.filter(
        (s) =>
          (s.blockedAtSignup || (s.id && !s.activated)
            ? signupDay(s.account)
            : (s.caughtDay ?? Number.POSITIVE_INFINITY)) <= d.day,
      ).length,
      farmServed,
      multiplication: farmServed / quota,
      legitAffected: legit.filter(affected).length,
      legitSuspended: legit.filter((s) => s.statusByDay[d.day] === 'suspended').length,
      run: d.run?.status ?? 'unavailable',
      runMs: d.run?.ms ?? null,
      logLines: d.events,
    };
  });
}

export function buildReport(
  run: RunRecord,
  meta: {
    scenario: ScenarioName;
    seed: number;
    days: number;
    gatehouse: string;
    wallMs: number;
    startMs: number;
  },
): Report {
  const quota = run.quota.user ?? run.quota.assumed;
  const farm = run.states.filter((s) => s.account.role === 'farm');
  const legit = run.states.filter((s) => s.account.role === 'legit');
  const kinds = FARM_KINDS.filter((k) => farm.some((s) => s.account.group === k));
  const farms = kinds.map((k) =>
    farmReport(
      k,
      farm.filter((s) => s.account.group === k),
      meta.days,
      quota,
    ),
  );
  const farmTotal = farmReport('all', farm, meta.days, quota);
  const legitR = legitReport(legit);
  const failures: string[] = [];
  for (const f of meta.scenario === 'mixed' ? [farmTotal] : farms) {
    if (f.stoppedRate < THRESHOLDS.farmStoppedMin) {
      failures.push(
        `${meta.scenario}: ${pct(f.stoppedRate)} of farm accounts stopped (at least ${pct(THRESHOLDS.farmStoppedMin)} required)`,
      );
    }
  }
  if (legitR.suspendedRate > THRESHOLDS.legitSuspendedMax) {
    failures.push(
      `${meta.scenario}: ${pct(legitR.suspendedRate)} of legitimate accounts suspended (at most ${pct(THRESHOLDS.legitSuspendedMax)} allowed)`,
    );
  }
  return {
    scenario: meta.scenario,
    seed: meta.seed,
    days: meta.days,
    legitUsers: legit.length,
    farmAccounts: farm.length,
    gatehouse: meta.gatehouse,
    dayZero: run.dayZero,
    quota: run.quota,
    farms,
    farmTotal,
    legit: legitR,
    perDay: perDay(run, farm, legit, quota),
    capabilities: run.capabilities,
    gaps: run.gaps,
    notes: run.notes,
    thresholds: { ...THRESHOLDS, failures },
    timings: { wallMs: meta.wallMs, startMs: meta.startMs, ...run.timings },
  };
}

export const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)}%`;
