import type { Db } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { newId } from '../lib/ids.ts';

// An analysis run moves through four stages, each its own queue and processor (workers/):
//
//   features  usage features and usage signals as of the run's event time
//   link      candidate pairs from the inverted index, weighed into links
//   score     clusters from the links, each scored as a whole
//   act       the policy's actions on the scored clusters and lone accounts, tier-surge alerts
//
// Each stage reads what the one before it stored in PostgreSQL, so a stage can run on any worker
// process. The run record says where a run stands (status, stage, when the stage began) and
// accumulates the summary. Runs never overlap: each replaces the link graph and the cluster
// membership wholesale, so a run only leaves `queued` while no other run is `running`; a run
// whose stage made no progress for STAGE_TIMEOUT_MS (its worker died) is failed to let the next
// one go. A stage at work says so between its batches (stageProgress), however long it runs: the
// link stage alone takes minutes at a million accounts, and a stage that outlived the timeout
// would be failed while it still wrote, overlapping the next run. A stage whose run was failed
// meanwhile stops at its next progress call, before it writes anything more. A stage is entered
// only from the stage before it, so a duplicated or retried job finds its stage taken and does
// nothing: no action is applied twice.

export const STAGES = ['features', 'link', 'score', 'act'] as const;
export type Stage = (typeof STAGES)[number];

export const STAGE_TIMEOUT_MS = 60 * 60_000;
/** How often a working stage records its progress: far inside STAGE_TIMEOUT_MS, and cheap. */
export const PROGRESS_EVERY_MS = 60_000;
// The runs' own advisory lock: claiming a run and checking that none is running is one step.
const CLAIM_LOCK = 72_707_370;

export const nextStage = (stage: Stage): Stage | null => STAGES[STAGES.indexOf(stage) + 1] ?? null;

/**
 * The run a scheduled tick drives: a run still queued without a fixed event time if there is one
 * (it takes the newest event time when it starts, so it covers this tick too), else a new one.
 * Without this, a schedule shorter than a run (a full run over a million accounts takes longer
 * than the default 15 minutes) would queue one more run every tick behind the running one: a
 * backlog that only grows. Taking the queued run over also revives it should its own job be lost.
 */
export async function scheduledRun(db: Db): Promise<string> {
  return db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${CLAIM_LOCK}::bigint)`;
    const waiting = await tx.analysisRun.findFirst({
      where: { status: 'queued', asOf: null },
      select: { id: true },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    if (waiting) return waiting.id;
    const row = await tx.analysisRun.create({ data: { id: newId('run'), requestedBy: 'schedule' } });
    return row.id;
  });
}

export type Claim =
  | { outcome: 'claimed'; asOf: Date }
  /** Another run is in progress: try again later. */
  | { outcome: 'busy'; runningId: string }
  /** Not queued (already claimed, finished, or no such run): nothing to do. */
  | { outcome: 'gone' };

/**
 * Moves a queued run to `running` in its first stage, unless another run is running. A run
 * abandoned mid-stage for longer than STAGE_TIMEOUT_MS is failed first. `latest` gives the event
 * time of a run that was not given one (the newest event the data holds).
 */
export async function claimRun(db: Db, runId: string, latest: () => Promise<Date>): Promise<Claim> {
  return db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${CLAIM_LOCK}::bigint)`;
    await tx.$executeRaw`
      UPDATE analysis_runs
      SET status = 'failed', finished_at = now(),
          error = ${`abandoned: stage made no progress for ${STAGE_TIMEOUT_MS / 60_000} minutes`}
      WHERE status = 'running' AND stage_at < now() - make_interval(secs => ${STAGE_TIMEOUT_MS / 1000})`;
    const run = await tx.analysisRun.findUnique({
      where: { id: runId },
      select: { status: true, asOf: true },
    });
    if (run?.status !== 'queued') return { outcome: 'gone' } as const;
    const running = await tx.analysisRun.findFirst({
      where: { status: 'running' },
      select: { id: true },
      orderBy: { createdAt: 'asc' },
    });
    if (running) return { outcome: 'busy', runningId: running.id } as const;
    const asOf = run.asOf ?? (await latest());
    const now = new Date();
    await tx.analysisRun.update({
      where: { id: runId },
      data: { status: 'running', stage: STAGES[0], stageAt: now, startedAt: now, asOf, summary: {} },
    });
    return { outcome: 'claimed', asOf } as const;
  });
}

