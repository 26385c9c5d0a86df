// Signup throughput benchmark: `tsx bench/signup.ts [--duration 15] [--connections 20] [--warmup 3] [--json]`.
//
// Gatehouse runs as its own process (`tsx src/main.ts api`) on a throwaway database and Redis prefix,
// against the local hCaptcha siteverify stand-in, with velocity limits raised out of reach: every
// request is a distinct, plausible person, so what is measured is the full allow path (captcha
// round trip, replay guard, velocity script, identity checks, the account transaction, the queue
// writes), not the cheap 429 path a real limit would send a load test down after a few requests.
// autocannon runs in this process; the siteverify and webhook stand-ins share its event loop.
//
// PostgreSQL and Redis come from DATABASE_URL and REDIS_URL (defaults: the local servers); only
// their server and credentials are used. Everything created is removed at the end, also on failure
// or Ctrl-C: the process, the database, the Redis keys and the temporary policy file.

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import {
  applyMigrations,
  databaseName,
  dropDatabase,
  ensureDatabase,
  withDatabase,
} from '../src/db/migrate.ts';
import { parsePolicy } from '../src/policy/policy.ts';
import { deleteMatching } from '../src/redis/client.ts';
import { HCAPTCHA_TEST_SECRET, startSiteverifyServer } from '../test/support/siteverify-server.ts';
import { type AutocannonRequest, type AutocannonResult, runAutocannon } from './lib/autocannon.ts';
import { type CpuShare, cpuShare, sampleCpu } from './lib/cpu.ts';
import { startGatehouseProcess } from './lib/gatehouse-process.ts';
import { createIdentityFactory, type IdentityFactory } from './lib/identities.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Command line

interface Options {
  duration: number;
  connections: number;
  warmup: number;
  json: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '15' },
      connections: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: tsx bench/signup.ts [--duration 15] [--connections 20] [--warmup 3] [--json]\n' +
        '  --duration     seconds measured\n' +
        '  --connections  concurrent keep-alive connections\n' +
        '  --warmup       seconds of unmeasured load first (0: none)\n' +
        '  --json         only a JSON line on stdout; the table goes to stderr\n',
    );
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench: --${name} must be a whole number from ${min} to ${max}\n`);
      process.exit(2);
    }
    return n;
  };
  return {
    duration: int('duration', values.duration, 1, 3600),
    connections: int('connections', values.connections, 1, 1000),
    warmup: int('warmup', values.warmup, 0, 600),
    json: values.json,
  };
}

// ---------------------------------------------------------------------------------------------
// Fixtures

// Limits far beyond what a run can reach, on the same windows and buckets as the defaults in
// src/policy/policy.ts: the velocity script then does exactly the production amount of work (one
// entry per window), only never says no.
const HIGH = 1_000_000;
const POLICY_YAML = `version: 1
signup:
  velocity:
    ip: [{ window: 1h, limit: ${HIGH}, buckets: 60 }, { window: 24h, limit: ${HIGH}, buckets: 96 }]
    subnet: [{ window: 1h, limit: ${HIGH}, buckets: 60 }, { window: 24h, limit: ${HIGH}, buckets: 96 }]
    asn: [{ window: 1h, limit: ${HIGH}, buckets: 60 }]
    hostingAsn: [{ window: 1h, limit: ${HIGH}, buckets: 60 }, { window: 24h, limit: ${HIGH}, buckets: 96 }]
    emailDomain: [{ window: 1h, limit: ${HIGH}, buckets: 60 }]
    emailPattern: [{ window: 24h, limit: ${HIGH}, buckets: 96 }]
    fingerprint: [{ window: 24h, limit: ${HIGH}, buckets: 96 }]
    global: [{ window: 1m, limit: ${HIGH * 100}, buckets: 12 }]
