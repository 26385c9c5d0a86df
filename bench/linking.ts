// Linking cost benchmark: `tsx bench/linking.ts [--sizes 10000,100000,1000000] [--sample 300] [--json]`.
//
// Linking one account goes through the inverted index (signals) and is bounded by the bucket caps,
// so its cost must not grow with the number of accounts. This grows a throwaway database through
// the sizes (cumulative: 10k, then 90k more, then 900k more) with a seeded synthetic population,
// imported in-process through the import service in batches of 1,000, runs ANALYZE, and then times
// the per-account linking path (candidatePairs for one account + weighPairs, as the enrich worker
// runs it) for random accounts, farm members and CGNAT members. The flat curve is the point: the
// ratio of the largest size to the smallest is printed at the end.
//
// `--full-run` also times, at each size, the link stage of a full analysis run (every account's
// candidates in batches, then the links replaced): what a scheduled run costs, which grows with the
// number of accounts even though each account's share stays flat; and the heap it takes, at its
// peak and live once the links are all in memory.
//
// Besides wall time, each call's CPU time (this process and the PostgreSQL backend) and each group's
// shared-buffer accesses are reported: on a machine shared with other work these say whether the
// work per account grew, where wall time also says how busy the neighbours were.
//
// PostgreSQL comes from DATABASE_URL (default: the local server); only its server and credentials
// are used. The database is dropped at the end, also on failure or Ctrl-C.

import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createDb, type Db } from '../src/db/client.ts';
import {
  applyMigrations,
  databaseName,
  dropDatabase,
  ensureDatabase,
  withDatabase,
} from '../src/db/migrate.ts';
import { analyseLinks } from '../src/detection/run.ts';
import { createLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/policy.ts';
import { loadAsnDatabase } from '../src/signals/asn.ts';
import { BATCH, createImporter, type StepImport } from './lib/linking-import.ts';
import { createLinker, type GroupSummary, type Linker } from './lib/linking-measure.ts';
import { createPopulation, ROLES, type Role } from './lib/linking-population.ts';
import { createRng, type Rng } from './lib/linking-random.ts';

// tsx gives no way to pass --expose-gc; the live heap needs a full collection to mean anything.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const IMPORT_PATH =
  'in-process ImportService.importAccounts, batches of 1,000: the code path of POST /v1/import/accounts minus HTTP';

// ---------------------------------------------------------------------------------------------
// Command line

interface Options {
  sizes: number[];
  sample: number;
  json: boolean;
  seed: string;
  budgetMinutes: number;
  explain: boolean;
  fullRun: boolean;
  concurrency: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '10000,100000,1000000' },
      sample: { type: 'string', default: '300' },
      seed: { type: 'string', default: '1' },
      'import-budget': { type: 'string', default: '15' },
      explain: { type: 'boolean', default: false },
      'full-run': { type: 'boolean', default: false },
      concurrency: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: tsx bench/linking.ts [--sizes 10000,100000,1000000] [--sample 300] [--full-run] [--json]\n' +
        '  --sizes          cumulative database sizes (accounts), ascending\n' +
        '  --sample         accounts linked per group (random, farm, CGNAT) at each size\n' +
        '  --seed           population seed: the same seed imports the same accounts\n' +
        '  --import-budget  minutes of importing in all; past it the run stops growing, measures the\n' +
        '                   size it reached and projects the time the rest would take (default 15)\n' +
        '  --explain        print EXPLAIN (ANALYZE, BUFFERS) of the candidate query for the slowest\n' +
        '                   account of each group at the largest size (stderr)\n' +
        '  --full-run       also time the link stage of a full analysis run at each size\n' +
        '  --concurrency    candidate queries in flight in that stage (ANALYSIS_CONCURRENCY; default 1)\n' +
        '  --json           only a JSON line on stdout; the tables go to stderr\n',
    );
    process.exit(0);
  }
  const fail = (msg: string): never => {
    process.stderr.write(`bench: ${msg}\n`);
    process.exit(2);
  };
  const sizes = values.sizes.split(',').map((s) => Number(s.trim().replaceAll('_', '')));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 100 || n > 100_000_000)) {
    fail('--sizes must be whole numbers from 100 to 100000000, comma-separated');
  }
  if (sizes.some((n, i) => i > 0 && n <= sizes[i - 1]!)) fail('--sizes must be ascending');
  const sample = Number(values.sample);
  if (!Number.isInteger(sample) || sample < 1 || sample > 100_000) fail('--sample must be from 1 to 100000');
  const budgetMinutes = Number(values['import-budget']);
  if (!Number.isFinite(budgetMinutes) || budgetMinutes <= 0)
    fail('--import-budget must be a positive number');
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 8)
    fail('--concurrency must be from 1 to 8');
  return {
    sizes,
    sample,
    json: values.json,
    seed: values.seed,
    budgetMinutes,
    explain: values.explain,
    fullRun: values['full-run'],
    concurrency,
  };
}

