// Enforcement benchmark: `tsx bench/enforce.ts [--duration 10] [--connections 32] [--rounds 3] [--json]`
// (also --warmup <s>, --accounts <n>, --decisions <n>, --rlf-autopipelining, --profile,
// --profile-dir <dir>, --node-flags="<flags for the Gatehouse process>", --half-rate <req/s>).
//
// POST /v1/enforce on a tier that charges every request in five dimensions (key, user, device, ip,
// asn) over two windows each (1 minute, 24 hours) and appends a usage event, over 1000 accounts with
// one key each, measured twice (see TARGETS: with the key cache as the interleaving leaves it, and
// with every key cached), then once more with every key cached on a Gatehouse that serves the route
// on node:http (ENFORCE_WIRE=false: what reading it straight from the socket saves), against
//   - express+rlf: Express 5, express.json() and one rate-limiter-flexible RateLimiterRedis consume,
//   - bare: node:http that only parses the JSON body (the ceiling on this machine),
//   - floor: the request read from the socket as Gatehouse reads it (src/http/wire.ts), its body
//     parsed, and one script call with a decision's shape that runs the same Redis commands with
//     no logic, answered in Gatehouse's shape (the ceiling of one script call per decision).
// Every server and the load generator run as separate processes; targets take turns within each
// round so that machine noise hits all of them alike, and each run reports the CPU time per request
// of the server and of Redis, which other load on the machine moves far less than req/s, and the
// server's peak resident memory. Every server runs with the Node flags of `start:api`. Then:
// Gatehouse's latency at half its saturation rate, paced once per round with the floor at the same
// rate and judged on the median p99 (and the bare endpoint's at half of its own, the tail this
// machine gives a server that does almost nothing; and Gatehouse's own request-duration histogram
// over its paced runs, which tells how much of that tail lies inside the server's span), Redis
// commands per decision and Redis
// CPU inside the script against a floor (INFO commandstats), and with --profile a CPU profile of
// Gatehouse at saturation (its measured window only) and profiles of Gatehouse and the floor at
// the half-load rate, compared in µs per answered request. (V8's profiler samples wall time on the
// thread: a syscall that waits, writev above all, shows there at its wall time, not its CPU time.)
//
// Everything it creates is removed at the end, on failure and on Ctrl-C too: a database
// gatehouse_bench_<random>, Redis keys under a random prefix, a temporary directory.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { applyMigrations, dropDatabase, ensureDatabase, withDatabase } from '../src/db/migrate.ts';
import { hmacHex } from '../src/lib/secrets.ts';
import {
  type CpuSnapshot,
  cpuPercent,
  cpuSnapshot,
  type LoadConfig,
  type LoadMode,
  type LoadResult,
  type ManagedChild,
  MEASURED,
  MEASURING,
  machineBusyPercent,
  median,
  peakRssMib,
  startChild,
  stopAllChildren,
} from './lib/enforce-common.ts';
import { type ProfileSummary, summariseProfile } from './lib/enforce-profile.ts';
import {
  callsDelta,
  commandCalls,
  deleteMatching,
  SCRIPT_ENTRY_COMMANDS,
  serverInfo,
} from './lib/enforce-redis.ts';
import { measureScriptCost } from './lib/enforce-script-floor.ts';
import {
  BENCH_TIER,
  benchPolicyYaml,
  buildBodies,
  createKeys,
  createServiceToken,
  DIMENSIONS,
  insertAccounts,
  routableAddresses,
  WINDOWS_PER_DIMENSION,
} from './lib/enforce-setup.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const PATH = '/v1/enforce';
// `gatehouse` runs as it comes: the key cache holds a key for 30 s (src/keys/service.ts), the other
// targets' runs in between take about that long, so most keys are looked up in PostgreSQL again
// during its run, as a key used less often than every 30 s is in production. `gatehouse (keys
// cached)` runs right after one call per key, so it measures the decision itself.
const CACHED = 'gatehouse (keys cached)';
// The same, with ENFORCE_WIRE=false: the enforcement route on node:http, what src/http/wire.ts saves.
const NODE_HTTP = 'gatehouse on node:http (keys cached)';
const TARGETS = ['gatehouse', CACHED, NODE_HTTP, 'express+rlf', 'bare', 'floor'] as const;
type Target = (typeof TARGETS)[number];
const isGatehouse = (t: Target) => t === 'gatehouse' || t === CACHED || t === NODE_HTTP;
const GOALS = { vsExpress: 2.5, vsBare: 0.5, p99HalfLoadMs: 5 };

// --- arguments -------------------------------------------------------------------------------

const { values: argv } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    accounts: { type: 'string', default: '1000' },
    decisions: { type: 'string', default: '1000' },
    json: { type: 'boolean', default: false },
    'rlf-autopipelining': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    'node-flags': { type: 'string', default: '' },
    'half-rate': { type: 'string' },
  },
  strict: true,
});

function positiveInt(name: string, raw: string | undefined, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    process.stderr.write(`bench/enforce: --${name} must be an integer from 1 to ${max}\n`);
    process.exit(2);
  }
  return n;
}
const opts = {
  duration: positiveInt('duration', argv.duration, 3600),
  connections: positiveInt('connections', argv.connections, 10_000),
  rounds: positiveInt('rounds', argv.rounds, 100),
  warmup: Number(argv.warmup) >= 0 ? Number(argv.warmup) : 2,
  accounts: positiveInt('accounts', argv.accounts, 100_000),
  decisions: positiveInt('decisions', argv.decisions, 1_000_000),
  json: argv.json,
  rlfAutopipelining: argv['rlf-autopipelining'],
  profile: argv.profile || argv['profile-dir'] !== undefined,
  profileDir: argv['profile-dir'],
  /** V8/Node flags for the Gatehouse process only, after those of `start:api`, e.g. "--max-semi-space-size=32". */
  nodeFlags: (argv['node-flags'] ?? '').split(/\s+/).filter((f) => f !== ''),
  // A fixed rate for the latency runs instead of half of this run's saturation: for comparing two
  // builds (or two machines) at the same load.
  halfRate:
    argv['half-rate'] === undefined ? undefined : positiveInt('half-rate', argv['half-rate'], 1_000_000),
};

const log = (msg: string) => process.stderr.write(`[bench:enforce] ${msg}\n`);

// --- resources and their removal ---------------------------------------------------------------

const baseDatabaseUrl =
  process.env.BENCH_DATABASE_URL ??
  process.env.DATABASE_URL ??
  'postgresql://postgres@127.0.0.1:5432/gatehouse';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const suffix = randomBytes(5).toString('hex');
