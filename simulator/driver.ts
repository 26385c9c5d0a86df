import type { GatehouseApi } from './client.ts';
import { analyse, callsToday, gatewayDay, importAccounts, ingest, runActed, sweep } from './history.ts';
import type { Hooks } from './hooks.ts';
import { calibrate, issueKeys, liveEnforce, liveSignups, liveSlice, probe } from './live.ts';
import { DAY_MS, type PlannedEvent, type Population, signupDay } from './model.ts';
import { Rng } from './rng.ts';
import { type AccountState, type DayRecord, type DriveContext, newState, type RunRecord } from './state.ts';
import { dayEvents } from './traffic.ts';

// Drives one population through a Gatehouse, over HTTP only. The simulated days end today: the
// days before today are history, loaded in event time (accounts through the import, the gateway's
// log through usage events) and analysed as of the end of each day; today is played live, with
// real signups, keys and gateway calls, then analysed as of now. Gatehouse refuses event times in
// the future, which is why the live day comes last.

export interface DriverOptions {
  population: Population;
  api: GatehouseApi;
  hooks: Hooks;
  log?: (message: string) => void;
  /** Requests in flight (twice this for reads and gateway calls). */
  concurrency?: number;
  signupsPerSecond?: number;
  /** Calls each keyed account makes through /v1/enforce in the live phase. */
  liveCallsPerAccount?: number;
  /** Accounts older than the run that also get a key and make live calls. */
  liveExistingAccounts?: number;
  /** Largest request body the instance accepts. */
  maxBodyBytes?: number;
  /** Start of day 0 (ms); by default 00:00 UTC of the day `days - 1` days before today. */
  dayZero?: number;
}