// ---------------------------------------------------------------------------------------------
// Database facts

interface ServerInfo {
  version: string;
  settings: Record<string, string>;
}

const SETTINGS = [
  'shared_buffers',
  'work_mem',
  'effective_cache_size',
  'autovacuum',
  'jit',
  'random_page_cost',
];

async function serverInfo(db: Db): Promise<ServerInfo> {
  const [v] = await db.$queryRaw<Array<{ v: string }>>`SELECT current_setting('server_version') AS v`;
  const rows = await db.$queryRaw<Array<{ name: string; setting: string }>>`
    SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY(${SETTINGS}::text[])`;
  return { version: v?.v ?? '?', settings: Object.fromEntries(rows.map((r) => [r.name, r.setting])) };
}

interface TableSizes {
  signalsBytes: number;
  accountsBytes: number;
  databaseBytes: number;
  signalRows: number;
  /** Share of the signals heap marked all-visible: index-only scans skip the heap only there. */
  signalsAllVisible: number;
}

async function tableSizes(db: Db): Promise<TableSizes> {
  const [r] = await db.$queryRaw<
    Array<{
      signals: bigint;
      accounts: bigint;
      database: bigint;
      rows: number;
      pages: number;
      visible: number;
    }>
  >`
    SELECT pg_total_relation_size('signals') AS signals, pg_total_relation_size('accounts') AS accounts,
      pg_database_size(current_database()) AS database, c.reltuples::float8 AS rows,
      c.relpages::float8 AS pages, c.relallvisible::float8 AS visible
    FROM pg_class c WHERE c.oid = 'signals'::regclass`;
  if (!r) throw new Error('no signals table');
  return {
    signalsBytes: Number(r.signals),
    accountsBytes: Number(r.accounts),
    databaseBytes: Number(r.database),
    signalRows: Math.max(0, r.rows),
    signalsAllVisible: r.pages > 0 ? r.visible / r.pages : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Measurement

const GROUPS = ['random', 'farm', 'cgnat'] as const;
type Group = (typeof GROUPS)[number];
// V8 needs on the order of a hundred calls before Prisma's row decoding and weighPairs are optimised.
const WARMUP = 100;

/** Up to n distinct elements, in random order. */
function sampleOf(ids: readonly string[], n: number, rng: Rng): string[] {
  if (ids.length <= n) {
    const all = [...ids];
    for (let i = all.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    return all;
  }
  const picked = new Set<number>();
  while (picked.size < n) picked.add(rng.int(ids.length));
  return [...picked].map((i) => ids[i]!);
}

async function measureGroups(
  linker: Linker,
  pools: Record<Group, readonly string[]>,
  sample: number,
  rng: Rng,
  signal: AbortSignal,
): Promise<Record<Group, GroupSummary>> {
  const asOf = new Date();
  // The first calls pay for Prisma's first query and V8's compilation: not the path measured.
  for (const id of sampleOf(pools.random, WARMUP, rng)) await linker.linkOne(id, asOf);
  const out = {} as Record<Group, GroupSummary>;
  for (const group of GROUPS) {
    out[group] = await linker.linkGroup(sampleOf(pools[group], sample, rng), asOf, signal);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Step {
  size: number;
  import: StepImport;
  analyzeSeconds: number;
  composition: Record<Role, number>;
  tables: TableSizes;
  linking: Record<Group, GroupSummary>;
  /** 1-minute load average when linking started and ended: the machine may be shared. */
  load: [number, number];
  /** With --full-run: the link stage of a full analysis run over every account. */
  fullRun: FullRun | null;
}

interface FullRun {
  accounts: number;
  seconds: number;
  candidatesSeconds: number;
  links: number;
  /** The most heap this process used during the stage (sampled every 250 ms). */
  peakHeapBytes: number;
  /** Heap in use after a full collection once every candidate was weighed: the links it holds. */
  liveHeapBytes: number;
}

interface Projection {
  target: number;
  reached: number;
  importedMinutes: number;
  recentPerSecond: number;
  remainingMinutes: number;
  totalMinutes: number;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, digits = 1): string => n.toFixed(digits);
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));
const optional = (n: number | null, f: (n: number) => string): string => (n === null ? '-' : f(n));

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function sizeLabel(step: Step): string {
  return step.import.stopped
    ? `${int(step.import.reached)} (stopped; target ${int(step.size)})`
    : int(step.size);
}

type Ratio = Record<
  Group,
  { mean: number; p50: number; p99: number; cpu: number; buffers: number | null; rows: number }
>;

function ratios(steps: readonly Step[]): Ratio | null {
  const first = steps[0];
  const last = steps[steps.length - 1];
  if (!first || !last || first === last) return null;
  const r = (x: number, y: number) => (x > 0 ? Number((y / x).toFixed(3)) : 0);
  return Object.fromEntries(
    GROUPS.map((g) => {
      const a = first.linking[g];
      const b = last.linking[g];
      const buffers =
        a.buffersPerCall !== null && b.buffersPerCall !== null ? r(a.buffersPerCall, b.buffersPerCall) : null;
      return [
        g,
        {
          mean: r(a.meanMs, b.meanMs),
          p50: r(a.p50Ms, b.p50Ms),
          p99: r(a.p99Ms, b.p99Ms),
          cpu: r(a.meanCpuMs, b.meanCpuMs),
          buffers,
          rows: r(a.meanRows, b.meanRows),
        },
      ];
    }),
  ) as Ratio;
}

function report(
  steps: readonly Step[],
  info: ServerInfo,
  opts: Options,
  projection: Projection | null,
  dbCpu: boolean,
): string {
  const out: string[] = [];
  const s = info.settings;
  out.push(
    `Gatehouse linking benchmark: seed ${opts.seed}, sample ${opts.sample} per group, Node ${process.version}, ` +
      `PostgreSQL ${info.version} (shared_buffers ${s.shared_buffers}, work_mem ${s.work_mem}, ` +
      `autovacuum ${s.autovacuum}, jit ${s.jit})`,
  );
  out.push(`Import: ${IMPORT_PATH}; ANALYZE after each import phase.`);
  if (s.autovacuum === 'off') {
    out.push(
      'Note: autovacuum is off on this server, so nothing sets the visibility map: index scans visit the heap for every entry.',
    );
  }
  out.push('');
  out.push(
    table(
      [
        'accounts',
        'added',
        'import s',
        'accounts/s',
        'recent/s',
        'ANALYZE s',
        'signal rows',
        'signals',
        'accounts',
        'all-visible',
        'load',
      ],
      steps.map((st) => [
        sizeLabel(st),
        int(st.import.added),
        fixed(st.import.seconds),
        int(st.import.perSecond),
        int(st.import.recentPerSecond),
        fixed(st.analyzeSeconds),
        int(st.tables.signalRows),
        mib(st.tables.signalsBytes),
        mib(st.tables.accountsBytes),
        `${Math.round(st.tables.signalsAllVisible * 100)}%`,
        `${fixed(st.load[0])}-${fixed(st.load[1])}`,
      ]),
    ),
  );
  out.push(
    '(signals, accounts: pg_total_relation_size, indexes and TOAST included; load: 1-minute load average while linking)',
  );
  const last = steps[steps.length - 1];
  if (last) {
    out.push(
      `Population at ${int(last.import.reached)}: ${ROLES.map((r) => `${r} ${int(last.composition[r])}`).join(', ')}`,
    );
  }
  out.push('');
  out.push('Per-account linking (candidatePairs for one account + weighPairs), one call at a time:');
  out.push(
    table(
      [
        'accounts',
        'group',
        'n',
        'mean ms',
        'p50 ms',
        'p99 ms',
        'max ms',
        'cpu ms',
        'cpu p50',
        'cpu p99',
        'buffers',
        'reads',
        'rows',
        'pairs',
        'links',
      ],
      steps.flatMap((st) =>
        GROUPS.map((g) => {
          const l = st.linking[g];
          return [
            int(st.import.reached),
            g,
            int(l.n),
            ms(l.meanMs),
            ms(l.p50Ms),
            ms(l.p99Ms),
            ms(l.maxMs),
            ms(l.meanCpuMs),
            ms(l.p50CpuMs),
            ms(l.p99CpuMs),
            optional(l.buffersPerCall, int),
            optional(l.readsPerCall, (n) => fixed(n)),
            fixed(l.meanRows),
            fixed(l.meanPairs),
            fixed(l.meanLinks, 2),
          ];
        }),
      ),
    ),
  );
  out.push(
    `(ms: wall time; cpu: ${dbCpu ? 'this process + the PostgreSQL backend' : 'this process only (backend not readable)'}; ` +
      'buffers: shared buffers touched per call, reads: of those, not in shared_buffers; rows: rows the candidate ' +
      'query returned; pairs: distinct other accounts; links: pairs at or above the threshold)',
  );
  out.push('');
  out.push('Mean candidate rows per account by signal kind:');
  out.push(
    steps
      .flatMap((st) =>
        GROUPS.map((g) => {
          const kinds = Object.entries(st.linking[g].rowsByKind)
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${fixed(v)}`)
            .join(', ');
          return `  ${int(st.import.reached).padStart(9)} ${g.padEnd(6)} ${kinds || '(none)'}`;
        }),
      )
      .join('\n'),
  );
  const ratio = ratios(steps);
  const first = steps[0];
  if (ratio && first && last) {
    out.push('');
    out.push(`Ratio ${int(last.import.reached)} / ${int(first.import.reached)} accounts (1.00 = flat):`);
    const x = (n: number | null) => (n === null ? 'n/a' : `x${n.toFixed(2)}`);
    for (const g of GROUPS) {
      const r = ratio[g];
      out.push(
        `  ${g.padEnd(6)} wall mean ${x(r.mean)}  p50 ${x(r.p50)}  p99 ${x(r.p99)}   cpu mean ${x(r.cpu)}   ` +
          `buffers ${x(r.buffers)}   rows ${x(r.rows)}`,
      );
    }
  }
  const runs = steps.filter((st) => st.fullRun !== null);
  if (runs.length > 0) {
    out.push('');
    out.push(
      `Link stage of a full analysis run (every account, batches of 400, ${opts.concurrency} in flight; --full-run):`,
    );
    out.push(
      table(
        ['accounts', 'wall s', 'candidates s', 'ms per account', 'links', 'peak heap', 'live heap'],
        runs.map((st) => {
          const f = st.fullRun!;
          return [
            int(f.accounts),
            fixed(f.seconds),
            fixed(f.candidatesSeconds),
            ms((f.seconds * 1000) / Math.max(1, f.accounts)),
            int(f.links),
            mib(f.peakHeapBytes),
            mib(f.liveHeapBytes),
          ];
        }),
      ),
    );
    out.push(
      '(peak heap: sampled every 250 ms, garbage included; live heap: after a full collection once every ' +
        'candidate is weighed, which is mostly the links held for the write)',
    );
  }
  if (projection) {
    out.push('');
    out.push(
      `Import budget (${opts.budgetMinutes} min) ran out at ${int(projection.reached)} of ${int(projection.target)} accounts ` +
        `after ${fixed(projection.importedMinutes)} min; at the recent ${int(projection.recentPerSecond)} accounts/s the ` +
        `remaining ${int(projection.target - projection.reached)} would take ~${fixed(projection.remainingMinutes)} min ` +
        `(~${fixed(projection.totalMinutes)} min of importing in all, more if the rate keeps falling as the indexes grow).`,
    );
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Run

const log = (msg: string) => process.stderr.write(`[bench:linking] ${msg}\n`);

async function run(opts: Options, signal: AbortSignal): Promise<void> {
  const databaseUrl = withDatabase(
    process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
    `gatehouse_bench_link_${randomBytes(5).toString('hex')}`,
  );
  let db: Db | undefined;
  let linker: Linker | undefined;
  try {
    await ensureDatabase(databaseUrl);
    await applyMigrations(databaseUrl);
    log(`database ${databaseName(databaseUrl)} created and migrated`);
    db = createDb(databaseUrl, 5_000);
    const info = await serverInfo(db);
    const asn = await loadAsnDatabase();
    const policy = parsePolicy('version: 1\n', 'benchmark policy');
    // Event times end an hour before today began (UTC): the same seed gives the same records all day,
    // and the import refuses times in the future.
    const end = Math.floor(Date.now() / DAY) * DAY - HOUR;
    const population = createPopulation({ seed: opts.seed, end });
    const importer = createImporter({ db, asn, policy, population, log });
    linker = await createLinker(databaseUrl, policy.detection);
    const rng = createRng(`${opts.seed}/samples`);
    const steps: Step[] = [];
    let projection: Projection | null = null;

    for (const size of opts.sizes) {
      log(`importing up to ${int(size)} accounts in batches of ${BATCH}`);
      const imp = await importer.importUntil(size, { deadlineMs: opts.budgetMinutes * 60_000, signal });
      log(
        `imported ${int(imp.added)} in ${fixed(imp.seconds)} s (${int(imp.perSecond)} accounts/s); ANALYZE`,
      );
      const a0 = performance.now();
      await db.$executeRaw`ANALYZE`;
      const analyzeSeconds = (performance.now() - a0) / 1000;
      const tables = await tableSizes(db);
      const { all, byRole } = importer.ids;
      log(`linking ${opts.sample} accounts per group at ${int(all.length)}`);
      const load0 = loadavg()[0] ?? 0;
      const linking = await measureGroups(
        linker,
        { random: all, farm: byRole.farm, cgnat: byRole.cgnat },
        opts.sample,
        rng,
        signal,
      );
      const load: [number, number] = [load0, loadavg()[0] ?? 0];
      const composition = Object.fromEntries(ROLES.map((r) => [r, byRole[r].length])) as Record<Role, number>;
      let fullRun: FullRun | null = null;
      if (opts.fullRun) {
        log(`link stage of a full analysis run over ${int(all.length)} accounts`);
        const f0 = performance.now();
        let peakHeapBytes = process.memoryUsage().heapUsed;
        const sampler = setInterval(() => {
          peakHeapBytes = Math.max(peakHeapBytes, process.memoryUsage().heapUsed);
        }, 250);
        let liveHeapBytes = 0;
        let gcMs = 0;
        const stage = await analyseLinks(
          {
            db,
            policy: () => policy,
            logger: createLogger('warn'),
            linkConcurrency: opts.concurrency,
            // The link stage reads and writes only accounts, signals and links.
            actions: undefined as never,
            audit: undefined as never,
            apiKeys: undefined as never,
          },
          new Date(),
          // The stage reports progress with `force` once, between its candidate search and its
          // write: the links are all in memory then. The collection's time is left out below.
          async (force) => {
            if (!force) return;
            const g0 = performance.now();
            gc();
            liveHeapBytes = process.memoryUsage().heapUsed;
            gcMs += performance.now() - g0;
          },
        ).finally(() => clearInterval(sampler));
        fullRun = {
          accounts: stage.summary.accounts ?? all.length,
          seconds: (performance.now() - f0 - gcMs) / 1000,
          candidatesSeconds: (stage.summary.timings.candidatesMs ?? 0) / 1000,
          links: stage.summary.links ?? 0,
          peakHeapBytes,
          liveHeapBytes,
        };
        log(`full link stage: ${fixed(fullRun.seconds)} s, ${int(fullRun.links)} links`);
      }
      steps.push({ size, import: imp, analyzeSeconds, composition, tables, linking, load, fullRun });
      log(
        `at ${int(all.length)}: ` +
          GROUPS.map(
            (g) =>
              `${g} mean ${ms(linking[g].meanMs)} ms (cpu ${ms(linking[g].meanCpuMs)}) p99 ${ms(linking[g].p99Ms)} ms`,
          ).join('; '),
      );
      if (imp.stopped) {
        const spentMinutes = importer.spentMs / 60_000;
        const remainingMinutes = (size - imp.reached) / Math.max(1, imp.recentPerSecond) / 60;
        projection = {
          target: size,
          reached: imp.reached,
          importedMinutes: spentMinutes,
          recentPerSecond: imp.recentPerSecond,
          remainingMinutes,
          totalMinutes: spentMinutes + remainingMinutes,
        };
        break;
      }
    }

    const text = report(steps, info, opts, projection, linker.measuresDbCpu);
    if (opts.json) {
      process.stderr.write(`${text}\n`);
      const json = {
        bench: 'linking',
        importPath: IMPORT_PATH,
        seed: opts.seed,
        sample: opts.sample,
        node: process.version,
        postgres: info.version,
        settings: info.settings,
        dbCpuMeasured: linker.measuresDbCpu,
        steps: steps.map((st) => ({
          size: st.size,
          reached: st.import.reached,
          import: {
            added: st.import.added,
            seconds: Number(st.import.seconds.toFixed(2)),
            perSecond: Math.round(st.import.perSecond),
            recentPerSecond: Math.round(st.import.recentPerSecond),
            stopped: st.import.stopped,
          },
          analyzeSeconds: Number(st.analyzeSeconds.toFixed(2)),
          composition: st.composition,
          tables: st.tables,
          load: st.load,
          linking: st.linking,
          ...(st.fullRun ? { fullRun: st.fullRun } : {}),
        })),
        ratio: ratios(steps),
        projection,
      };
      process.stdout.write(`${JSON.stringify(json)}\n`);
    } else {
      process.stdout.write(`${text}\n`);
    }

    if (opts.explain) {
      const last = steps[steps.length - 1];
      for (const g of GROUPS) {
        const slowest = last?.linking[g].slowest;
        if (!slowest) continue;
        process.stderr.write(
          `\nEXPLAIN of the candidate query for the slowest ${g} account (${slowest.accountId}, ${ms(slowest.ms)} ms):\n`,
        );
        process.stderr.write(`${await linker.explain(slowest.accountId, new Date())}\n`);
      }
    }
  } finally {
    await linker?.close().catch(() => {});
    await db?.$disconnect().catch(() => {});
    try {
      await dropDatabase(databaseUrl);
      log(`database ${databaseName(databaseUrl)} dropped`);
    } catch (err) {
      log(`could not drop database ${databaseName(databaseUrl)}: ${(err as Error).message}`);
    }
  }
}

const opts = parseOptions(process.argv.slice(2));
const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: stopping after the current call, then dropping the database`);
    controller.abort(new Error(`interrupted by ${sig}`));
  });
}
try {
  await run(opts, controller.signal);
} catch (err) {
  if (controller.signal.aborted) {
    log('stopped before the end; no figures');
    process.exitCode = 130;
  } else {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  }
}