const dbName = `gatehouse_bench_${suffix}`;
const databaseUrl = withDatabase(baseDatabaseUrl, dbName);
const prefix = `bench${suffix}`;
const tmp = mkdtempSync(join(tmpdir(), 'gatehouse-bench-enforce-'));
const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
redis.on('error', () => undefined);
let databaseCreated = false;

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren().catch((err: unknown) => log(`stopping processes: ${String(err)}`));
    try {
      if (redis.status === 'ready') {
        const n = await deleteMatching(redis, [`{${prefix}:*`, `${prefix}:*`]);
        log(`deleted ${n} Redis keys under ${prefix}`);
      }
    } catch (err) {
      log(`could not delete the Redis keys under ${prefix}: ${(err as Error).message}`);
    }
    redis.disconnect();
    if (databaseCreated) {
      try {
        await dropDatabase(databaseUrl);
        log(`dropped database ${dbName}`);
      } catch (err) {
        log(`could not drop database ${dbName}: ${(err as Error).message}`);
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// --- processes ------------------------------------------------------------------------------

const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`;
// One pepper for every Gatehouse process of the run: keys are stored as an HMAC with it, so a
// process started with another one would answer invalid_key for all of them.
const pepper = randomBytes(24).toString('hex');
const policyPath = join(tmp, 'policy.yaml');

function gatehouseEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    CAPTCHA_PROVIDER: 'none',
    GATEHOUSE_ADMIN_TOKEN: adminToken,
    GATEHOUSE_PEPPER: pepper,
    POLICY_PATH: policyPath,
  };
}

const READY = /ready at (http:\/\/\S+)/;

/**
 * The Node flags `npm run start:api` serves with (package.json), read from the script itself so
 * that the benchmark measures what users run. Every server here gets them, the baselines too: the
 * same runtime settings for all.
 */
function servingFlags(): string[] {
  const scripts = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    }
  ).scripts;
  const words = (scripts['start:api'] ?? '').split(/\s+/);
  const end = words.indexOf('--import');
  if (words[0] !== 'node' || end === -1)
    throw new Error('package.json: start:api is not `node <flags> --import tsx …`');
  return words.slice(1, end);
}
const SERVING_FLAGS = servingFlags();

function startGatehouse(name: string, cpuProfileDir?: string, env: NodeJS.ProcessEnv = {}): ManagedChild {
  // Node itself with tsx as a loader, as `npm run start:api` runs it: the one process that serves
  // gets the flags and, profiled, writes the profile when it exits (src/main.ts drains and exits on
  // SIGTERM).
  const profile = cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`] : [];
  return startChild(
    name,
    process.execPath,
    [...SERVING_FLAGS, ...opts.nodeFlags, ...profile, '--import', 'tsx', 'src/main.ts', 'api'],
    // A drain that overstays ends in process.exit, which still writes the profile; a SIGKILL
    // from stop() would not.
    { cwd: ROOT, env: { ...gatehouseEnv(), SHUTDOWN_TIMEOUT_MS: '15000', ...env }, readyPattern: READY },
  );
}

