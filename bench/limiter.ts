// Limiter benchmark: `tsx bench/limiter.ts [--subjects 1000] [--rounds 3] [--redis redis://…]
// [--callgrind]`.
//
// Redis CPU per decision by how recently the decision's counters were used: the same decision shape
// as bench:enforce (five dimensions, each a hash holding a 1-minute window of 12 buckets and a
// 24-hour window of 96, and the usage event), over many subjects, with the clock driven so that each
// pass meets its counters in a known state:
//   - same bucket:      used a moment ago (the hot path of a busy key),
//   - next bucket:      used in the previous 5 s bucket (a key called every few seconds),
//   - idle 2 minutes:   the minute window has nothing left to count (a key used now and then),
//   - idle 20 minutes:  the same, and the day window has moved on to a new bucket too,
//   - busy all day:     same bucket, for subjects (a tenth as many) used every 45 s over the past
//                       24 hours, so each hash holds all 96 day buckets (~110 fields: Redis scans
//                       a hash kept as a listpack field by field, see sliding-window.lua).
// Then it takes the same-bucket decision apart: bench/lib/script-floor.lua (the same commands on
// the same arguments, no logic), stopped after each step, on hashes in the same state, gives what
// the call with its arguments, the HMGETs, the HSETs and the XADD each add, and the whole script
// over the floor is what its own logic costs.
// It also reports the usage stream's Redis memory per event (MEMORY USAGE over XLEN).
// Figures are Redis's own accounting: the CPU time of its main thread (INFO cpu), which preemption by
// other processes does not inflate, and INFO commandstats (µs inside EVALSHA, which it does; commands
// run inside the script). Run it on an otherwise idle Redis: both are server-wide.
//
// On a shared or virtual machine those CPU figures move by 20% from run to run. `--callgrind` runs
// its own redis-server under valgrind's callgrind and reports the instructions Redis executed per
// decision instead, which repeat to within a few percent whatever else the machine does (and about
// 50 times slower to get: it defaults to 100 subjects and one round). Needs valgrind.
//
// Keys live under a random prefix and are removed at the end.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { type CheckRequest, createSlidingWindowLimiter, type LimitSpec } from '../src/limits/limiter.ts';
import { deleteMatching } from '../src/redis/client.ts';
import { RespClient } from '../src/redis/resp-client.ts';
import { FloorClient, type FloorStage, floorSource, sampleEventFields } from './lib/enforce-script-floor.ts';

const { values: argv } = parseArgs({
  options: {
    subjects: { type: 'string' },
    rounds: { type: 'string' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    callgrind: { type: 'boolean', default: false },
  },
});
const CALLGRIND = argv.callgrind;
const SUBJECTS = Number(argv.subjects ?? (CALLGRIND ? 100 : 1000));
const ROUNDS = Number(argv.rounds ?? (CALLGRIND ? 1 : 3));
if (!Number.isSafeInteger(SUBJECTS) || SUBJECTS < 100 || !Number.isSafeInteger(ROUNDS) || ROUNDS < 1) {
  console.error('--subjects must be an integer >= 100 and --rounds >= 1');
  process.exit(2);
}

const DIMENSIONS = ['key', 'user', 'device', 'ip', 'asn'] as const;
const MINUTE = 60_000;
const prefix = `benchlim${randomBytes(4).toString('hex')}`;
const stream = `{${prefix}:lim}:usage`;

// `parts`: the subjects of the breakdown, kept apart because the floor script writes its own
// counts into the hashes it is given.
type Group = 'sporadic' | 'all-day' | 'parts';

function request(group: Group, subject: number, now: number): CheckRequest {
  const limits = DIMENSIONS.flatMap((d): LimitSpec[] => {
    const key = `{${prefix}:lim}:${group}:${d}:${subject}`;
    return [
      { name: `${d}:1m`, key, slot: 'm', limit: 1e9, windowMs: MINUTE, buckets: 12 },
      { name: `${d}:24h`, key, slot: 'd', limit: 1e9, windowMs: 86_400_000, buckets: 96 },
    ];
  });
  const fields = sampleEventFields(subject, subject, now);
  return {
    now,
    mode: 'enforce',
    cost: 1,
    limits,
    event: { stream, maxLen: 100_000, fields, when: 'always' },
  };
}

interface Stats {
  /** µs inside EVALSHA (commandstats: wall time, so preemption on a busy machine counts too). */
  usec: number;
  /** CPU time of Redis's main thread, µs (networking and parsing included; preemption not). */
  cpuUs: number;
  calls: Map<string, number>;
}

async function stats(redis: Redis): Promise<Stats> {
  const info = await redis.info('all');
  const calls = new Map<string, number>();
  let usec = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    calls.set(m[1]!, Number(m[2]));
    if (m[1] === 'evalsha') usec = Number(m[3]);
  }
  const seconds = (field: string) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const cpuUs = (seconds('used_cpu_user_main_thread') + seconds('used_cpu_sys_main_thread')) * 1e6;
  return { usec, cpuUs, calls };
}