`;

// The child inherits only what a process needs to run, never Gatehouse settings: an exported
// DATABASE_URL, a real CAPTCHA_SECRET or EMAIL_MX_CHECK=true would point it elsewhere or change what
// is measured, and an allowlist stays right as new settings are added.
const INHERITED =
  /^(PATH|HOME|USER|LOGNAME|SHELL|TMPDIR|TMP|TEMP|TZ|LANG|LC_[A-Z]+|NODE_[A-Z_]+|TSX_[A-Z_]+)$/;

/** Stands in for the operator's notification endpoint: accepts everything, says nothing. */
async function startWebhookReceiver(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/notify`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Deletes every key under the prefix: queues, caches, counters (hash-tagged or not). */
async function deleteRedisPrefix(redisUrl: string, prefix: string): Promise<number> {
  // One attempt: a Redis that is not there should fail this step, not retry in the background.
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  redis.on('error', () => {}); // connect() rejects with the same error
  await redis.connect();
  try {
    return await deleteMatching(redis, [`{${prefix}:*`, `${prefix}:*`]);
  } finally {
    redis.disconnect();
  }
}

async function postJson(
  url: string,
  token: string,
  body: unknown,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
  });
  return { status: res.status, text: await res.text() };
}

// ---------------------------------------------------------------------------------------------
// Load

/** What the responses said, beyond their status: decisions of the 201s, reasons of the rest. */
interface Outcomes {
  decisions: Map<string, number>;
  rejections: Map<string, number>;
}

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

function rejectionKey(status: number, body: string): string {
  try {
    const problem = JSON.parse(body) as { reasons?: unknown; code?: unknown };
    const reasons = Array.isArray(problem.reasons) ? problem.reasons.join('+') : String(problem.code ?? '');
    return `${status} ${reasons || 'unknown'}`;
  } catch {
    return `${status} (not JSON)`;
  }
}

