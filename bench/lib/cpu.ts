import { readdirSync, readFileSync } from 'node:fs';

// Where the CPU went during a benchmark, from Linux /proc: on a small machine the server, the
// databases and the load generator compete for the same cores, and a throughput figure means little
// without knowing which of them was saturated. Elsewhere sampleCpu() returns null and the report
// just leaves CPU out.

// USER_HZ, the unit of /proc tick counts: 100 on every mainstream Linux architecture, and Node has
// no sysconf() to ask.
const TICKS_PER_SECOND = 100;

interface ProcStat {
  comm: string;
  ppid: number;
  ticks: number;
  /** PostgreSQL processes only: the process title, which names the database a backend serves. */
  title?: string;
}

export interface CpuSample {
  at: number;
  cores: number;
  machineBusy: number;
  procs: Map<number, ProcStat>;
}

export interface CpuShare {
  /** Percent of one core, as `top` shows it (200 = two cores flat out). */
  benchPct: number;
  gatehousePct: number;
  /** Backends serving the benchmark's database, plus the server's shared background processes. */
  postgresPct: number;
  /** The whole Redis server, which other clients may be using too. */
  redisPct: number;
  /** Everything else: other processes (other databases' backends too), the kernel, short-lived ones. */
  otherPct: number;
  /** All cores: percent of the machine's total capacity that was busy. */
  machineBusyPct: number;
  cores: number;
}

function readProc(pid: string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // exited between readdir and read
  }
  // comm may hold spaces and parentheses; the fields after the last ')' are plain.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  const stat: ProcStat = { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  if (comm === 'postgres') {
    try {
      stat.title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
    } catch {
      // exited meanwhile: its ticks still count, only unattributed
    }
  }
  return stat;
}

export function sampleCpu(): CpuSample | null {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const lines = stat.split('\n');
  const total = lines[0]?.split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal: idle and iowait are the not-busy part.
  const busy = total.slice(0, 8).reduce((a, b) => a + b, 0) - (total[3] ?? 0) - (total[4] ?? 0);
  const cores = lines.filter((l) => /^cpu\d/.test(l)).length;
  const procs = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = readProc(entry);
    if (p) procs.set(Number(entry), p);
  }
  return { at: performance.now(), cores, machineBusy: busy, procs };
}

function descendantsOf(root: number, procs: Map<number, ProcStat>): Set<number> {
  const tree = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, p] of procs) {
      if (!tree.has(pid) && tree.has(p.ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return tree;
}

/** Splits the CPU used between two samples among the benchmark, the Gatehouse child and the stores. */
export function cpuShare(
  start: CpuSample,
  end: CpuSample,
  roots: { bench: number; gatehouse: number; database: string },
): CpuShare {
  const seconds = (end.at - start.at) / 1000;
  const used = (pid: number): number => {
    const before = start.procs.get(pid);
    const after = end.procs.get(pid);
    if (!after) return 0;
    // A pid reused by another process in between would go negative; count it from zero instead.
    return before && before.comm === after.comm && after.ticks >= before.ticks
      ? after.ticks - before.ticks
      : after.ticks;
  };
  const sum = (pids: Iterable<number>): number => {
    let ticks = 0;
    for (const pid of pids) ticks += used(pid);
    return ticks;
  };
  const gatehouse = descendantsOf(roots.gatehouse, end.procs);
  // The benchmark started Gatehouse, so its tree holds Gatehouse's too.
  const bench = [...descendantsOf(roots.bench, end.procs)].filter((pid) => !gatehouse.has(pid));
  const matching = (test: (p: ProcStat) => boolean) =>
    [...end.procs].filter(([, p]) => test(p)).map(([pid]) => pid);
  // A backend's title is "postgres: <cluster>: <user> <database> <client> <state>"; background
  // processes (WAL writer, checkpointer...) name no client and work for every database.
  const backend = /^postgres: .*?: \S+ (\S+) \S+\(\d+\)/;
  const ours = (p: ProcStat) => {
    if (p.comm !== 'postgres' && p.comm !== 'postmaster') return false;
    const database = p.title === undefined ? undefined : backend.exec(p.title)?.[1];
    return database === undefined || database === roots.database;
  };

  const benchTicks = sum(bench);
  const gatehouseTicks = sum(gatehouse);
  const postgresTicks = sum(matching(ours));
  const redisTicks = sum(matching((p) => p.comm.startsWith('redis-server')));
  const machineTicks = end.machineBusy - start.machineBusy;
  const pct = (ticks: number) => Math.round((1000 * ticks) / TICKS_PER_SECOND / seconds) / 10;
  return {
    benchPct: pct(benchTicks),
    gatehousePct: pct(gatehouseTicks),
    postgresPct: pct(postgresTicks),
    redisPct: pct(redisTicks),
    otherPct: pct(Math.max(0, machineTicks - benchTicks - gatehouseTicks - postgresTicks - redisTicks)),
    machineBusyPct:
      Math.round((1000 * machineTicks) / TICKS_PER_SECOND / seconds / Math.max(1, end.cores)) / 10,
    cores: end.cores,
  };
}
