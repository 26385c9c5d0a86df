import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Report, runSimulation, SCENARIOS, type ScenarioName } from '../../simulator/index.ts';
import { pct, THRESHOLDS } from '../../simulator/report.ts';

// A small version of every red-team scenario against a Gatehouse of its own, with the thresholds
// detection must meet: at least 95% of each farm stopped, at most 0.5% of real users suspended.
// Part of `npm test`; `npm run test:scenarios` runs it alone (SCENARIO_SEED=<n> for another seed).

// SCENARIO_SEED picks another population, to check that detection holds beyond one seed.
const SMALL = { seed: Number(process.env.SCENARIO_SEED ?? 7), legit: 150, days: 5 } as const;
/**
 * Farm accounts per scenario: `mixed` splits its farm five ways, and forty would leave a two-inbox
 * alias "farm" of four (half refused at signup) that the policy rightly never acts on.
 */
const FARM: Record<ScenarioName, number> = {
  'bulk-disposable': 40,
  'alias-farm': 40,
  'distributed-slow': 40,
  'reset-burst': 40,
  'voip-phones': 40,
  mixed: 100,
};
const reports = new Map<ScenarioName, Report>();

beforeAll(async () => {
  const server = process.env.TEST_DATABASE_BASE_URL;
  const redisUrl = process.env.TEST_REDIS_URL;
  // Each scenario starts its own instance (database, Redis prefix, captcha and notifier hooks);
  // three at a time keep two cores busy without starving the enforcement deadline.
  // The largest first, so the last one to start is a short one.
  const queue = [...SCENARIOS].sort((a, b) => FARM[b] - FARM[a]);
  const worker = async () => {
    for (let scenario = queue.shift(); scenario; scenario = queue.shift()) {
      const report = await runSimulation({
        scenario,
        ...SMALL,
        farm: FARM[scenario],
        // A small day's signups need no minute of pacing, nor ten live calls per account.
        signupsPerSecond: 40,
        liveCallsPerAccount: 5,
        ...(server ? { databaseServer: server } : {}),
        ...(redisUrl ? { redisUrl } : {}),
        liveExistingAccounts: 20,
      });
      reports.set(scenario, report);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
}, 300_000);

afterAll(() => {
  // One line per scenario, so a run's numbers can be read without the report.
  for (const [scenario, r] of reports) {
    const farms = r.farms.map((f) => `${f.scenario} ${pct(f.stoppedRate)} stopped`).join(', ');
    process.stdout.write(
      `scenario ${scenario} (seed ${SMALL.seed}): ${farms}; legitimate ${r.legit.suspended}/${r.legit.created} suspended, ` +
        `${r.legit.throttled} throttled, ${r.legit.challenged} challenged; ${(r.timings.wallMs / 1000).toFixed(1)} s\n`,
    );
  }
});

const summary = (r: Report) =>
  [
    ...r.farms.map(
      (f) =>
        `${f.scenario}: ${f.stopped}/${f.attempted} stopped (blocked ${f.blockedAtSignup}, suspended ${f.suspended}, throttled ${f.throttled}, challenged ${f.challenged})`,
    ),
    `legitimate: ${r.legit.suspended}/${r.legit.created} suspended`,
    ...r.gaps.map((g) => `api gap: ${g.endpoint} → ${g.status} ${g.code ?? ''}`),
  ].join('\n');

describe.each(SCENARIOS)('red-team scenario %s (small)', (scenario) => {
  it(`stops at least ${pct(THRESHOLDS.farmStoppedMin, 0)} of the farm accounts`, () => {
    const report = reports.get(scenario);
    expect(report, 'the scenario did not run').toBeDefined();
    const farms = scenario === 'mixed' ? [report!.farmTotal] : report!.farms;
    for (const farm of farms) {
      expect(farm.attempted).toBeGreaterThan(0);
      expect(farm.stoppedRate, summary(report!)).toBeGreaterThanOrEqual(THRESHOLDS.farmStoppedMin);
    }
  });

  it(`suspends at most ${pct(THRESHOLDS.legitSuspendedMax)} of the legitimate accounts`, () => {
    const report = reports.get(scenario);
    expect(report, 'the scenario did not run').toBeDefined();
    expect(report!.legit.created).toBeGreaterThan(0);
    expect(report!.legit.suspendedRate, summary(report!)).toBeLessThanOrEqual(THRESHOLDS.legitSuspendedMax);
  });

  it('signs legitimate people up without refusing them', () => {
    const report = reports.get(scenario);
    expect(report, 'the scenario did not run').toBeDefined();
    expect(report!.legit.liveSignups).toBeGreaterThan(0);
    expect(report!.legit.blockedAtSignup, JSON.stringify(report!.legit.blockedReasons)).toBe(0);
  });
});