function signupRequests(ids: IdentityFactory, token: string, outcomes: Outcomes): AutocannonRequest[] {
  const DECISION = /"decision":"([a-z]+)"/;
  return [
    {
      method: 'POST',
      path: '/v1/signups',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      setupRequest(request) {
        request.body = JSON.stringify(ids.next());
        return request;
      },
      onResponse(status, body) {
        if (status >= 200 && status < 300) bump(outcomes.decisions, DECISION.exec(body)?.[1] ?? 'unknown');
        else bump(outcomes.rejections, rejectionKey(status, body));
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  bench: 'signup';
  node: string;
  connections: number;
  warmupS: number;
  durationS: number;
  elapsedS: number;
  responses: number;
  signupsPerSec: number;
  share201: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number; max: number };
  statusCounts: Record<string, number>;
  non2xx: Record<string, number>;
  rejections: Record<string, number>;
  decisions: Record<string, number>;
  errors: number;
  timeouts: number;
  cpu: CpuShare | null;
}

function buildReport(
  opts: Options,
  result: AutocannonResult,
  outcomes: Outcomes,
  cpu: CpuShare | null,
): Report {
  const statusCounts: Record<string, number> = {};
  for (const [status, { count }] of Object.entries(result.statusCodeStats)) statusCounts[status] = count;
  const responses = Object.values(statusCounts).reduce((a, b) => a + b, 0);
  const non2xx = Object.fromEntries(Object.entries(statusCounts).filter(([s]) => !s.startsWith('2')));
  const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
  return {
    bench: 'signup',
    node: process.version,
    connections: opts.connections,
    warmupS: opts.warmup,
    durationS: opts.duration,
    elapsedS: result.duration,
    responses,
    signupsPerSec: round(result['2xx'] / result.duration),
    share201: responses === 0 ? 0 : round((statusCounts['201'] ?? 0) / responses, 4),
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      mean: round(result.latency.average, 2),
      max: result.latency.max,
    },
    statusCounts,
    non2xx,
    rejections: Object.fromEntries(outcomes.rejections),
    decisions: Object.fromEntries(outcomes.decisions),
    errors: result.errors,
    timeouts: result.timeouts,
    cpu,
  };
}

function formatReport(r: Report): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const counts = (o: Record<string, number>) =>
    Object.keys(o).length === 0
      ? 'none'
      : Object.entries(o)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k}: ${n(v)}`)
          .join(', ');
  const rows: Array<[string, string]> = [
    ['signups/s (2xx)', r.signupsPerSec.toFixed(1)],
    ['responses', `${n(r.responses)} in ${r.elapsedS} s`],
    ['201 share', `${(r.share201 * 100).toFixed(2)} %`],
    [
      'latency p50 / p90 / p99',
      `${r.latencyMs.p50} / ${r.latencyMs.p90} / ${r.latencyMs.p99} ms (mean ${r.latencyMs.mean}, max ${r.latencyMs.max}; all responses)`,
    ],
    ['non-2xx by status', counts(r.non2xx)],
    ['non-2xx reasons', counts(r.rejections)],
    ['decisions (2xx)', counts(r.decisions)],
    ['socket errors / timeouts', `${r.errors} / ${r.timeouts}`],
  ];
  if (r.cpu) {
    const c = r.cpu;
    rows.push(
      [
        'CPU, % of one core',
        `gatehouse ${c.gatehousePct}, postgres ${c.postgresPct}, redis ${c.redisPct}, ` +
          `bench (autocannon + stand-ins) ${c.benchPct}, other ${c.otherPct}`,
      ],
      ['machine busy', `${c.machineBusyPct} % of ${c.cores} cores`],
    );
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  const title =
    `Gatehouse POST /v1/signups: ${r.connections} connections, ${r.durationS} s measured` +
    `${r.warmupS > 0 ? ` after ${r.warmupS} s warm-up` : ''} (Node ${r.node})`;
  return `${title}\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const say = (line: string) => process.stderr.write(`${line}\n`);

  const controller = new AbortController();
  const { signal } = controller;
  let interrupts = 0;
  const onSignal = (name: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) {
      say(`bench: second ${name}, exiting without finishing the clean-up`);
      process.exit(130);
    }
    say(`bench: ${name}, stopping and cleaning up (again to exit at once)`);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // Undone in reverse order, each step on its own, so one failure does not leave the rest behind.
  const cleanups: Array<{ what: string; run: () => Promise<unknown> }> = [];
  const cleanUp = async (): Promise<boolean> => {
    let ok = true;
    for (const step of cleanups.reverse()) {
      try {
        await step.run();
      } catch (err) {
        ok = false;
        say(`bench: clean-up step "${step.what}" failed: ${(err as Error).message}`);
      }
    }
    return ok;
  };

  const runId = randomBytes(6).toString('hex');
  const prefix = `bench${runId}`;
  const databaseUrl = withDatabase(
    process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
    `gatehouse_bench_${runId}`,
  );
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

  try {
    // Checked here so that a schema change shows up as a clear message, not as a child that exits.
    parsePolicy(POLICY_YAML, 'benchmark policy');

    cleanups.push({ what: 'drop database', run: () => dropDatabase(databaseUrl) });
    await ensureDatabase(databaseUrl);
    await applyMigrations(databaseUrl);
    signal.throwIfAborted();
    cleanups.push({ what: 'delete Redis keys', run: () => deleteRedisPrefix(redisUrl, prefix) });

    const siteverify = await startSiteverifyServer({ mode: 'hcaptcha' });
    cleanups.push({ what: 'close siteverify stand-in', run: () => siteverify.close() });
    const webhook = await startWebhookReceiver();
    cleanups.push({ what: 'close webhook receiver', run: () => webhook.close() });

    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'));
    cleanups.push({ what: 'remove policy file', run: () => rm(dir, { recursive: true, force: true }) });
    const policyPath = join(dir, 'policy.yaml');
    await writeFile(policyPath, POLICY_YAML);

    const adminToken = randomBytes(24).toString('hex');
    const env: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => INHERITED.test(name)),
    );
    Object.assign(env, {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      GATEHOUSE_ADMIN_TOKEN: adminToken,
      // Without one the server generates a pepper and warns; a fixed one keeps the start quiet.
      GATEHOUSE_PEPPER: randomBytes(32).toString('hex'),
      CAPTCHA_PROVIDER: 'hcaptcha',
      CAPTCHA_SECRET: HCAPTCHA_TEST_SECRET,
      CAPTCHA_VERIFY_URL: siteverify.url,
      NOTIFIER: 'webhook',
      NOTIFY_WEBHOOK_URL: webhook.url,
      NOTIFY_WEBHOOK_SECRET: randomBytes(24).toString('hex'),
      POLICY_PATH: policyPath,
      EMAIL_MX_CHECK: 'false',
      SHUTDOWN_TIMEOUT_MS: '10000',
    });

    // A server that warns once per request would drown the report; the first lines tell the story.
    let shown = 0;
    let suppressed = 0;
    const gatehouse = startGatehouseProcess({
      root: ROOT,
      env,
      signal,
      onOutput: (line) => {
        if (shown < 20) {
          shown++;
          say(`[gatehouse] ${line}`);
        } else suppressed++;
      },
    });
    cleanups.push({
      what: 'stop Gatehouse',
      run: async () => {
        await gatehouse.stop();
        if (suppressed > 0) say(`bench: ${suppressed} more Gatehouse output line(s) not shown`);
      },
    });
    const url = await gatehouse.ready;
    say(`bench: Gatehouse (pid ${gatehouse.pid}) ready at ${url}; database ${databaseUrl}, prefix ${prefix}`);

    const created = await postJson(
      `${url}/v1/tokens`,
      adminToken,
      { name: 'signup benchmark', scopes: ['signup'] },
      signal,
    );
    if (created.status !== 201) throw new Error(`token creation answered ${created.status}: ${created.text}`);
    const token = (JSON.parse(created.text) as { token: string }).token;

    const ids = createIdentityFactory(runId);
    // One signup by hand first: a misconfiguration (captcha, policy) then fails with its reason,
    // instead of as a run of nothing but 4xx/5xx.
    const probe = await postJson(`${url}/v1/signups`, token, ids.next(), signal);
    if (probe.status !== 201) throw new Error(`preflight signup answered ${probe.status}: ${probe.text}`);

    const load = (seconds: number, outcomes: Outcomes) =>
      runAutocannon(
        {
          url,
          connections: opts.connections,
          duration: seconds,
          requests: signupRequests(ids, token, outcomes),
        },
        signal,
      );

    if (opts.warmup > 0) {
      say(`bench: warming up for ${opts.warmup} s`);
      await load(opts.warmup, { decisions: new Map(), rejections: new Map() });
      signal.throwIfAborted();
      // autocannon drops its sockets at the end with requests still in flight; let the server
      // finish those before the measured run starts.
      await new Promise((r) => setTimeout(r, 500));
      // Frees the record of every request so far; tokens stay unique anyway.
      siteverify.reset();
    }

    say(`bench: measuring for ${opts.duration} s with ${opts.connections} connections`);
    const outcomes: Outcomes = { decisions: new Map(), rejections: new Map() };
    const cpuBefore = sampleCpu();
    const result = await load(opts.duration, outcomes);
    const cpuAfter = sampleCpu();
    signal.throwIfAborted();

    const cpu =
      cpuBefore && cpuAfter
        ? cpuShare(cpuBefore, cpuAfter, {
            bench: process.pid,
            gatehouse: gatehouse.pid,
            database: databaseName(databaseUrl),
          })
        : null;
    // As after the warm-up: requests cut off when autocannon stopped are still running in the server,
    // and a SIGTERM now would make their ends (closed pools, failed enqueues) look like problems.
    await new Promise((r) => setTimeout(r, Math.min(5_000, Math.max(500, 2 * result.latency.p99))));
    const report = buildReport(opts, result, outcomes, cpu);
    const table = formatReport(report);
    if (opts.json) {
      process.stderr.write(table);
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      process.stdout.write(table);
    }
    return (await cleanUp()) ? 0 : 1;
  } catch (err) {
    const interrupted = signal.aborted;
    if (!interrupted) {
      const e = err as Error;
      say(`bench: failed: ${(process.env.BENCH_DEBUG ? e.stack : e.message) ?? String(err)}`);
    }
    await cleanUp();
    return interrupted ? 130 : 1;
  }
}

// Explicit exit: a library handle left open (a pg or Redis socket) must not keep a finished
// benchmark hanging.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