/** A redis-server of our own under callgrind, counting instructions between zero and dump. */
interface Callgrind {
  child: ChildProcess;
  dir: string;
  url: string;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

async function startCallgrind(): Promise<Callgrind> {
  try {
    execFileSync('callgrind_control', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('--callgrind needs valgrind (callgrind_control was not found)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-callgrind-'));
  const port = await freePort();
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${join(dir, 'cg.out')}`,
      'redis-server',
      '--port',
      String(port),
    ].concat(['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]),
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused until valgrind has started the server: retried below
  try {
    for (let waited = 0; ; waited += 500) {
      try {
        await probe.connect();
        await probe.ping();
        break;
      } catch (err) {
        if (waited > 60_000 || child.exitCode !== null) {
          child.kill('SIGKILL');
          rmSync(dir, { recursive: true, force: true });
          throw new Error(`redis-server under valgrind: ${err}`);
        }
        probe.disconnect();
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  } finally {
    probe.disconnect();
  }
  return { child, dir, url };
}

/** Instructions the server ran since the last call (callgrind_control zeroes after each dump). */
function dumpInstructions(cg: Callgrind): number {
  execFileSync('callgrind_control', ['-d', String(cg.child.pid)], { stdio: 'ignore' });
  let total = 0;
  for (const file of readdirSync(cg.dir).filter((f) => /^cg\.out\.\d+$/.test(f))) {
    const text = readFileSync(join(cg.dir, file), 'utf8');
    total += Number((/^summary:\s+(\d+)/m.exec(text) ?? /^totals:\s+(\d+)/m.exec(text))?.[1] ?? 0);
    rmSync(join(cg.dir, file));
  }
  return total;
}

const callgrind = CALLGRIND ? await startCallgrind() : null;
const redisUrl = callgrind?.url ?? argv.redis;
const admin = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
const client = new RespClient({
  url: redisUrl,
  connectTimeoutMs: 2_000,
  commandTimeoutMs: callgrind ? 60_000 : 5_000,
});
const limiter = createSlidingWindowLimiter(client);
const STAGES: readonly FloorStage[] = ['args', 'reads', 'writes', 'all'];
const floorClients = STAGES.map(
  (stage) =>
    new FloorClient(
      { url: redisUrl, connectTimeoutMs: 2_000, commandTimeoutMs: callgrind ? 60_000 : 5_000 },
      stage,
    ),
);
// One limiter per stage for the whole run: a limiter's first call loads its script (EVAL).
const floorLimiters = floorClients.map((c) => createSlidingWindowLimiter(c));

interface PassResult {
  usPerCall: number;
  cpuPerCall: number;
  /** With --callgrind: instructions Redis ran per decision. */
  instructions: number;
  commands: Map<string, number>;
}

const BUSY_SUBJECTS = Math.max(10, Math.round(SUBJECTS / 10));
const BUSY_EVERY = 45_000;

/** Every subject of a group once at `now`, `times` over, 32 calls in flight. */
async function pass(group: Group, now: number, times = 1, by = limiter): Promise<void> {
  const count = group === 'all-day' ? BUSY_SUBJECTS : SUBJECTS;
  for (let t = 0; t < times; t++) {
    for (let i = 0; i < count; i += 32) {
      await Promise.all(
        Array.from({ length: Math.min(32, count - i) }, (_, j) => by.check(request(group, i + j, now))),
      );
    }
  }
}

/** A pass, with Redis's figures for it. */
async function measure(group: Group, now: number, times = 1, by = limiter): Promise<PassResult> {
  const before = await stats(admin);
  if (callgrind) dumpInstructions(callgrind);
  await pass(group, now, times, by);
  const instructions = callgrind ? dumpInstructions(callgrind) : 0;
  const after = await stats(admin);
  const evalsha = (after.calls.get('evalsha') ?? 0) - (before.calls.get('evalsha') ?? 0);
  const commands = new Map<string, number>();
  for (const [name, n] of after.calls) {
    if (name === 'evalsha' || name === 'info') continue;
    const d = n - (before.calls.get(name) ?? 0);
    if (d > 0) commands.set(name, d / Math.max(1, evalsha));
  }
  const per = (us: number) => us / Math.max(1, evalsha);
  return {
    usPerCall: per(after.usec - before.usec),
    cpuPerCall: per(after.cpuUs - before.cpuUs),
    instructions: per(instructions),
    commands,
  };
}

const SHAPES = ['same bucket', 'next bucket', 'idle 2 minutes', 'idle 20 minutes', 'busy all day'] as const;
type Shape = (typeof SHAPES)[number];

try {
  await Promise.all([admin.connect(), client.connect(), ...floorClients.map((c) => c.connect())]);
  for (const stage of STAGES) await admin.script('LOAD', floorSource(stage));
  const version = /^redis_version:(.*)$/m.exec(await admin.info('server'))?.[1]?.trim();
  console.log(
    `[bench:limiter] Redis ${version}, ${SUBJECTS} subjects, ${ROUNDS} rounds, keys under ${prefix}`,
  );
  const results = new Map<Shape, PassResult[]>();
  for (const shape of SHAPES) results.set(shape, []);
  // A day-bucket boundary (15 min) sits well away from each round's start, so only the
  // 20-minute gap crosses one; the clock moves forward across rounds, as a real one does.
  let now = Date.now();
  now = now - (now % 900_000) + 60_000;
  // The busy subjects never leave their minute window idle: a call every 45 s up to `until`.
  let busyAt = now - 86_400_000;
  const keepBusy = async (until: number) => {
    for (; busyAt + BUSY_EVERY < until; busyAt += BUSY_EVERY) await pass('all-day', busyAt + BUSY_EVERY);
  };
  console.log(`[bench:limiter] ${BUSY_SUBJECTS} busy subjects: a call every 45 s over 24 hours`);
  await keepBusy(now);
  for (let round = 0; round < ROUNDS; round++) {
    // Sets every subject's counters up (first round: creates the sporadic ones).
    await pass('sporadic', now);
    await keepBusy(now);
    await pass('all-day', now);
    now += 1_000;
    results.get('same bucket')!.push(await measure('sporadic', now));
    results.get('busy all day')!.push(await measure('all-day', now, 10));
    now = now - (now % 5_000) + 5_000 + 1_000;
    results.get('next bucket')!.push(await measure('sporadic', now));
    now += 2 * MINUTE;
    results.get('idle 2 minutes')!.push(await measure('sporadic', now));
    now += 20 * MINUTE;
    results.get('idle 20 minutes')!.push(await measure('sporadic', now));
    now = now - (now % 900_000) + 900_000 + 60_000;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const table: Record<string, Record<string, string>> = {};
  for (const shape of SHAPES) {
    const runs = results.get(shape)!;
    const names = new Set(runs.flatMap((r) => [...r.commands.keys()]));
    const row: Record<string, string> = callgrind
      ? { 'k instructions (median)': (median(runs.map((r) => r.instructions)) / 1000).toFixed(1) }
      : {
          'Redis CPU µs (median)': median(runs.map((r) => r.cpuPerCall)).toFixed(1),
          'per round': runs.map((r) => r.cpuPerCall.toFixed(1)).join(' / '),
          'in script µs': median(runs.map((r) => r.usPerCall)).toFixed(1),
        };
    for (const name of [...names].sort()) {
      row[name] = median(runs.map((r) => r.commands.get(name) ?? 0)).toFixed(2);
    }
    table[shape] = row;
  }
  console.log(
    callgrind
      ? '\nPer decision: instructions redis-server ran (callgrind; networking included), and the' +
          ' commands the script ran'
      : "\nPer decision: CPU of Redis's main thread (networking included), time inside the script" +
          ' (commandstats), and the commands the script ran',
  );
  console.table(table);
  // The same-bucket decision taken apart. Each round: the script sets the hashes up, then measures
  // itself at the next second, then the floor stopped after each step at that second too. The
  // floor's HSETs write counts of their own, so these hashes serve nothing else.
  const parts = new Map<FloorStage | 'script', number[]>();
  for (const stage of [...STAGES, 'script'] as const) parts.set(stage, []);
  const figure = (r: PassResult) => (callgrind ? r.instructions / 1000 : r.cpuPerCall);
  for (let round = 0; round < ROUNDS; round++) {
    await pass('parts', now);
    now += 1_000;
    parts.get('script')!.push(figure(await measure('parts', now)));
    for (let i = 0; i < STAGES.length; i++) {
      parts.get(STAGES[i]!)!.push(figure(await measure('parts', now, 1, floorLimiters[i])));
    }
    now += 15 * MINUTE;
  }
  const part = (stage: FloorStage | 'script') => median(parts.get(stage)!);
  const unit = callgrind ? 'k instructions' : 'µs of Redis CPU';
  const steps: Array<[string, number]> = [
    ['the call with its arguments, no command', part('args')],
    [`the ${DIMENSIONS.length} HMGETs`, part('reads') - part('args')],
    [`the ${DIMENSIONS.length} HSETs`, part('writes') - part('reads')],
    ['the XADD', part('all') - part('writes')],
    ["the script's own logic (script minus floor)", part('script') - part('all')],
  ];
  console.log(
    `\nThe same-bucket decision taken apart (${unit} per decision, median of ${ROUNDS} round(s)):` +
      ' bench/lib/script-floor.lua stopped after each step, on the same hashes',
  );
  for (const [name, value] of steps) {
    const share = (100 * value) / part('script');
    console.log(`  ${value.toFixed(1).padStart(7)}  ${share.toFixed(0).padStart(3)}%  ${name}`);
  }
  console.log(`  ${part('script').toFixed(1).padStart(7)}  100%  the whole decision`);

  // The usage stream's Redis memory per event: it is capped by length (MAXLEN), so this is what the
  // cap costs in memory, per million events.
  const [events, bytes] = await Promise.all([
    admin.xlen(stream),
    admin.call('MEMORY', 'USAGE', stream, 'SAMPLES', '0') as Promise<number | null>,
  ]);
  if (events > 0 && bytes !== null) {
    const perEvent = Number(bytes) / events;
    console.log(
      `\nUsage stream: ${events.toLocaleString('en-US')} events in ${(Number(bytes) / 1_048_576).toFixed(1)} MiB ` +
        `of Redis memory, ${perEvent.toFixed(1)} bytes an event (${((perEvent * 1e6) / 1_048_576).toFixed(0)} MiB ` +
        'per million)',
    );
  }
} finally {
  client.disconnect();
  for (const c of floorClients) c.disconnect();
  if (admin.status === 'ready') {
    await deleteMatching(admin, [`{${prefix}:lim}*`]);
    admin.disconnect();
  }
  if (callgrind) {
    const exited = new Promise((resolve) => callgrind.child.once('exit', resolve));
    callgrind.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (callgrind.child.exitCode === null) callgrind.child.kill('SIGKILL');
    rmSync(callgrind.dir, { recursive: true, force: true });
  }
}
