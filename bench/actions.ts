// Cluster action benchmark: `tsx bench/actions.ts [--sizes 2000,20000,70000] [--json]`.
//
// A farm is suspended at once, in one transaction, and an analyst's undo restores it the same way;
// a false_positive label also writes a link suppression per member and signal kind. This times
// those three on farms of each size, in a throwaway database: the members are written directly
// (active, e-mail verified, linked into one cluster), then
//   - suspend:        ActionService.applyClusterAction with the policy's suspend, as a run's act
//                     stage calls it (every member changes, one audit event each);
//   - undo:           unsuspendCluster, as POST /v1/clusters/{id}/unsuspend (history read back,
//                     every member restored, one audit event each);
//   - false positive: suspend again, then labelCluster false_positive (undo plus suppressions).
// Key-cache invalidations are counted, not published: this measures PostgreSQL's side.
//
// PostgreSQL comes from DATABASE_URL (default: the local server); the database is dropped at the
// end, also on failure or Ctrl-C.

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createAuditLog } from '../src/audit/audit.ts';
import { createDb, type Db } from '../src/db/client.ts';
import { applyMigrations, dropDatabase, ensureDatabase, withDatabase } from '../src/db/migrate.ts';
import { createActionService } from '../src/detection/actions.ts';
import { newId } from '../src/lib/ids.ts';
import { inSlices } from '../src/lib/in-slices.ts';
import { createLogger } from '../src/logger.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2000,20000,70000' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: tsx bench/actions.ts [--sizes 2000,20000,70000] [--json]\n' +
      '  --sizes  farm sizes (members), each a cluster of its own\n' +
      '  --json   only a JSON line on stdout; progress goes to stderr\n',
  );
  process.exit(0);
}
const sizes = values.sizes.split(',').map((s) => Number(s.trim()));
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 1_000_000)) {
  process.stderr.write('bench: --sizes must be whole numbers from 1 to 1,000,000\n');
  process.exit(2);
}

const log = (msg: string) => process.stderr.write(`[bench:actions] ${msg}\n`);
const EVIDENCE = {
  signals: [
    { kind: 'fingerprint', members: 0, weight: 1.5 },
    { kind: 'email_pattern', members: 0, weight: 0.9 },
    { kind: 'subnet', members: 0, weight: 0.35 },
  ],
};

async function farm(db: Db, n: number): Promise<{ clusterId: string; members: string[] }> {
  const clusterId = newId('clu');
  const members = Array.from({ length: n }, () => newId('acc'));
  await inSlices(members, 5_000, async (slice) => {
    await db.account.createMany({
      data: slice.map((id) => ({
        id,
        email: `${id}@farm.example`,
        emailCanonicalHash: id,
        emailDomain: 'farm.example',
        emailVerifiedAt: new Date(),
        status: 'active' as const,
      })),
    });
  });
  await db.cluster.create({ data: { id: clusterId, score: 0.95, size: n, evidence: EVIDENCE } });
  await inSlices(members, 5_000, async (slice) => {
    await db.clusterMember.createMany({ data: slice.map((accountId) => ({ accountId, clusterId })) });
  });
  return { clusterId, members };
}

interface Row {
  members: number;
  suspendSeconds: number;
  undoSeconds: number;
  falsePositiveSeconds: number;
  msPerMember: number;
}

async function measure(db: Db, n: number): Promise<Row> {
  let invalidations = 0;
  const actions = createActionService({
    db,
    audit: createAuditLog(db),
    apiKeys: {
      invalidateAccount: async () => {
        invalidations++;
      },
    },
    logger: createLogger('warn'),
  });
  const { clusterId, members } = await farm(db, n);
  const suspend = (runId: string) =>
    actions.applyClusterAction({
      clusterId,
      memberIds: members,
      action: 'suspend',
      score: 0.95,
      evidence: EVIDENCE,
      runId,
      at: new Date(),
    });
  const time = async <T>(what: () => Promise<T>): Promise<[T, number]> => {
    const t = performance.now();
    const out = await what();
    return [out, (performance.now() - t) / 1000];
  };

  const [suspended, suspendSeconds] = await time(() => suspend(newId('run')));
  const [undone, undoSeconds] = await time(() => actions.unsuspendCluster(clusterId, 'bench'));
  // The label undoes whatever the cluster holds: suspend it again first, untimed. The undo above
  // left every member under an appeal, which automatic actions respect, so an analyst does it.
  await actions.suspendCluster(clusterId, 'bench');
  const [labelled, falsePositiveSeconds] = await time(() =>
    actions.labelCluster(clusterId, 'false_positive', 'bench'),
  );
  for (const [what, changed] of [
    ['suspend', suspended.changed.length],
    ['undo', undone.changed.length],
    ['false positive', labelled.changed.length],
  ] as const) {
    if (changed !== n) throw new Error(`${what} changed ${changed} of ${n} members`);
  }
  if (invalidations !== 4 * n) throw new Error(`${invalidations} key-cache invalidations, expected ${4 * n}`);
  return {
    members: n,
    suspendSeconds,
    undoSeconds,
    falsePositiveSeconds,
    msPerMember: (suspendSeconds * 1000) / n,
  };
}

const databaseUrl = withDatabase(
  process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
  `gatehouse_bench_actions_${randomBytes(5).toString('hex')}`,
);
let db: Db | undefined;
const cleanup = async () => {
  await db?.$disconnect().catch(() => {});
  await dropDatabase(databaseUrl).catch((err: Error) => log(`could not drop the database: ${err.message}`));
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: dropping the database`);
    void cleanup().then(() => process.exit(130));
  });
}
try {
  await ensureDatabase(databaseUrl);
  await applyMigrations(databaseUrl);
  db = createDb(databaseUrl, 5_000);
  const rows: Row[] = [];
  for (const n of sizes) {
    log(`farm of ${n.toLocaleString('en')} members`);
    rows.push(await measure(db, n));
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ rows })}\n`);
  } else {
    const s = (x: number) => x.toFixed(2);
    process.stdout.write(
      `Cluster actions on one farm (PostgreSQL; key-cache invalidations counted, not published)\n` +
        `members    suspend s  undo s  false positive s  suspend ms/member\n` +
        rows
          .map(
            (r) =>
              `${r.members.toLocaleString('en').padStart(7)}  ${s(r.suspendSeconds).padStart(10)}  ` +
              `${s(r.undoSeconds).padStart(6)}  ${s(r.falsePositiveSeconds).padStart(16)}  ` +
              `${r.msPerMember.toFixed(3).padStart(17)}`,
          )
          .join('\n') +
        '\n',
    );
  }
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