function startBaseline(kind: 'bare' | 'express' | 'floor', cpuProfileDir?: string): ManagedChild {
  const profile = cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`] : [];
  const command = process.execPath;
  const args = [...SERVING_FLAGS, ...profile, '--import', 'tsx', 'bench/lib/enforce-baselines.ts', kind];
  return startChild(cpuProfileDir ? `${kind} (profiled)` : kind, command, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      REDIS_URL: redisUrl,
      RLF_KEY_PREFIX: `${prefix}:rlf`,
      RLF_AUTOPIPELINING: opts.rlfAutopipelining ? '1' : '0',
      FLOOR_KEY_PREFIX: prefix,
    },
    readyPattern: READY,
  });
}

// --- one load run ----------------------------------------------------------------------------

interface RunCpu {
  serverPct: number;
  redisPct: number;
  loaderPct: number;
  machineBusyPct: number;
  /** Everything else on the machine (other users' processes, the kernel), percent of one core. */
  otherPct: number;
}

interface Run {
  target: Target;
  round: number;
  result: LoadResult;
  cpu: RunCpu | null;
  /** Gatehouse and floor: usage events appended during the measured run (XLEN growth). */
  eventsAppended?: number;
  /** The measured run, in µs of the monotonic clock (to cut a CPU profile to it). */
  windowUs: { fromUs: number; toUs: number };
  /** The server's peak resident memory since it started, read after the run (MiB). */
  serverPeakRssMib: number | null;
}

let runSeq = 0;
let bodiesFile = '';
let enforceHeaders: Record<string, string> = {};
let redisPid = 0;

async function runLoad(
  target: Target,
  server: ManagedChild,
  url: string,
  mode: LoadMode,
  round: number,
  rate?: number,
): Promise<Run> {
  const config: LoadConfig = {
    url,
    path: PATH,
    headers: enforceHeaders,
    bodiesFile,
    connections: opts.connections,
    warmupSec: opts.warmup,
    durationSec: opts.duration,
    mode,
    ...(rate !== undefined ? { rate } : {}),
    timeoutSec: 10,
  };
  const configPath = join(tmp, `load-${++runSeq}.json`);
  writeFileSync(configPath, JSON.stringify(config));
  let cpu0: CpuSnapshot | null = null;
  let cpu1: CpuSnapshot | null = null;
  let xlen0: Promise<number> | undefined;
  let xlen1: Promise<number> | undefined;
  const stream = target === 'floor' ? `{${prefix}:lim}:floor:usage` : `{${prefix}:lim}:usage`;
  const appends = isGatehouse(target) || target === 'floor';
  const nowUs = () => Number(process.hrtime.bigint() / 1000n);
  const windowUs = { fromUs: 0, toUs: 0 };
  let loaderPid = 0;
  const loader = startChild(`load ${target}`, TSX, ['bench/lib/enforce-load.ts', configPath], {
    cwd: ROOT,
    env: process.env,
    collectStdout: true,
    onLine: (line) => {
      if (line === MEASURING) {
        windowUs.fromUs = nowUs();
        cpu0 = cpuSnapshot([server.pid, loaderPid], [redisPid]);
        if (appends) xlen0 = redis.xlen(stream);
      } else if (line === MEASURED) {
        windowUs.toUs = nowUs();
        cpu1 = cpuSnapshot([server.pid, loaderPid], [redisPid]);
        if (appends) xlen1 = redis.xlen(stream);
      }
    },
  });
  loaderPid = loader.pid;
  const out = await loader.output;
  const last = out.trim().split('\n').at(-1) ?? '';
  const result = JSON.parse(last) as LoadResult;
  const a = cpu0 as CpuSnapshot | null;
  const b = cpu1 as CpuSnapshot | null;
  let cpu: RunCpu | null = null;
  if (a && b) {
    const serverPct = cpuPercent(a, b, server.pid, 'group');
    const redisPct = cpuPercent(a, b, redisPid, 'pid');
    const machineBusyPct = machineBusyPercent(a, b);
    const otherPct = Math.max(
      0,
      machineBusyPct * availableParallelism() - serverPct - redisPct - result.loaderCpuPct,
    );
    cpu = { serverPct, redisPct, loaderPct: result.loaderCpuPct, machineBusyPct, otherPct };
  }
  const run: Run = { target, round, result, cpu, windowUs, serverPeakRssMib: peakRssMib(server.pid) };
  if (xlen0 && xlen1) run.eventsAppended = (await xlen1) - (await xlen0);
  return run;
}

// --- sequential decisions and Redis command counts ----------------------------------------------

interface Decision {
  decision?: string;
  reason?: string;
  limits?: unknown[];
}

function postOnce(agent: Agent, url: string, body: string): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: 'POST',
        path: PATH,
        headers: { ...enforceHeaders, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const EXPECTED_WINDOWS = DIMENSIONS.length * WINDOWS_PER_DIMENSION;

/**
 * True when Gatehouse allowed the call and charged it in every window of the tier, false for a
 * fail-mode answer (Redis missed ENFORCE_REDIS_TIMEOUT_MS: it happens on an overloaded machine);
 * anything else means the benchmark is not measuring what it says, and throws.
 */
function checkDecision(status: number, text: string): boolean {
  const d = JSON.parse(text) as Decision;
  if (status === 200 && d.decision === 'deny' && d.reason === 'limiter_unavailable') return false;
  if (status !== 200 || d.decision !== 'allow' || d.limits?.length !== EXPECTED_WINDOWS) {
    throw new Error(
      `expected an allow over ${EXPECTED_WINDOWS} windows, got ${status} ${text.slice(0, 300)}`,
    );
  }
  return true;
}

interface CommandCounts {
  decisions: number;
  seconds: number;
  topLevel: { evalsha: number; eval: number; other: number; perDecision: number };
  insideScript: { xadd: number; total: number; perDecision: number };
  totalPerDecision: number;
  /** Command calls per decision inside the script, by name. */
  byCommand: Record<string, number>;
  /** Commands other clients ran on this Redis during an idle interval as long as the measurement. */
  idleNoise: number;
  /** Redis 7 counts the commands a script runs in commandstats too: seen here (not assumed). */
  scriptCommandsCounted: boolean;
  /** Calls answered by the fail mode because Redis did not answer in time (still counted above). */
  failModeAnswers: number;
}

let gatehouseProcess: ManagedChild | undefined;
let nodeHttpProcess: ManagedChild | undefined;

/**
 * Why a call did not get the expected allow: the key's row in PostgreSQL, the same call again after
 * the key cache's 2 s negative TTL, and what Gatehouse logged. Only on failure.
 */
async function diagnose(url: string, body: string, first: { status: number; text: string }): Promise<string> {
  const key = (JSON.parse(body) as { key: string }).key;
  const lines = [`first answer: ${first.status} ${first.text.slice(0, 300)}`, `key ${key.slice(0, 16)}…`];
  try {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const rows = await client.query(
      'SELECT k.id, k.status, k.expires_at, a.status AS account_status FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = $1',
      [hmacHex(pepper, key)],
    );
    await client.end();
    lines.push(`row: ${JSON.stringify(rows.rows[0] ?? null)}`);
  } catch (err) {
    lines.push(`row lookup failed: ${(err as Error).message}`);
  }
  await new Promise((r) => setTimeout(r, 2_500));
  const agent = new Agent({ keepAlive: false });
  const again = await postOnce(agent, url, body).catch((err: unknown) => ({ status: 0, text: String(err) }));
  agent.destroy();
  lines.push(`same call 2.5 s later: ${again.status} ${again.text.slice(0, 300)}`);
  lines.push(`gatehouse output:\n${gatehouseProcess?.tail() ?? '(none)'}`);
  lines.push(`gatehouse on node:http output:\n${nodeHttpProcess?.tail() ?? '(none)'}`);
  return lines.join('\n  ');
}

async function expectAllow(url: string, agent: Agent, body: string): Promise<boolean> {
  const r = await postOnce(agent, url, body);
  try {
    return checkDecision(r.status, r.text);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n  ${await diagnose(url, body, r)}`);
  }
}

/**
 * One call per key (bodies[i] carries key i), 8 at a time, so that every key lookup is cached and
 * no later call waits for PostgreSQL; the first call of a fresh limiter also loads the script.
 */
/**
 * Gatehouse's own request-duration histogram for POST /v1/enforce (its /metrics): cumulative
 * counts by bucket bound in seconds, every status summed. Null when the metrics cannot be read.
 */
async function enforceSpans(url: string): Promise<Map<number, number> | null> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return null;
    const counts = new Map<number, number>();
    const line = /^gatehouse_http_request_duration_seconds_bucket\{([^}]*)\} (\d+)$/gm;
    for (const [, labels, count] of (await res.text()).matchAll(line)) {
      if (!labels!.includes('route="/v1/enforce"')) continue;
      const le = /le="([^"]+)"/.exec(labels!)?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
      counts.set(bound, (counts.get(bound) ?? 0) + Number(count));
    }
    return counts;
  } catch {
    return null;
  }
}

/** "p50 <= 1 ms, p99 <= 10 ms, 98.4% within 5 ms", or why there is no figure. */
function spanSummary(spans: Map<number, number> | null): string {
  if (!spans) return 'n/a (its /metrics could not be read)';
  const p50 = spanQuantile(spans, 0.5);
  const p99 = spanQuantile(spans, 0.99);
  const total = spans.get(Number.POSITIVE_INFINITY) ?? 0;
  const goal = spans.get(GOALS.p99HalfLoadMs / 1000);
  if (!p50 || !p99 || goal === undefined) return 'n/a (no decisions counted)';
  const bound = (q: { boundMs: number }) =>
    Number.isFinite(q.boundMs) ? `<= ${q.boundMs} ms` : '> the last bucket';
  return (
    `p50 ${bound(p50)}, p99 ${bound(p99)}, ${((100 * goal) / total).toFixed(1)}% within ` +
    `${GOALS.p99HalfLoadMs} ms (${int(total)} decisions)`
  );
}

