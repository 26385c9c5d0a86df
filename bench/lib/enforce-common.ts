import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

// Shared by bench/enforce.ts and the processes it starts (bench/lib/enforce-load.ts,
// bench/lib/enforce-baselines.ts): the load runner's contract, percentiles, child processes that
// are always stopped, and CPU accounting from /proc.

// --- load runner contract -------------------------------------------------------------------

/**
 * `closed`: autocannon, every connection sends its next request when the previous one answered
 * (saturation). `autocannon-rate`: the same with autocannon's `overallRate`. `paced`: an open-loop
 * generator that starts requests on a fixed schedule whether or not earlier ones answered.
 */
export type LoadMode = 'closed' | 'autocannon-rate' | 'paced';

export interface LoadConfig {
  /** Base URL, e.g. http://127.0.0.1:41234. */
  url: string;
  path: string;
  headers: Record<string, string>;
  /** A JSON array of request bodies, already serialised; requests cycle over them. */
  bodiesFile: string;
  connections: number;
  warmupSec: number;
  durationSec: number;
  mode: LoadMode;
  /** Overall requests per second, for the two rate modes. */
  rate?: number;
  timeoutSec: number;
}

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface LoadResult {
  mode: LoadMode;
  durationSec: number;
  responses: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** 2xx responses per second over the measured duration. */
  rps: number;
  /** Every 2xx response, timed in this process with sub-millisecond resolution. */
  latency: LatencySummary;
  /** autocannon's own figures (its histogram rounds to whole milliseconds). */
  autocannon?: { p50: number; p99: number; reqPerSecAvg: number };
  /** Paced mode: latency measured from the instant each request was due, not when it was sent. */
  fromSchedule?: LatencySummary;
  /** Paced mode: requests sent later than 1 ms after they were due (the generator fell behind). */
  lateStarts?: number;
  /** The load generator's own CPU over the measured run, percent of one core. */
  loaderCpuPct: number;
}

/** Lines the load runner prints around the measured run (its result is the last line). */
export const MEASURING = 'measuring';
export const MEASURED = 'measured';

// --- statistics -----------------------------------------------------------------------------

/** Nearest-rank percentiles of a sample (ms); the array is sorted in place. */
export function summarise(samples: Float64Array): LatencySummary {
  const n = samples.length;
  if (n === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  samples.sort();
  let sum = 0;
  for (const v of samples) sum += v;
  const at = (p: number) => samples[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))]!;
  return {
    count: n,
    mean: sum / n,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p999: at(99.9),
    max: samples[n - 1]!,
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A growable Float64Array: a million latencies cost 8 MB, not a million boxed numbers. */
export class SampleBuffer {
  private data = new Float64Array(1 << 16);
  private n = 0;
  push(value: number): void {
    if (this.n === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = value;
  }
  get length(): number {
    return this.n;
  }
  values(): Float64Array {
    return this.data.subarray(0, this.n);
  }
}

// --- child processes ------------------------------------------------------------------------

export interface ManagedChild {
  readonly name: string;
  /** Also the process group id: every child leads its own group (see startChild). */
  readonly pid: number;
  /** The first capture group of `readyPattern` on stdout; rejected if the process exits first. */
  readonly ready: Promise<string>;
  /** Everything the process wrote on stdout, once it exited with status 0. */
  readonly output: Promise<string>;
  readonly exited: Promise<void>;
  /** The last lines written on stderr and stdout, for error messages. */
  tail(): string;
  /** SIGTERM to the whole group, SIGKILL for whatever is left after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ManagedChild>();

function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: nothing left in the group
  }
}

export interface StartChildOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  readyPattern?: RegExp;
  readyTimeoutMs?: number;
  /** Keep the whole stdout (the load runner's result); otherwise only a tail is kept. */
  collectStdout?: boolean;
  /** Every stdout line as it arrives. */
  onLine?: (line: string) => void;
}

/**
 * Starts `command` in its own process group, so that stopping it reaches tsx's node child as well,
 * and a Ctrl-C in the terminal reaches only the benchmark, which then stops everything in order.
 */
export function startChild(
  name: string,
  command: string,
  args: readonly string[],
  opts: StartChildOptions,
): ManagedChild {
  const child: ChildProcess = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const tailLines: string[] = [];
  const keep = (line: string) => {
    tailLines.push(line);
    if (tailLines.length > 30) tailLines.shift();
  };
  const stdoutChunks: string[] = [];
  let exitCode: number | null = null;
  let exitSignal: NodeJS.Signals | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code;
      exitSignal = signal;
      resolve();
    });
    child.once('error', (err) => {
      keep(`spawn error: ${err.message}`);
      resolve();
    });
  });
  const describeExit = () =>
    `${name} exited (${exitSignal ?? `status ${exitCode}`}):\n${tailLines.map((l) => `  | ${l}`).join('\n')}`;

  let resolveReady: (value: string) => void = () => {};
  let rejectReady: (err: Error) => void = () => {};
  const ready = new Promise<string>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined);
  let isReady = !opts.readyPattern;
  if (!opts.readyPattern) resolveReady('');
  const timer = opts.readyPattern
    ? setTimeout(
        () =>
          rejectReady(new Error(`${name} did not become ready within ${opts.readyTimeoutMs ?? 60_000} ms`)),
        opts.readyTimeoutMs ?? 60_000,
      )
    : undefined;

  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (opts.collectStdout) stdoutChunks.push(line);
    keep(line);
    opts.onLine?.(line);
    if (!isReady && opts.readyPattern) {
      const m = opts.readyPattern.exec(line);
      if (m) {
        isReady = true;
        clearTimeout(timer);
        resolveReady(m[1] ?? line);
      }
    }
  });
  createInterface({ input: child.stderr! }).on('line', keep);

  const output = exited.then(() => {
    if (exitCode === 0) return stdoutChunks.join('\n');
    throw new Error(describeExit());
  });
  output.catch(() => undefined);
  void exited.then(() => {
    clearTimeout(timer);
    if (!isReady) rejectReady(new Error(describeExit()));
  });

  let stopping: Promise<void> | undefined;
  const managed: ManagedChild = {
    name,
    pid,
    ready,
    output,
    exited,
    tail: () => tailLines.join('\n'),
    stop(graceMs = 8_000) {
      stopping ??= (async () => {
        signalGroup(pid, 'SIGTERM');
        let timeout: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise((r) => (timeout = setTimeout(r, graceMs)))]);
        clearTimeout(timeout);
        // The leader may be gone while tsx's node child still drains: wait for the group too.
        const until = Date.now() + 2_000;
        while (signalGroup(pid, 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        signalGroup(pid, 'SIGKILL');
        await exited;
        live.delete(managed);
      })();
      return stopping;
    },
  };
  live.add(managed);
  void exited.then(() => {
    // A child that ended on its own may still have left its node grandchild behind.
    if (!stopping && signalGroup(pid, 0)) void managed.stop(2_000);
    else if (!stopping) live.delete(managed);
  });
  return managed;
}

