import type { Job } from 'bullmq';
import type { Context } from '../src/context.ts';
import {
  analyseActions,
  analyseClusters,
  analyseFeatures,
  analyseLinks,
  latestEventTime,
} from '../src/detection/run.ts';
import {
  claimRun,
  enterStage,
  failRun,
  finishStage,
  nextStage,
  type Progress,
  RunTakenOver,
  type Stage,
  type StageResult,
  scheduledRun,
  stageProgress,
} from '../src/detection/run-stages.ts';
import { defineProcessor, type Processor } from './processor.ts';

// The four stages of an analysis run, one queue and one processor each (the stage logic and its
// bookkeeping are in src/detection/run.ts and src/detection/run-stages.ts). A stage's job carries
// only the run id: everything else is in PostgreSQL. Each queue runs one job at a time, and runs
// never overlap (run-stages.ts), so stages of different runs never interleave.

// A run waiting for another to finish looks again this often.
const BUSY_RETRY_MS = 2_000;
// A stage is not retried on its own: a failure is recorded on the run, and the next run starts over.
const STAGE_JOB = { attempts: 1 } as const;

async function handOn(ctx: Context, runId: string, stage: Stage): Promise<void> {
  const next = nextStage(stage);
  if (!next) return;
  // The job id makes a duplicate hand-on (a retried enqueue) a no-op.
  await ctx.queues.add(next, next, { runId }, { ...STAGE_JOB, jobId: `${runId}-${next}` });
}

/**
 * Runs one stage's work and records it: its figures on success (then the next stage), or the
 * failure. The work reports its progress between batches (run-stages.ts), which keeps a long stage
 * from being taken as abandoned, and stops it once its run was failed.
 */
export async function runStage(
  ctx: Context,
  runId: string,
  stage: Stage,
  asOf: Date,
  work: (progress: Progress) => Promise<StageResult>,
): Promise<unknown> {
  let result: StageResult;
  try {
    result = await work(stageProgress(ctx.db, runId, stage));
  } catch (err) {
    if (err instanceof RunTakenOver) {
      // Failed meanwhile (abandoned): its record already says why, and the next run owns the data.
      ctx.logger.warn({ runId, stage }, 'analysis stage stopped: its run is no longer running');
      return { stopped: runId, stage };
    }
    ctx.logger.error({ runId, stage, err }, 'analysis stage failed');
    await failRun(ctx.db, runId, stage, err);
    return { failed: runId, stage };
  }
  await finishStage(ctx.db, runId, stage, result);
  await handOn(ctx, runId, stage);
  ctx.logger.info({ runId, stage, asOf: asOf.toISOString(), ...result.summary }, 'analysis stage done');
  return result.summary;
}

export const features = defineProcessor({
  queue: 'features',
  concurrency: 1,
  async process(job: Job<{ runId?: string }>, ctx: Context) {
    const runId = job.data.runId ?? (await scheduledRun(ctx.db));
    const claim = await claimRun(ctx.db, runId, () => latestEventTime(ctx.db));
    if (claim.outcome === 'gone') return { skipped: runId };
    if (claim.outcome === 'busy') {
      // Another run holds the link graph: come back once it is likely done.
      await ctx.queues.add(
        'features',
        'features',
        { runId },
        { ...STAGE_JOB, delay: BUSY_RETRY_MS, jobId: `${runId}-features-${Date.now()}` },
      );
      return { waiting: runId, behind: claim.runningId };
    }
    return runStage(ctx, runId, 'features', claim.asOf, (progress) =>
      analyseFeatures(ctx.detection, claim.asOf, progress),
    );
  },
  schedules: (ctx) =>
    ctx.policy.detection.schedule === 0
      ? []
      : [{ id: 'scheduled-analysis', every: ctx.policy.detection.schedule, name: 'scheduled', data: {} }],
});

function laterStage(
  stage: Exclude<Stage, 'features'>,
  work: (ctx: Context, runId: string, asOf: Date, progress: Progress) => Promise<StageResult>,
) {
  return defineProcessor({
    queue: stage,
    concurrency: 1,
    async process(job: Job<{ runId: string }>, ctx: Context) {
      const { runId } = job.data;
      const asOf = await enterStage(ctx.db, runId, stage);
      if (!asOf) return { skipped: runId, stage };
      return runStage(ctx, runId, stage, asOf, (progress) => work(ctx, runId, asOf, progress));
    },
  });
}

export const link = laterStage('link', (ctx, _runId, asOf, progress) =>
  analyseLinks(ctx.detection, asOf, progress),
);
export const score = laterStage('score', (ctx, _runId, asOf, progress) =>
  analyseClusters(ctx.detection, asOf, progress),
);
export const act = laterStage('act', (ctx, runId, asOf, progress) =>
  analyseActions(ctx.detection, runId, asOf, progress),
);

export const analysisStages: Processor[] = [features, link, score, act] as unknown as Processor[];