/** `after − before`, added into `into` (the paced runs of every round together). */
function addSpans(into: Map<number, number>, before: Map<number, number>, after: Map<number, number>): void {
  for (const [bound, n] of after) into.set(bound, (into.get(bound) ?? 0) + n - (before.get(bound) ?? 0));
}

/** The smallest bucket bound (ms) that holds at least the share q of the spans, and that share. */
function spanQuantile(spans: Map<number, number>, q: number): { boundMs: number; share: number } | null {
  const bounds = [...spans.keys()].sort((a, b) => a - b);
  const total = spans.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total === 0) return null;
  for (const b of bounds) {
    const share = (spans.get(b) ?? 0) / total;
    if (share >= q) return { boundMs: Math.round(b * 1e6) / 1e3, share };
  }
  return null;
}

async function callEveryKey(url: string, bodies: readonly string[], keyCount: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  try {
    const warm = bodies.slice(0, Math.max(keyCount, 20));
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < warm.length) await expectAllow(url, agent, warm[next++]!);
      }),
    );
  } finally {
    agent.destroy();
  }
}

async function countCommands(
  url: string,
  bodies: readonly string[],
  keyCount: number,
): Promise<CommandCounts> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await callEveryKey(url, bodies, keyCount);
    const n = opts.decisions;
    const before = await commandCalls(redis);
    const t0 = performance.now();
    let failModeAnswers = 0;
    for (let i = 0; i < n; i++) {
      if (!(await expectAllow(url, agent, bodies[(i * 31) % bodies.length]!))) failModeAnswers++;
    }
    const seconds = (performance.now() - t0) / 1000;
    const delta = callsDelta(before, await commandCalls(redis));
    delta.delete('info'); // our own INFO commandstats

    // Same length of time with no calls: whatever other clients of this Redis did meanwhile.
    const idle0 = await commandCalls(redis);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const idle = callsDelta(idle0, await commandCalls(redis));
    idle.delete('info');
    const idleNoise = [...idle.values()].reduce((a, b) => a + b, 0);

    let top = 0;
    let inside = 0;
    const byCommand: Record<string, number> = {};
    for (const [name, calls] of delta) {
      if (SCRIPT_ENTRY_COMMANDS.includes(name)) top += calls;
      else {
        inside += calls;
        byCommand[name] = calls / n;
      }
    }
    const evalsha = delta.get('evalsha') ?? 0;
    const evalCalls = delta.get('eval') ?? 0;
    return {
      decisions: n,
      seconds,
      topLevel: { evalsha, eval: evalCalls, other: top - evalsha - evalCalls, perDecision: top / n },
      insideScript: { xadd: delta.get('xadd') ?? 0, total: inside, perDecision: inside / n },
      totalPerDecision: (top + inside) / n,
      byCommand,
      idleNoise,
      scriptCommandsCounted: (delta.get('hmget') ?? 0) > 0,
      failModeAnswers,
    };
  } finally {
    agent.destroy();
  }
}

// --- report ----------------------------------------------------------------------------------

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-');
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const pass = (ok: boolean) => (ok ? 'PASS' : 'MISS');

interface TargetSummary {
  rps: number;
  p50: number;
  p99: number;
  serverCpuPct: number;
  redisCpuPct: number;
  loaderCpuPct: number;
  otherCpuPct: number;
  /** CPU time per answered request: unlike req/s, it barely moves when other processes compete. */
  serverUsPerReq: number;
  redisUsPerReq: number;
  /** The most the server process held in memory at once, up to its last run (MiB). */
  serverPeakRssMib: number;
}

/** Percent of one core at `rps` answers per second, as CPU µs per answer. */
const usPerRequest = (pct: number, rps: number) => (rps > 0 ? (pct * 1e4) / rps : Number.NaN);

function summariseTarget(runs: readonly Run[]): TargetSummary {
  const cpu = (pick: (c: RunCpu) => number) => median(runs.flatMap((r) => (r.cpu ? [pick(r.cpu)] : [])));
  return {
    rps: median(runs.map((r) => r.result.rps)),
    p50: median(runs.map((r) => r.result.latency.p50)),
    p99: median(runs.map((r) => r.result.latency.p99)),
    serverCpuPct: cpu((c) => c.serverPct),
    redisCpuPct: cpu((c) => c.redisPct),
    loaderCpuPct: cpu((c) => c.loaderPct),
    otherCpuPct: cpu((c) => c.otherPct),
    serverUsPerReq: median(runs.flatMap((r) => (r.cpu ? [usPerRequest(r.cpu.serverPct, r.result.rps)] : []))),
    redisUsPerReq: median(runs.flatMap((r) => (r.cpu ? [usPerRequest(r.cpu.redisPct, r.result.rps)] : []))),
    serverPeakRssMib: Math.max(...runs.map((r) => r.serverPeakRssMib ?? Number.NaN)),
  };
}

function printProfile(title: string, p: ProfileSummary): void {
  console.log(
    `\nGatehouse CPU profile at saturation, ${title} (${f1(p.busyMs / 1000)} s busy of ${f1(p.wallMs / 1000)} s; % of busy time)`,
  );
  console.log('  top self time:');
  for (const r of p.topSelf.slice(0, 20)) console.log(`    ${f1(r.pct).padStart(5)}%  ${r.name}`);
  console.log('  by package / folder (self time):');
  for (const r of p.byPackage.slice(0, 15)) console.log(`    ${f1(r.pct).padStart(5)}%  ${r.name}`);
  console.log('  Gatehouse functions, inclusive of synchronous callees:');
  for (const r of p.srcInclusive.slice(0, 15)) console.log(`    ${f1(r.pct).padStart(5)}%  ${r.name}`);
}

/** Profiled CPU per answered request (main thread, sampled), Gatehouse beside the floor. */
interface PerRequestComparison {
  gatehouse: { busyUsPerReq: number; rps: number };
  floor: { busyUsPerReq: number; rps: number };
  byPackage: Array<{ name: string; gatehouseUs: number; floorUs: number }>;
  byFunction: Array<{ name: string; gatehouseUs: number; floorUs: number }>;
}

