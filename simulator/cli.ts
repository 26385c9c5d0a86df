import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { renderHtml, renderText, runSimulation, SCENARIOS, type ScenarioName } from './index.ts';

// npm run simulate -- --scenario mixed --seed 1 [--days 30] [--legit 5000] [--farm 500]
//   [--json] [--html report.html] [--keep] [--url http://gatehouse --admin-token … --webhook-secret …]

const USAGE = `usage: npm run simulate -- --scenario <${SCENARIOS.join('|')}> [options]

  --seed <n>              everything generated follows from it (default 1)
  --days <n>              simulated days (default 30)
  --legit <n>             legitimate users (default 5000)
  --farm <n>              farm accounts (default per scenario; mixed 500)
  --quota <n>             daily quota the plans assume (default 1000, the free tier's)
  --json                  print the report as JSON instead of the table
  --html <file>           also write the report as an HTML page with charts
  --keep                  keep the started instance's database and Redis keys
  --policy <file>         policy file for the started instance
  --strict                exit 1 when a threshold is not met
  --quiet                 no progress lines on stderr

  Against a running Gatehouse instead of starting one:
  --url <url>             its base URL
  --admin-token <token>   a token with the admin scope
  --webhook-secret <s>    its NOTIFY_WEBHOOK_SECRET
  --hooks-port <port>     where the simulator listens (default 8399); start that instance with
                            CAPTCHA_PROVIDER=hcaptcha CAPTCHA_SECRET=<any>
                            CAPTCHA_VERIFY_URL=http://127.0.0.1:<port>/siteverify
                            NOTIFIER=webhook NOTIFY_WEBHOOK_SECRET=<the same secret>
                            NOTIFY_WEBHOOK_URL=http://127.0.0.1:<port>/hooks/gatehouse
                          on a database of its own: the run leaves its accounts behind`;

function fail(message: string): never {
  process.stderr.write(`simulate: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function int(value: string | undefined, name: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) fail(`--${name} must be a whole number`);
  return n;
}

async function main(): Promise<void> {
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse().values;
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const scenario = values.scenario as ScenarioName | undefined;
  if (!scenario || !SCENARIOS.includes(scenario)) fail('--scenario is required');
  const quiet = values.quiet === true || values.json === true;
  const days = int(values.days, 'days', 30) as number;
  if (days < 1) fail('--days must be at least 1');
  const farm = int(values.farm, 'farm');
  const hooksPort = int(values['hooks-port'], 'hooks-port');
  const report = await runSimulation({
    scenario,
    seed: int(values.seed, 'seed', 1) as number,
    days,
    legit: int(values.legit, 'legit', 5000) as number,
    ...(farm !== undefined ? { farm } : {}),
    quota: int(values.quota, 'quota', 1000) as number,
    ...(values.url ? { url: values.url } : {}),
    ...(values['admin-token'] ? { adminToken: values['admin-token'] } : {}),
    ...(values['webhook-secret'] ? { webhookSecret: values['webhook-secret'] } : {}),
    ...(hooksPort !== undefined ? { hooksPort } : {}),
    ...(values.keep ? { keep: true } : {}),
    ...(values.policy ? { policyPath: values.policy } : {}),
    log: quiet ? () => undefined : (m) => process.stderr.write(`${m}\n`),
    cleanUpOnInterrupt: true,
  });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderText(report)}\n`);
  if (values.html) {
    writeFileSync(values.html, renderHtml(report));
    if (!quiet) process.stderr.write(`wrote ${values.html}\n`);
  }
  if (values.strict && report.thresholds.failures.length > 0) process.exitCode = 1;
}

function parse() {
  return parseArgs({
    options: {
      scenario: { type: 'string' },
      seed: { type: 'string' },
      days: { type: 'string' },
      legit: { type: 'string' },
      farm: { type: 'string' },
      quota: { type: 'string' },
      json: { type: 'boolean' },
      html: { type: 'string' },
      keep: { type: 'boolean' },
      policy: { type: 'string' },
      strict: { type: 'boolean' },
      quiet: { type: 'boolean' },
      url: { type: 'string' },
      'admin-token': { type: 'string' },
      'webhook-secret': { type: 'string' },
      'hooks-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`simulate: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
