import { describe, expect, it } from 'vitest';
import type { SimAccount } from '../../simulator/model.ts';
import { buildReport, median } from '../../simulator/report.ts';
import { type AccountState, type DayRecord, newState, type RunRecord } from '../../simulator/state.ts';

const DAYS = 3;

function account(role: 'legit' | 'farm', group: string, signupDay: number): SimAccount {
  return {
    index: 0,
    externalId: `usr_${Math.random().toString(16).slice(2)}`,
    role,
    group,
    email: 'someone@example.org',
    phone: null,
    phoneAtSignup: false,
    signupAt: signupDay * 86_400_000 + 3_600_000,
    signup: { ip: '203.0.113.7', userAgent: 'test' },
    usage: {
      dailyCalls: [0, 0],
      weekdayActive: 0,
      weekendActive: 0,
      timing: { kind: 'cron', startMinute: 0, everyMinutes: 60 },
      perMinute: [1, 1],
      sources: [],
      prompts: { kind: 'template', templates: [0], fills: 1 },
      endpoints: ['/v1/chat/completions'],
    },
  };
}

function state(
  role: 'legit' | 'farm',
  group: string,
  signupDay: number,
  edit: (s: AccountState) => void,
): AccountState {
  const s = newState(account(role, group, signupDay), DAYS);
  edit(s);
  return s;
}

const created = (s: AccountState, path: 'live' | 'import', status: string) => {
  s.id = `acc_${s.account.externalId}`;
  s.path = path;
  s.status = status;
};

function run(states: AccountState[]): RunRecord {
  const days: DayRecord[] = Array.from({ length: DAYS }, (_, day) => ({
    day,
    live: day === DAYS - 1,
    asOf: new Date(day * 86_400_000).toISOString(),
    importedAccounts: 0,
    events: 10,
    eventsAccepted: 10,
    ingestMs: 1,
    run: { id: `run_${day}`, status: 'completed', summary: null, error: null, ms: 5 },
    sweepMs: 1,
  }));
  return {
    states,
    days,
    quota: { assumed: 1000, user: 1000, device: null, source: 'test' },
    capabilities: { importAccounts: true, usageEvents: true, analysis: true },
    gaps: [],
    notes: [],
    dayZero: new Date(0).toISOString(),
    timings: { liveMs: 1, historyMs: 2, probeMs: 3 },
  };
}

const farm = [
  state('farm', 'bulk-disposable', 2, (s) => {
    s.path = 'live';
    s.blockedAtSignup = true;
    s.signup = { status: 403, decision: null, code: 'disposable_email', reasons: ['disposable_email'] };
    s.caughtDay = 2;
  }),
  state('farm', 'bulk-disposable', 0, (s) => {
    created(s, 'import', 'suspended');
    s.activated = true;
    s.ever.suspended = true;
    s.caughtDay = 1;
    s.planned = [950, 950, 0];
    s.served = [800, 0, 0];
    s.statusByDay = ['active', 'suspended', 'suspended'];
  }),
  state('farm', 'bulk-disposable', 0, (s) => {
    created(s, 'import', 'active');
    s.activated = true;
    s.planned = [900, 900, 10];
    s.served = [900, 900, 10];
    s.statusByDay = ['active', 'active', 'active'];
  }),
  state('farm', 'bulk-disposable', 2, (s) => {
    created(s, 'live', 'pending');
    s.challengedAtSignup = true;
    s.caughtDay = 2;
  }),
];

const legit = [
  state('legit', 'home', -1, (s) => {
    created(s, 'import', 'active');
    s.activated = true;
  }),
  state('legit', 'developer', 2, (s) => {
    created(s, 'live', 'active');
    s.activated = true;
    s.challengedAtSignup = true;
    s.stepUps.push({ day: 2, outcome: 'verified' });
  }),
  state('legit', 'university', -1, (s) => {
    created(s, 'import', 'suspended');
    s.activated = true;
    s.ever.suspended = true;
    s.statusByDay = ['active', 'suspended', 'suspended'];
  }),
  state('legit', 'home', 2, (s) => {
    s.path = 'live';
    s.blockedAtSignup = true;
    s.signup = { status: 429, decision: null, code: 'velocity_ip', reasons: ['velocity_ip'] };
  }),
];

const meta = {
  scenario: 'bulk-disposable' as const,
  seed: 1,
  days: DAYS,
  gatehouse: 'http://test',
  wallMs: 10,
  startMs: 1,
};

describe('simulator report', () => {
  const report = buildReport(run([...farm, ...legit]), meta);

  it('counts the farm funnel from the states alone', () => {
    const f = report.farms[0]!;
    expect(f).toMatchObject({
      scenario: 'bulk-disposable',
      attempted: 4,
      blockedAtSignup: 1,
      blockedReasons: { disposable_email: 1 },
      created: 3,
      challengedAtSignup: 1,
      neverActivated: 1,
      suspended: 1,
      throttled: 0,
      stopped: 3,
    });
    expect(f.stoppedRate).toBeCloseTo(0.75);
  });

  it('reports the simulated day each farm account was caught, from day 1', () => {
    expect(report.farms[0]!.caughtDay).toEqual({ median: 3, max: 3, caught: 3, never: 1 });
    expect(median([2, 3, 3])).toBe(3);
    expect(median([1, 2, 3, 10])).toBe(2.5);
    expect(median([])).toBeNull();
  });

  it('divides what the farm was served each day by one account’s daily quota', () => {
    const m = report.farms[0]!.multiplication;
    expect(m.byDay).toEqual([1.7, 0.9, 0.01]);
    expect(m.peak).toBeCloseTo(1.7);
    // The mean leaves out today, which carries only the live slice of its calls.
    expect(m.mean).toBeCloseTo(1.3);
    expect(m.plannedPeak).toBeCloseTo(1.85);
    expect(report.farms[0]!.queries).toEqual({ planned: 3710, served: 2610 });
  });

  it('gives legitimate rates over the accounts that exist, and signup rates over live signups', () => {
    const l = report.legit;
    expect(l).toMatchObject({
      users: 4,
      liveSignups: 2,
      created: 3,
      blockedAtSignup: 1,
      challengedAtSignup: 1,
      suspended: 1,
    });
    expect(l.blockedAtSignupRate).toBeCloseTo(0.5);
    expect(l.suspendedRate).toBeCloseTo(1 / 3);
    expect(l.stepUps).toEqual({ attempted: 1, verified: 1 });
    expect(l.byPersona.university).toEqual({ users: 1, challenged: 0, throttled: 0, suspended: 1 });
  });

  it('tracks farm and legitimate outcomes per day', () => {
    expect(
      report.perDay.map((d) => [d.day, d.farmAttempted, d.farmStopped, d.legitSuspended, d.live]),
    ).toEqual([
      [1, 2, 0, 0, false],
      [2, 2, 1, 1, false],
      [3, 4, 3, 1, true],
    ]);
    expect(report.perDay.map((d) => d.unchecked)).toEqual([1.85, 1.85, 0.01]);
  });

  it('names each threshold that is not met', () => {
    expect(report.thresholds.failures).toHaveLength(2);
    expect(report.thresholds.failures[0]).toMatch(/75\.0% of farm accounts stopped/);
    expect(report.thresholds.failures[1]).toMatch(/33\.3% of legitimate accounts suspended/);
    const clean = buildReport(run([farm[0]!, farm[1]!, legit[0]!]), meta);
    expect(clean.thresholds.failures).toEqual([]);
  });
});