function comparePerRequest(
  g: { summary: ProfileSummary; run: Run },
  f: { summary: ProfileSummary; run: Run },
): PerRequestComparison {
  // Requests answered inside the profiled window, which is the measured window of the run.
  const answered = (r: Run) => Math.max(1, r.result.rps * ((r.windowUs.toUs - r.windowUs.fromUs) / 1e6));
  const gn = answered(g.run);
  const fn = answered(f.run);
  const merge = (a: ProfileSummary['byPackage'], b: ProfileSummary['byPackage']) => {
    const rows = new Map<string, { name: string; gatehouseUs: number; floorUs: number }>();
    const row = (name: string) => {
      let r = rows.get(name);
      if (!r) {
        r = { name, gatehouseUs: 0, floorUs: 0 };
        rows.set(name, r);
      }
      return r;
    };
    for (const x of a) row(x.name).gatehouseUs += (x.ms * 1000) / gn;
    for (const x of b) row(x.name).floorUs += (x.ms * 1000) / fn;
    return [...rows.values()].sort(
      (p, q) => Math.abs(q.gatehouseUs - q.floorUs) - Math.abs(p.gatehouseUs - p.floorUs),
    );
  };
  return {
    gatehouse: { busyUsPerReq: (g.summary.busyMs * 1000) / gn, rps: g.run.result.rps },
    floor: { busyUsPerReq: (f.summary.busyMs * 1000) / fn, rps: f.run.result.rps },
    byPackage: merge(g.summary.byPackage, f.summary.byPackage),
    byFunction: merge(g.summary.topSelf, f.summary.topSelf),
  };
}

function printPerRequest(rate: number, c: PerRequestComparison): void {
  const us = (v: number) => f1(v).padStart(6);
  console.log(
    `\nCPU profile per answered request at ${int(rate)} req/s (paced), main thread: Gatehouse (every key cached) ` +
      `${f1(c.gatehouse.busyUsPerReq)} µs, floor ${f1(c.floor.busyUsPerReq)} µs`,
  );
  console.log(
    '  by package / folder, largest differences first (Gatehouse, floor, difference, µs per request):',
  );
  for (const r of c.byPackage.slice(0, 15))
    console.log(`    ${us(r.gatehouseUs)} ${us(r.floorUs)} ${us(r.gatehouseUs - r.floorUs)}  ${r.name}`);
  console.log('  by function (self time), largest differences first:');
  for (const r of c.byFunction.slice(0, 25))
    console.log(`    ${us(r.gatehouseUs)} ${us(r.floorUs)} ${us(r.gatehouseUs - r.floorUs)}  ${r.name}`);
}