/** Stops every child still running, all at once. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

// --- CPU accounting -------------------------------------------------------------------------

// USER_HZ, the unit of /proc tick counts: 100 on every mainstream Linux architecture.
const TICKS_PER_SECOND = 100;

export interface CpuSnapshot {
  at: number;
  /** Ticks per process group (our children lead their groups) and per single pid (Redis). */
  groups: Map<number, number>;
  pids: Map<number, number>;
  machineBusy: number;
  machineTotal: number;
}

function statFields(pid: string): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses; the fields after the last ')' are plain.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null; // exited between readdir and read
  }
}

/** Null where /proc is missing (not Linux): the report then leaves CPU out. */
export function cpuSnapshot(groups: readonly number[], pids: readonly number[]): CpuSnapshot | null {
  let entries: string[];
  let machine: string;
  try {
    entries = readdirSync('/proc');
    machine = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  } catch {
    return null;
  }
  const wanted = new Set(groups);
  const groupTicks = new Map<number, number>(groups.map((g) => [g, 0]));
  const pidTicks = new Map<number, number>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const isPid = pids.includes(pid);
    const f = statFields(entry);
    if (!f) continue;
    const pgrp = Number(f[2]);
    const ticks = Number(f[11]) + Number(f[12]);
    if (wanted.has(pgrp)) groupTicks.set(pgrp, (groupTicks.get(pgrp) ?? 0) + ticks);
    if (isPid) pidTicks.set(pid, ticks);
  }
  const cpu = machine.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return {
    at: performance.now(),
    groups: groupTicks,
    pids: pidTicks,
    machineBusy: total - idle,
    machineTotal: total,
  };
}

/**
 * A process's peak resident memory so far (VmHWM), in MiB; null where /proc is missing or the
 * process has gone.
 */
export function peakRssMib(pid: number): number | null {
  try {
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

/** Percent of one core (as `top` shows it) used by a group or pid between two snapshots. */
export function cpuPercent(a: CpuSnapshot, b: CpuSnapshot, id: number, kind: 'group' | 'pid'): number {
  const seconds = (b.at - a.at) / 1000;
  const map = (s: CpuSnapshot) => (kind === 'group' ? s.groups : s.pids);
  const ticks = (map(b).get(id) ?? 0) - (map(a).get(id) ?? 0);
  return seconds > 0 ? (100 * ticks) / TICKS_PER_SECOND / seconds : 0;
}

/** Percent of the whole machine's capacity that was busy. */
export function machineBusyPercent(a: CpuSnapshot, b: CpuSnapshot): number {
  const total = b.machineTotal - a.machineTotal;
  return total > 0 ? (100 * (b.machineBusy - a.machineBusy)) / total : 0;
}
