import { readFileSync } from 'node:fs';
import pg from 'pg';
import { type Db, dbOnPool, Prisma } from '../../src/db/client.ts';
import { candidatePairs, weighPairs } from '../../src/detection/link.ts';
import type { DetectionPolicy } from '../../src/policy/policy.ts';

// Times the per-account linking path exactly as the enrich worker runs it after a signup or an
// import (candidatePairs for one account, then weighPairs), through a thin proxy on the Prisma client
// that only counts what the candidate query returned and keeps its text for EXPLAIN.
//
// Wall time on a shared machine mostly measures the neighbours, so each call also records CPU time:
// this process's, and the PostgreSQL backend's (its /proc schedstat, when the server is local).
// The linker owns a one-connection pool that never idles out, so that backend stays the same one.
// Per group, the shared buffers the database touched (pg_stat_database) give a load-independent
// measure of the work done.

export interface LinkTiming {
  accountId: string;
  ms: number;
  /** CPU time of this process during the call (Prisma, row decoding, weighPairs). */
  nodeCpuMs: number;
  /** CPU time of the PostgreSQL backend during the call; null when it cannot be read. */
  dbCpuMs: number | null;
  /** Rows the candidate query returned. */
  rows: number;
  /** Distinct other accounts found. */
  pairs: number;
  /** Pairs at or above the link threshold. */
  links: number;
  rowsByKind: Record<string, number>;
}