/**
 * Enters `stage` from the stage before it; false when the run is not there (a duplicate job, or
 * the run failed meanwhile). Returns the run's event time.
 */
export async function enterStage(db: Db, runId: string, stage: Stage): Promise<Date | null> {
  const previous = STAGES[STAGES.indexOf(stage) - 1];
  if (!previous) throw new RangeError(`${stage} is the first stage: claim the run instead`);
  const moved = await db.analysisRun.updateMany({
    where: { id: runId, status: 'running', stage: previous },
    data: { stage, stageAt: new Date() },
  });
  if (moved.count === 0) return null;
  const run = await db.analysisRun.findUnique({ where: { id: runId }, select: { asOf: true } });
  return run?.asOf ?? null;
}

export interface StageResult {
  /** Merged into the run's summary; `timings` are merged into its timings. */
  summary: Record<string, unknown> & { timings?: Record<string, number> };
}

/** Adds a stage's figures to the run's summary; the last stage also completes the run. */
export async function finishStage(db: Db, runId: string, stage: Stage, result: StageResult): Promise<void> {
  const run = await db.analysisRun.findUnique({ where: { id: runId }, select: { summary: true } });
  const before = (run?.summary ?? {}) as Record<string, unknown> & { timings?: Record<string, number> };
  const summary = {
    ...before,
    ...result.summary,
    timings: { ...(before.timings ?? {}), ...(result.summary.timings ?? {}) },
  };
  const last = nextStage(stage) === null;
  await db.analysisRun.updateMany({
    where: { id: runId, status: 'running', stage },
    data: {
      summary: summary as Prisma.InputJsonValue,
      ...(last ? { status: 'completed', finishedAt: new Date() } : {}),
    },
  });
}

/** A stage's run is no longer running that stage (failed as abandoned, say): it must stop. */
export class RunTakenOver extends Error {
  override name = 'RunTakenOver';
  constructor(
    readonly runId: string,
    readonly stage: Stage,
  ) {
    super(`run ${runId} is no longer in its ${stage} stage`);
  }
}

/**
 * A stage's progress call, for between its batches: records progress (the run's `stage_at`) at
 * most every `everyMs`, or at once with `force` (before the stage writes its results), and throws
 * RunTakenOver when the run is no longer running this stage.
 */
export type Progress = (force?: boolean) => Promise<void>;

export function stageProgress(
  db: Db,
  runId: string,
  stage: Stage,
  everyMs = PROGRESS_EVERY_MS,
  now: () => number = Date.now,
): Progress {
  let last = now();
  return async (force = false) => {
    const t = now();
    if (!force && t - last < everyMs) return;
    last = t;
    const moved = await db.analysisRun.updateMany({
      where: { id: runId, status: 'running', stage },
      data: { stageAt: new Date(t) },
    });
    if (moved.count === 0) throw new RunTakenOver(runId, stage);
  };
}

export async function failRun(db: Db, runId: string, stage: Stage, err: unknown): Promise<void> {
  const message = err instanceof Error ? err.message : String(err);
  await db.analysisRun.updateMany({
    where: { id: runId, status: { in: ['queued', 'running'] } },
    data: {
      status: 'failed',
      finishedAt: new Date(),
      error: `${stage}: ${message.split('\n')[0]?.slice(0, 480) ?? 'failed'}`,
    },
  });
}
