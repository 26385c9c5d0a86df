import { GatehouseApi } from './client.ts';
import { drive } from './driver.ts';
import { startInstance } from './gatehouse.ts';
import { startHooks } from './hooks.ts';
import type { ScenarioName } from './model.ts';
import { buildReport, type Report } from './report.ts';
import { generatePopulation } from './scenarios.ts';

export type { ScenarioName } from './model.ts';
export { SCENARIOS } from './model.ts';
export { renderHtml, renderText } from './render.ts';
export type { Report } from './report.ts';

export interface SimulationOptions {
  scenario: ScenarioName;
  seed: number;
  days?: number;
  legit?: number;
  /** Farm accounts in all (the scenario's default when absent). */
  farm?: number;
  /** Daily quota of one account the farm and power users plan for. */
  quota?: number;
  /** A running Gatehouse; without it the simulator starts its own. */
  url?: string;
  /** Needed with `url`: a token with the admin scope. */
  adminToken?: string;
  /** Port of the simulator's siteverify and webhook listener (with `url`, fixed: 8399 by default). */
  hooksPort?: number;
  /** With `url`: the NOTIFY_WEBHOOK_SECRET that instance signs with. */
  webhookSecret?: string;
  /** With `url`: the CAPTCHA_SECRET that instance sends (any when absent). */
  captchaSecret?: string;
  /** Keep the database and Redis keys of a started instance. */
  keep?: boolean;
  policyPath?: string;
  /** PostgreSQL server (no database) and Redis for a started instance. */
  databaseServer?: string;
  redisUrl?: string;
  concurrency?: number;
  /** Live signups started per second (10 by default: a day's signups in about a minute). */
  signupsPerSecond?: number;
  liveCallsPerAccount?: number;
  liveExistingAccounts?: number;
  log?: (message: string) => void;
  /** Stop the started instance and drop its data on Ctrl-C or SIGTERM (the command line sets this). */
  cleanUpOnInterrupt?: boolean;
}

/** The hCaptcha test secret, which the started instance is given. */
const CAPTCHA_TEST_SECRET = '0x0000000000000000000000000000000000000000';

export async function runSimulation(opts: SimulationOptions): Promise<Report> {
  const started = Date.now();
  const days = opts.days ?? 30;
  const log = opts.log ?? (() => undefined);
  const population = generatePopulation({
    scenario: opts.scenario,
    seed: opts.seed,
    legit: opts.legit ?? 5000,
    ...(opts.farm !== undefined ? { farm: opts.farm } : {}),
    days,
    quota: opts.quota ?? 1000,
  });
  log(`population: ${population.accounts.length} accounts (${Date.now() - started} ms)`);
  if (opts.url && !opts.adminToken)
    throw new Error('--url needs --admin-token (a token with the admin scope)');
  if (opts.url && !opts.webhookSecret)
    throw new Error('--url needs --webhook-secret (the NOTIFY_WEBHOOK_SECRET of that instance)');

  const hooks = await startHooks({
    port: opts.hooksPort ?? (opts.url ? 8399 : 0),
    ...(opts.url
      ? opts.captchaSecret
        ? { captchaSecret: opts.captchaSecret }
        : {}
      : { captchaSecret: CAPTCHA_TEST_SECRET }),
    ...(opts.webhookSecret ? { webhookSecret: opts.webhookSecret } : {}),
  });
  let instance: Awaited<ReturnType<typeof startInstance>> | null = null;
  try {
    const startStarted = Date.now();
    if (!opts.url) {
      instance = await startInstance({
        seed: opts.seed,
        hooks,
        ...(opts.keep ? { keep: true } : {}),
        ...(opts.policyPath ? { policyPath: opts.policyPath } : {}),
        ...(opts.databaseServer ? { databaseServer: opts.databaseServer } : {}),
        ...(opts.redisUrl ? { redisUrl: opts.redisUrl } : {}),
        onLog: (line) => log(`[gatehouse] ${line}`),
      });
      log(
        `Gatehouse started at ${instance.url} (database ${instance.databaseUrl}, Redis prefix ${instance.redisPrefix})`,
      );
      if (opts.cleanUpOnInterrupt) {
        const started = instance;
        for (const signal of ['SIGINT', 'SIGTERM'] as const) {
          process.once(signal, () => {
            void started.stop().finally(() => process.exit(130));
          });
        }
      }
    }
    const startMs = Date.now() - startStarted;
    const url = (opts.url ?? instance?.url ?? '').replace(/\/+$/, '');
    const api = new GatehouseApi(url, opts.adminToken ?? instance?.adminToken ?? '');
    const run = await drive({
      population,
      api,
      hooks,
      log,
      maxBodyBytes: opts.url ? 900_000 : 15_000_000,
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      ...(opts.signupsPerSecond ? { signupsPerSecond: opts.signupsPerSecond } : {}),
      ...(opts.liveCallsPerAccount !== undefined ? { liveCallsPerAccount: opts.liveCallsPerAccount } : {}),
      ...(opts.liveExistingAccounts !== undefined ? { liveExistingAccounts: opts.liveExistingAccounts } : {}),
    });
    return buildReport(run, {
      scenario: opts.scenario,
      seed: opts.seed,
      days,
      gatehouse: url,
      wallMs: Date.now() - started,
      startMs,
    });
  } finally {
    await instance?.stop();
    await hooks.close();
  }
}