export interface GroupSummary {
  n: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Node + backend CPU per call (node only when the backend's cannot be read). */
  meanCpuMs: number;
  p50CpuMs: number;
  p99CpuMs: number;
  meanDbCpuMs: number | null;
  /** Shared buffers touched (hit + read) per call, and those not found in shared_buffers. */
  buffersPerCall: number | null;
  readsPerCall: number | null;
  meanRows: number;
  meanPairs: number;
  meanLinks: number;
  /** Mean candidate rows per call, by signal kind. */
  rowsByKind: Record<string, number>;
  slowest: { accountId: string; ms: number } | null;
}

interface Captured {
  strings: readonly string[];
  values: unknown[];
  rows: readonly unknown[];
}

type RawQuery = (query: TemplateStringsArray | Prisma.Sql, ...values: unknown[]) => Promise<unknown>;

export interface Linker {
  linkOne(accountId: string, asOf: Date): Promise<LinkTiming>;
  /** Links each account in turn and summarises, with the buffers the database touched meanwhile. */
  linkGroup(accountIds: readonly string[], asOf: Date, signal: AbortSignal): Promise<GroupSummary>;
  /** EXPLAIN (ANALYZE, BUFFERS) of the candidate query for one account, as link.ts builds it. */
  explain(accountId: string, asOf: Date): Promise<string>;
  /** Whether backend CPU is measured (a local server whose /proc is readable). */
  readonly measuresDbCpu: boolean;
  close(): Promise<void>;
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]', '']);

export async function createLinker(connectionString: string, policy: DetectionPolicy): Promise<Linker> {
  // One connection, whose backend's CPU is read below.
  const pool = new pg.Pool({
    connectionString,
    max: 1,
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: 5_000,
  });
  const db: Db = dbOnPool(pool);
  const [backend] = await db.$queryRaw<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`;
  const schedstat = `/proc/${backend?.pid ?? 0}/schedstat`;
  const local = LOCAL_HOSTS.has(new URL(connectionString).hostname);
  const readable = local && backend !== undefined && tryRead(schedstat) !== null;
  // schedstat's first field is the nanoseconds the task has run on a CPU.
  const dbCpuNow = (): number | null => {
    if (!readable) return null;
    const text = tryRead(schedstat);
    return text === null ? null : Number(text.split(' ')[0]) / 1e6;
  };

  // Read through a function: TypeScript would otherwise narrow it to `undefined` across the awaits.
  let captured: Captured | undefined;
  const lastQuery = (): Captured | undefined => captured;
  const traced = new Proxy(db, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (prop !== '$queryRaw' || typeof value !== 'function') {
        return typeof value === 'function' ? value.bind(target) : value;
      }
      const raw = value as RawQuery;
      return async (query: TemplateStringsArray | Prisma.Sql, ...values: unknown[]) => {
        const rows = await raw.call(target, query, ...values);
        const sql = query instanceof Prisma.Sql ? query : new Prisma.Sql(query, values);
        captured = { strings: sql.strings, values: sql.values, rows: Array.isArray(rows) ? rows : [] };
        return rows;
      };
    },
  });

  async function linkOne(accountId: string, asOf: Date): Promise<LinkTiming> {
    captured = undefined;
    const db0 = dbCpuNow();
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const pairs = await candidatePairs(traced, [accountId], policy, asOf);
    const links = weighPairs(pairs, policy);
    const ms = performance.now() - started;
    const cpu = process.cpuUsage(cpu0);
    const db1 = dbCpuNow();
    const query = lastQuery();
    const rowsByKind: Record<string, number> = {};
    for (const row of query?.rows ?? []) {
      const kind = (row as { kind?: unknown }).kind;
      if (typeof kind === 'string') rowsByKind[kind] = (rowsByKind[kind] ?? 0) + 1;
    }
    return {
      accountId,
      ms,
      nodeCpuMs: (cpu.user + cpu.system) / 1000,
      dbCpuMs: db0 !== null && db1 !== null ? db1 - db0 : null,
      rows: query?.rows.length ?? 0,
      pairs: pairs.size,
      links: links.length,
      rowsByKind,
    };
  }

  /**
   * Buffers this database has touched so far. Statistics reach the shared counters when a backend
   * goes idle, at most once a second unless forced: the first statement forces it, the second reads.
   */
  async function buffers(): Promise<{ touched: number; read: number } | null> {
    try {
      await db.$queryRaw`SELECT 1 AS ok FROM (SELECT pg_stat_force_next_flush()) f`;
      const [r] = await db.$queryRaw<Array<{ touched: number; read: number }>>`
        SELECT (blks_hit + blks_read)::float8 AS touched, blks_read::float8 AS read
        FROM pg_stat_database WHERE datname = current_database()`;
      return r ?? null;
    } catch {
      // PostgreSQL before 15 has no pg_stat_force_next_flush: the figure is left out.
      return null;
    }
  }

  async function linkGroup(
    accountIds: readonly string[],
    asOf: Date,
    signal: AbortSignal,
  ): Promise<GroupSummary> {
    const before = await buffers();
    const timings: LinkTiming[] = [];
    for (const id of accountIds) {
      signal.throwIfAborted();
      timings.push(await linkOne(id, asOf));
    }
    const after = await buffers();
    const n = Math.max(1, timings.length);
    return summarise(
      timings,
      before && after
        ? { touched: (after.touched - before.touched) / n, read: (after.read - before.read) / n }
        : null,
    );
  }

  async function explain(accountId: string, asOf: Date): Promise<string> {
    await linkOne(accountId, asOf);
    const candidates = lastQuery();
    if (!candidates) throw new Error('candidatePairs ran no query to explain');
    const [head = '', ...rest] = candidates.strings;
    const query = new Prisma.Sql(
      [`EXPLAIN (ANALYZE, BUFFERS, SETTINGS) ${head}`, ...rest],
      candidates.values,
    );
    const plan = await db.$queryRaw<Array<Record<string, string>>>(query);
    return plan.map((line) => Object.values(line).join('')).join('\n');
  }

  return {
    linkOne,
    linkGroup,
    explain,
    measuresDbCpu: readable,
    close: () => db.$disconnect(),
  };
}

function tryRead(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summarise(
  timings: readonly LinkTiming[],
  perCall: { touched: number; read: number } | null,
): GroupSummary {
  const n = timings.length;
  const mean = (f: (t: LinkTiming) => number) => (n === 0 ? 0 : timings.reduce((s, t) => s + f(t), 0) / n);
  const sorted = (f: (t: LinkTiming) => number) => timings.map(f).sort((a, b) => a - b);
  const ms = sorted((t) => t.ms);
  const cpuOf = (t: LinkTiming) => t.nodeCpuMs + (t.dbCpuMs ?? 0);
  const cpu = sorted(cpuOf);
  const dbMeasured = n > 0 && timings.every((t) => t.dbCpuMs !== null);
  const rowsByKind: Record<string, number> = {};
  for (const t of timings) {
    for (const [kind, count] of Object.entries(t.rowsByKind))
      rowsByKind[kind] = (rowsByKind[kind] ?? 0) + count / n;
  }
  const slowest = timings.reduce<LinkTiming | null>(
    (worst, t) => (worst === null || t.ms > worst.ms ? t : worst),
    null,
  );
  return {
    n,
    meanMs: mean((t) => t.ms),
    p50Ms: percentile(ms, 50),
    p99Ms: percentile(ms, 99),
    maxMs: ms[ms.length - 1] ?? 0,
    meanCpuMs: mean(cpuOf),
    p50CpuMs: percentile(cpu, 50),
    p99CpuMs: percentile(cpu, 99),
    meanDbCpuMs: dbMeasured ? mean((t) => t.dbCpuMs ?? 0) : null,
    buffersPerCall: perCall?.touched ?? null,
    readsPerCall: perCall?.read ?? null,
    meanRows: mean((t) => t.rows),
    meanPairs: mean((t) => t.pairs),
    meanLinks: mean((t) => t.links),
    rowsByKind,
    slowest: slowest ? { accountId: slowest.accountId, ms: slowest.ms } : null,
  };
}