// --- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  await redis.connect();
  const rinfo = await serverInfo(redis);
  redisPid = rinfo.pid;
  log(`Redis ${rinfo.version} (pid ${rinfo.pid}), Node ${process.version}, ${availableParallelism()} cores`);
  log(`servers run with start:api's Node flags: ${SERVING_FLAGS.join(' ') || '(none)'}`);

  log(`creating database ${dbName}`);
  await ensureDatabase(databaseUrl);
  databaseCreated = true;
  await applyMigrations(databaseUrl, { log: () => undefined });
  writeFileSync(policyPath, benchPolicyYaml(1_000_000_000));

  const gatehouse = startGatehouse('gatehouse');
  gatehouseProcess = gatehouse;
  const onNode = startGatehouse(NODE_HTTP, undefined, { ENFORCE_WIRE: 'false' });
  nodeHttpProcess = onNode;
  const express = startBaseline('express');
  const bare = startBaseline('bare');
  const floor = startBaseline('floor');
  const [gatehouseUrl, onNodeUrl, expressUrl, bareUrl, floorUrl] = await Promise.all([
    gatehouse.ready,
    onNode.ready,
    express.ready,
    bare.ready,
    floor.ready,
  ]);
  log(
    `gatehouse ${gatehouseUrl}, on node:http ${onNodeUrl}, express+rlf ${expressUrl}, bare ${bareUrl}, floor ${floorUrl}`,
  );

  const keysToken = await createServiceToken(gatehouseUrl, adminToken, ['keys']);
  const enforceToken = await createServiceToken(gatehouseUrl, adminToken, ['enforce']);
  const accountIds = await insertAccounts(databaseUrl, opts.accounts);
  log(`${accountIds.length} accounts (tier ${BENCH_TIER}); creating one key each through the API`);
  const keys = await createKeys(gatehouseUrl, keysToken, accountIds);
  const ips = await routableAddresses(1999);
  const bodies = buildBodies({ keys, ips, fingerprints: 1201, count: Math.max(2048, keys.length * 2) });
  bodiesFile = join(tmp, 'bodies.json');
  writeFileSync(bodiesFile, JSON.stringify(bodies));
  enforceHeaders = { authorization: `Bearer ${enforceToken}`, 'content-type': 'application/json' };

  // Every server answers the same bodies before anything is timed.
  const probe = new Agent({ keepAlive: true });
  for (const [name, url] of [
    ['express+rlf', expressUrl],
    ['bare', bareUrl],
    ['floor', floorUrl],
  ] as const) {
    const r = await postOnce(probe, url, bodies[0]!);
    if (r.status !== 200) throw new Error(`${name} answered ${r.status}: ${r.text.slice(0, 200)}`);
  }
  let allowed = 0;
  for (let i = 0; i < 50 && allowed < 5; i++) {
    if (await expectAllow(gatehouseUrl, probe, bodies[i]!)) allowed++;
  }
  if (allowed < 5) throw new Error('Gatehouse kept answering limiter_unavailable: Redis is too slow');
  probe.destroy();

  const urls: Record<Target, [ManagedChild, string]> = {
    gatehouse: [gatehouse, gatehouseUrl],
    [CACHED]: [gatehouse, gatehouseUrl],
    [NODE_HTTP]: [onNode, onNodeUrl],
    'express+rlf': [express, expressUrl],
    bare: [bare, bareUrl],
    floor: [floor, floorUrl],
  };
  const runs: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const target of TARGETS) {
      const [server, url] = urls[target];
      log(`round ${round}/${opts.rounds}: ${target} (${opts.warmup} s warm-up, ${opts.duration} s)`);
      if (target === CACHED || target === NODE_HTTP) await callEveryKey(url, bodies, keys.length);
      const run = await runLoad(target, server, url, 'closed', round);
      runs.push(run);
      const r = run.result;
      log(
        `  ${int(r.rps)} req/s, p50 ${f2(r.latency.p50)} ms, p99 ${f2(r.latency.p99)} ms` +
          (r.non2xx + r.errors + r.timeouts > 0
            ? `, non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}`
            : '') +
          (run.eventsAppended !== undefined ? `, ${int(run.eventsAppended)} events appended` : ''),
      );
    }
  }
  // Nothing after the rounds needs it: it would only take memory from the rest.
  await onNode.stop();
  nodeHttpProcess = undefined;
  const summary = Object.fromEntries(
    TARGETS.map((t) => [t, summariseTarget(runs.filter((r) => r.target === t))]),
  ) as Record<Target, TargetSummary>;
  const ratiosOf = (g: TargetSummary) => ({
    vsExpress: g.rps / summary['express+rlf'].rps,
    vsBare: g.rps / summary.bare.rps,
    // The same comparison by server CPU per request (what each would reach on a core of its own).
    cpuVsExpress: summary['express+rlf'].serverUsPerReq / g.serverUsPerReq,
    cpuVsBare: summary.bare.serverUsPerReq / g.serverUsPerReq,
  });
  const ratios = {
    gatehouse: ratiosOf(summary.gatehouse),
    [CACHED]: ratiosOf(summary[CACHED]),
    floor: ratiosOf(summary.floor),
  };
  // How much of the design's ceiling on this machine Gatehouse reaches.
  const ofFloor = {
    rps: summary[CACHED].rps / summary.floor.rps,
    serverCpu: summary.floor.serverUsPerReq / summary[CACHED].serverUsPerReq,
    redisCpu: summary.floor.redisUsPerReq / summary[CACHED].redisUsPerReq,
  };

  const wireVsNode = {
    rps: summary[CACHED].rps / summary[NODE_HTTP].rps,
    serverCpu: summary[NODE_HTTP].serverUsPerReq / summary[CACHED].serverUsPerReq,
  };

  // Half of the cached saturation rate, with every key cached first: the decision's own latency.
  const halfOfSaturation = Math.max(1, Math.round(summary[CACHED].rps / 2));
  const halfRate = opts.halfRate ?? halfOfSaturation;
  if (opts.halfRate !== undefined)
    log(`half load fixed by --half-rate (half of saturation would be ${halfOfSaturation})`);
  log(`half load: ${halfRate} req/s, autocannon --overallRate`);
  await callEveryKey(gatehouseUrl, bodies, keys.length);
  const halfAutocannon = await runLoad(CACHED, gatehouse, gatehouseUrl, 'autocannon-rate', 0, halfRate);
  log(`half load: ${halfRate} req/s, paced open loop`);
  // Gatehouse's own timing of its paced decisions, from the request read to the answer made: what
  // of the tail the loader sees lies inside the server's span (the Redis call included).
  let spans: Map<number, number> | null = new Map();
  const pacedGatehouse = async (round: number): Promise<Run> => {
    await callEveryKey(gatehouseUrl, bodies, keys.length);
    const before = await enforceSpans(gatehouseUrl);
    const run = await runLoad(CACHED, gatehouse, gatehouseUrl, 'paced', round, halfRate);
    const after = await enforceSpans(gatehouseUrl);
    if (spans && before && after) addSpans(spans, before, after);
    else spans = null;
    return run;
  };
  const halfPaced = await pacedGatehouse(0);
  // The same for the bare endpoint: the tail this machine gives a server that does almost nothing.
  const bareHalfRate = Math.max(1, Math.round(summary.bare.rps / 2));
  log(`half load, bare: ${bareHalfRate} req/s, paced open loop`);
  const bareHalfPaced = await runLoad('bare', bare, bareUrl, 'paced', 0, bareHalfRate);
  // The floor at Gatehouse's rate: the tail of a decision's three processes (loader, server, Redis)
  // on this machine, with none of Gatehouse's logic.
  log(`half load, floor: ${halfRate} req/s, paced open loop`);
  const floorHalfPaced = await runLoad('floor', floor, floorUrl, 'paced', 0, halfRate);
  // A p99 of one run rests on its slowest 1% (a few hundred requests), which a stall or two of the
  // machine can move: Gatehouse and the floor run paced once more per further round, taking turns,
  // and the verdict is on the median.
  const pacedRuns = [halfPaced];
  const floorPacedRuns = [floorHalfPaced];
  for (let round = 2; round <= opts.rounds; round++) {
    log(`half load, round ${round}/${opts.rounds}: gatehouse and floor, paced open loop`);
    pacedRuns.push(await pacedGatehouse(round));
    floorPacedRuns.push(await runLoad('floor', floor, floorUrl, 'paced', round, halfRate));
  }
  const p99s = (rs: Run[]) => rs.map((r) => r.result.latency.p99);
  const halfP99 = median(p99s(pacedRuns));
  const floorHalfP99 = median(p99s(floorPacedRuns));

  log(`Redis commands: ${opts.decisions} sequential decisions`);
  const commands = await countCommands(gatehouseUrl, bodies, keys.length);
  log(`Redis CPU inside the script: ${opts.decisions} decisions, then as many of the floor script`);
  const scriptCost = await measureScriptCost(redis, redisUrl, prefix, opts.decisions);

  // Runs with a deficit of appended events are decisions Redis never made (fail-mode answers).
  const appendingRuns = runs
    .filter((r) => isGatehouse(r.target) || r.target === 'floor')
    .concat([halfAutocannon, ...pacedRuns, ...floorPacedRuns]);
  const missingEvents = appendingRuns.filter(
    (r) => r.eventsAppended !== undefined && r.eventsAppended < r.result.ok2xx - opts.connections,
  );

  let profile: { cold: ProfileSummary; cached: ProfileSummary; perRequest: PerRequestComparison } | undefined;
  if (opts.profile) {
    const dir = opts.profileDir ?? join(tmp, 'cpuprofile');
    mkdirSync(dir, { recursive: true });
    await gatehouse.stop();
    const profiled = startGatehouse('gatehouse (profiled)', dir);
    gatehouseProcess = profiled;
    const url = await profiled.ready;
    // A fresh process: the first run looks every key up in PostgreSQL, the second has them cached.
    log(`profiling Gatehouse at saturation, ${opts.duration} s with a cold key cache`);
    const coldRun = await runLoad('gatehouse', profiled, url, 'closed', 0);
    log(`profiling Gatehouse at saturation, ${opts.duration} s with every key cached`);
    await callEveryKey(url, bodies, keys.length);
    const cachedRun = await runLoad(CACHED, profiled, url, 'closed', 0);
    // Then Gatehouse and the floor, each profiled, at one rate: what a decision costs beyond the
    // floor, without the batching a faster server gets at saturation.
    log(`profiling Gatehouse and the floor at ${int(halfRate)} req/s, paced`);
    await callEveryKey(url, bodies, keys.length);
    const pacedRun = await runLoad(CACHED, profiled, url, 'paced', 0, halfRate);
    const floorDir = join(dir, 'floor');
    mkdirSync(floorDir, { recursive: true });
    const floorProfiled = startBaseline('floor', floorDir);
    const floorPacedRun = await runLoad(
      'floor',
      floorProfiled,
      await floorProfiled.ready,
      'paced',
      0,
      halfRate,
    );
    await floorProfiled.stop(60_000);
    const stopping = performance.now();
    // Writing the profile (tens of MB of JSON) takes a while on a busy machine.
    await profiled.stop(60_000);
    const stopSeconds = (performance.now() - stopping) / 1000;
    log(`profiled process stopped in ${f1(stopSeconds)} s`);
    if (stopSeconds > 10) log(`it took long to drain; its output:\n${profiled.tail()}`);
    // One profile per thread: tsx's loader hooks run in a worker of their own. The main thread is
    // the one that was busy.
    const profilesIn = (d: string) =>
      readdirSync(d)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(d, f));
    const busiest = (window: Run['windowUs'], d = dir, top?: number) =>
      profilesIn(d)
        .map((file) => ({ file, summary: summariseProfile(file, ROOT, window, top) }))
        .sort((a, b) => b.summary.busyMs - a.summary.busyMs)[0];
    const cold = busiest(coldRun.windowUs);
    const cached = busiest(cachedRun.windowUs);
    const pacedProfile = busiest(pacedRun.windowUs, dir, Number.POSITIVE_INFINITY);
    const floorProfile = busiest(floorPacedRun.windowUs, floorDir, Number.POSITIVE_INFINITY);
    if (!cold || !cached || !pacedProfile || !floorProfile)
      throw new Error(`no .cpuprofile was written in ${dir}`);
    profile = {
      cold: cold.summary,
      cached: cached.summary,
      perRequest: comparePerRequest(
        { summary: pacedProfile.summary, run: pacedRun },
        { summary: floorProfile.summary, run: floorPacedRun },
      ),
    };
    if (opts.profileDir) log(`profile kept at ${cached.file}`);
  }

  // --- print ---
  const rowsOut: Record<string, Record<string, string>> = {};
  for (const t of TARGETS) {
    const s = summary[t];
    const perRound = runs
      .filter((r) => r.target === t)
      .map((r) => int(r.result.rps))
      .join(' / ');
    rowsOut[t] = {
      'req/s (median)': int(s.rps),
      'p50 ms': f2(s.p50),
      'p99 ms': f2(s.p99),
      'req/s per round': perRound,
      'server CPU %': f1(s.serverCpuPct),
      'Redis CPU %': f1(s.redisCpuPct),
      'loader CPU %': f1(s.loaderCpuPct),
      'other CPU %': f1(s.otherCpuPct),
      'server µs/req': int(s.serverUsPerReq),
      'Redis µs/req': int(s.redisUsPerReq),
      'server peak RSS MiB': int(s.serverPeakRssMib),
    };
  }
  console.log(
    `\nPOST /v1/enforce: ${DIMENSIONS.length} dimensions x ${WINDOWS_PER_DIMENSION} windows + usage event; ` +
      `${opts.connections} connections, ${opts.rounds} rounds x ${opts.duration} s (+${opts.warmup} s warm-up); ` +
      `Node ${process.version} (${SERVING_FLAGS.join(' ') || 'no flags'}), Redis ${rinfo.version}, ` +
      `${availableParallelism()} cores`,
  );
  console.table(rowsOut);
  const halfRow = (r: Run, rate = halfRate) => ({
    'offered req/s': int(rate),
    'achieved req/s': int(r.result.rps),
    'p50 ms': f2(r.result.latency.p50),
    'p99 ms': f2(r.result.latency.p99),
    'p99.9 ms': f2(r.result.latency.p999),
    'p99 from schedule': r.result.fromSchedule ? f2(r.result.fromSchedule.p99) : '-',
    'server CPU %': r.cpu ? f1(r.cpu.serverPct) : '-',
    'other CPU %': r.cpu ? f1(r.cpu.otherPct) : '-',
    // At one rate for all, CPU per request compares the work of a decision without the batching
    // that a faster target gets at saturation (more requests per event-loop turn and per syscall).
    'server µs/req': r.cpu ? int(usPerRequest(r.cpu.serverPct, r.result.rps)) : '-',
    'Redis µs/req': r.cpu ? int(usPerRequest(r.cpu.redisPct, r.result.rps)) : '-',
  });
  console.log(
    opts.halfRate === undefined
      ? "\nGatehouse (keys cached) and floor at half of Gatehouse's saturation rate; bare at half of its own (first paced round)"
      : `\nGatehouse (keys cached) and floor at ${int(halfRate)} req/s (--half-rate); bare at half of its own saturation (first paced round)`,
  );
  console.table({
    'paced (open loop)': halfRow(halfPaced),
    'autocannon -R (bursty)': halfRow(halfAutocannon),
    'bare, paced (open loop)': halfRow(bareHalfPaced, bareHalfRate),
    'floor, paced (open loop)': halfRow(floorHalfPaced),
  });
  console.log(
    `\nRedis commands per decision (${commands.decisions} sequential calls, INFO commandstats):` +
      `\n  top-level: ${f2(commands.topLevel.perDecision)} (evalsha ${commands.topLevel.evalsha}, eval ${commands.topLevel.eval}, other ${commands.topLevel.other})` +
      `\n  inside the script: ${f2(commands.insideScript.perDecision)} (xadd ${commands.insideScript.xadd}) — ` +
      `${commands.scriptCommandsCounted ? `Redis ${rinfo.version} counts them in commandstats` : 'not counted by this Redis'}` +
      `\n  total incl. inside the script: ${f2(commands.totalPerDecision)}` +
      `\n  by command: ${Object.entries(commands.byCommand)
        .filter(([, v]) => v >= 0.05)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${f2(v)}`)
        .join(', ')} (below 0.05 per decision: other clients of this Redis, left out)` +
      `\n  other clients' commands in an idle interval as long: ${commands.idleNoise}` +
      `\n  sequential: ${int(commands.decisions / commands.seconds)} decisions/s on one connection` +
      `\n  Redis CPU per call inside the script (commandstats usec): ${f1(scriptCost.scriptUs)} µs; ` +
      `the same commands with no logic (bench/lib/script-floor.lua): ${f1(scriptCost.floorUs)} µs` +
      (commands.failModeAnswers > 0
        ? `\n  ${commands.failModeAnswers} call(s) got the fail-mode answer (Redis slower than ENFORCE_REDIS_TIMEOUT_MS)`
        : ''),
  );
  const verdict = {
    vsExpress: ratios.gatehouse.vsExpress >= GOALS.vsExpress,
    vsBare: ratios.gatehouse.vsBare >= GOALS.vsBare,
    cachedVsExpress: ratios[CACHED].vsExpress >= GOALS.vsExpress,
    cachedVsBare: ratios[CACHED].vsBare >= GOALS.vsBare,
    // Judged only at half of this run's saturation: a rate fixed by --half-rate is for comparisons.
    p99HalfLoad: opts.halfRate === undefined ? halfP99 < GOALS.p99HalfLoadMs : null,
  };
  const targetLines = (name: string, r: ReturnType<typeof ratiosOf>, okE: boolean, okB: boolean) =>
    `\n  ${name} / express+rlf = ${f2(r.vsExpress)} (goal >= ${GOALS.vsExpress})  ${pass(okE)}` +
    `\n  ${name} / bare        = ${f2(r.vsBare)} (goal >= ${GOALS.vsBare})  ${pass(okB)}` +
    `\n  ${' '.repeat(name.length)}   by server CPU per request (steadier under other load): ` +
    `${f2(r.cpuVsExpress)} x express+rlf, ${f2(r.cpuVsBare)} x bare`;
  console.log(
    '\nTargets' +
      targetLines('gatehouse', ratios.gatehouse, verdict.vsExpress, verdict.vsBare) +
      targetLines(CACHED, ratios[CACHED], verdict.cachedVsExpress, verdict.cachedVsBare) +
      `\n  p99 at ${opts.halfRate === undefined ? 'half saturation' : `${int(halfRate)} req/s (--half-rate)`} (keys cached) = ${f2(halfP99)} ms paced, median of ${pacedRuns.length} (${p99s(pacedRuns).map(f2).join(' / ')}) (goal < ${GOALS.p99HalfLoadMs} ms at half saturation)  ${verdict.p99HalfLoad === null ? 'no verdict at a fixed rate' : pass(verdict.p99HalfLoad)}` +
      `\n              bare at half of its own saturation: p99 ${f2(bareHalfPaced.result.latency.p99)} ms paced` +
      `\n              floor at the same rate as Gatehouse: p99 ${f2(floorHalfP99)} ms paced, median of ${floorPacedRuns.length} (${p99s(floorPacedRuns).map(f2).join(' / ')})` +
      `\n              Gatehouse's own timing of its paced decisions (its request-duration histogram, request read to answer made, warm-ups included): ${spanSummary(spans)}` +
      (missingEvents.length > 0
        ? `\n  WARNING: ${missingEvents.length} run(s) appended fewer events than they got answers: some decisions did not reach Redis`
        : '\n  every Gatehouse and floor run appended one usage event per answered call') +
      '\nThe ceiling of one script call per decision (floor: the same Redis commands, no logic)' +
      `\n  floor / express+rlf = ${f2(ratios.floor.vsExpress)}, floor / bare = ${f2(ratios.floor.vsBare)}` +
      `${ratios.floor.vsExpress < GOALS.vsExpress || ratios.floor.vsBare < GOALS.vsBare ? ': below the goals, so no implementation of this design can meet them here' : ''}` +
      `\n  gatehouse (keys cached) / floor = ${f2(ofFloor.rps)} by req/s; ` +
      `floor's CPU per request / Gatehouse's: server ${f2(ofFloor.serverCpu)}, Redis ${f2(ofFloor.redisCpu)}` +
      '\nHow the enforcement route is served (src/http/wire.ts)' +
      `\n  read from the socket / on node:http (both keys cached) = ${f2(wireVsNode.rps)} by req/s; ` +
      `server CPU per request ${int(summary[CACHED].serverUsPerReq)} µs against ${int(summary[NODE_HTTP].serverUsPerReq)} µs`,
  );
  if (profile) {
    printProfile('cold key cache (a fresh process)', profile.cold);
    printProfile('every key cached', profile.cached);
    printPerRequest(halfRate, profile.perRequest);
  }

  if (opts.json) {
    const runJson = (r: Run) => ({
      target: r.target,
      round: r.round,
      mode: r.result.mode,
      rps: r.result.rps,
      latency: r.result.latency,
      ...(r.result.fromSchedule ? { fromSchedule: r.result.fromSchedule } : {}),
      ...(r.result.autocannon ? { autocannon: r.result.autocannon } : {}),
      ok2xx: r.result.ok2xx,
      non2xx: r.result.non2xx,
      errors: r.result.errors,
      timeouts: r.result.timeouts,
      cpu: r.cpu,
      ...(r.eventsAppended !== undefined ? { eventsAppended: r.eventsAppended } : {}),
    });
    console.log(
      JSON.stringify({
        bench: 'enforce',
        node: process.version,
        redis: rinfo.version,
        cores: availableParallelism(),
        config: {
          duration: opts.duration,
          connections: opts.connections,
          rounds: opts.rounds,
          warmup: opts.warmup,
          accounts: opts.accounts,
          dimensions: DIMENSIONS,
          windowsPerDimension: WINDOWS_PER_DIMENSION,
          rlfAutopipelining: opts.rlfAutopipelining,
        },
        summary,
        ratios,
        ofFloor,
        wireVsNode,
        halfLoad: {
          rate: halfRate,
          paced: runJson(halfPaced),
          autocannonRate: runJson(halfAutocannon),
          // Cumulative counts by bucket bound (s) of Gatehouse's own histogram, every paced round.
          serverSpans: spans ? Object.fromEntries([...spans].map(([b, n]) => [String(b), n])) : null,
        },
        bareHalfLoad: { rate: bareHalfRate, paced: runJson(bareHalfPaced) },
        floorHalfLoad: { rate: halfRate, paced: runJson(floorHalfPaced) },
        pacedRounds: {
          gatehouse: pacedRuns.map(runJson),
          floor: floorPacedRuns.map(runJson),
          halfP99,
          floorHalfP99,
        },
        redisCommands: commands,
        scriptCost,
        goals: GOALS,
        verdict,
        runs: runs.map(runJson),
        ...(profile ? { profile } : {}),
      }),
    );
  }
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  // After Ctrl-C the children are being stopped under the run: what broke then is no news.
  if (!interrupted) log(`failed: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(failed ? 1 : 0);