export async function drive(opts: DriverOptions): Promise<RunRecord> {
  const pop = opts.population;
  const now = Date.now();
  const ctx: DriveContext = {
    api: opts.api,
    hooks: opts.hooks,
    root: Rng.seeded(pop.seed),
    population: pop,
    states: pop.accounts.map((a) => newState(a, pop.days)),
    dayZero: opts.dayZero ?? now - (now % DAY_MS) - (pop.days - 1) * DAY_MS,
    quota: { assumed: pop.quota, user: null, device: null, source: 'assumed' },
    capabilities: { importAccounts: true, usageEvents: true, analysis: true },
    notes: [],
    log: opts.log ?? (() => undefined),
    options: {
      concurrency: opts.concurrency ?? 12,
      signupsPerSecond: opts.signupsPerSecond ?? 10,
      liveCallsPerAccount: opts.liveCallsPerAccount ?? 10,
      liveExistingAccounts: opts.liveExistingAccounts ?? 100,
      maxBodyBytes: opts.maxBodyBytes ?? 900_000,
    },
  };
  const days: DayRecord[] = [];
  const last = pop.days - 1;
  await ctx.api.setUpTokens();

  // History: the accounts older than the run, then each day before today.
  const historyStarted = Date.now();
  const existing = ctx.states.filter((s) => s.account.signupAt < 0);
  ctx.log(`importing ${existing.length} accounts older than the run`);
  await importAccounts(ctx, existing);
  await calibrate(ctx);
  for (let day = 0; day < last; day++) {
    const arriving = ctx.states.filter((s) => signupDay(s.account) === day);
    const importedAccounts = await importAccounts(ctx, arriving);
    // A farm holds a key for every account it got in, ready for the day it is used live.
    await issueKeys(
      ctx,
      arriving.filter((s) => s.account.role === 'farm'),
    );
    const lines = gatewayDay(ctx, day);
    const ingestStarted = Date.now();
    const accepted = await ingest(ctx, lines);
    const ingestMs = Date.now() - ingestStarted;
    const asOf = ctx.dayZero + (day + 1) * DAY_MS - 1;
    const run = await analyse(ctx, asOf);
    const sweepStarted = Date.now();
    await sweep(ctx, day, runActed(run) || day === last - 1);
    days.push({
      day,
      live: false,
      asOf: new Date(asOf).toISOString(),
      importedAccounts,
      events: lines.length,
      eventsAccepted: accepted,
      ingestMs,
      run,
      sweepMs: Date.now() - sweepStarted,
    });
    ctx.log(
      `day ${day + 1}/${pop.days}: +${importedAccounts} accounts, ${lines.length} log lines (${ingestMs} ms), ` +
        `run ${run ? `${run.status} in ${run.ms} ms` : 'unavailable'}, farm accounts caught so far ${caught(ctx.states)}`,
    );
  }
  const historyMs = Date.now() - historyStarted;

  // Live: today's signups in real time, keys, and a slice of today's calls through /v1/enforce.
  const liveStarted = Date.now();
  const today = ctx.states.filter((s) => signupDay(s.account) === last);
  ctx.log(`live: ${today.length} signups`);
  await liveSignups(ctx, today);
  const regulars = ctx.root.fork('live-regulars').sample(
    ctx.states.filter((s) => s.account.role === 'legit' && s.path === 'import' && s.status === 'active'),
    ctx.options.liveExistingAccounts,
  );
  await issueKeys(ctx, [...today, ...regulars]);
  const slices = new Map<AccountState, PlannedEvent[]>();
  for (const state of ctx.states) {
    if (!state.key || !callsToday(state, last)) continue;
    slices.set(
      state,
      liveSlice(dayEvents(ctx.root, state.account, last), ctx.options.liveCallsPerAccount).live,
    );
  }
  ctx.log(`live: ${[...slices.values()].reduce((n, l) => n + l.length, 0)} calls through /v1/enforce`);
  await liveEnforce(ctx, slices);
  const asOf = Date.now();
  const run = await analyse(ctx, asOf);
  const sweepStarted = Date.now();
  await sweep(ctx, last, true);
  days.push({
    day: last,
    live: true,
    asOf: new Date(asOf).toISOString(),
    importedAccounts: 0,
    events: 0,
    eventsAccepted: 0,
    ingestMs: 0,
    run,
    sweepMs: Date.now() - sweepStarted,
  });
  ctx.log(
    `day ${pop.days}/${pop.days} (live): run ${run ? `${run.status} in ${run.ms} ms` : 'unavailable'}, farm accounts caught ${caught(ctx.states)}`,
  );
  if (ctx.quota.user === null) {
    ctx.notes.push(`no enforcement answer named a user:24h limit; quotas assumed at ${pop.quota} a day`);
  } else if (ctx.quota.user !== pop.quota) {
    ctx.notes.push(`the plans assumed a daily quota of ${pop.quota}; Gatehouse reports ${ctx.quota.user}`);
  }
  const liveMs = Date.now() - liveStarted;

  const probeStarted = Date.now();
  await probe(ctx);
  const probeMs = Date.now() - probeStarted;
  const unavailable = ctx.states.reduce((n, s) => n + (s.live.decisions['deny:limiter_unavailable'] ?? 0), 0);
  if (unavailable > 0) {
    ctx.notes.push(
      `${unavailable} live gateway calls were refused with limiter_unavailable: Redis did not answer within the enforcement budget`,
    );
  }
  if (!ctx.capabilities.importAccounts)
    ctx.notes.push(
      'POST /v1/import/accounts is not available: accounts made before today never existed in Gatehouse',
    );
  if (!ctx.capabilities.usageEvents)
    ctx.notes.push('POST /v1/usage-events is not available: detection saw no history of usage');
  if (!ctx.capabilities.analysis) ctx.notes.push('POST /v1/analysis/runs is not available: no detection ran');
  if (opts.hooks.badSignatures() > 0)
    ctx.notes.push(`${opts.hooks.badSignatures()} webhook deliveries had a bad signature`);

  return {
    states: ctx.states,
    days,
    quota: ctx.quota,
    capabilities: ctx.capabilities,
    gaps: ctx.api.gaps(),
    notes: ctx.notes,
    dayZero: new Date(ctx.dayZero).toISOString(),
    timings: { liveMs, historyMs, probeMs },
  };
}

const caught = (states: AccountState[]) =>
  states.filter((s) => s.account.role === 'farm' && s.caughtDay !== null).length;
