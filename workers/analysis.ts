import type { Context } from '../src/context.ts';
import { runAnalysis } from '../src/detection/run.ts';
import { newId } from '../src/lib/ids.ts';
import { defineProcessor } from './processor.ts';

/**
 * Runs one analysis at a time (concurrency 1: runs replace the link graph and cluster membership
 * wholesale). A scheduled run creates its own record; a retried job finds its run finished and
 * does nothing, so no action is applied twice.
 */
export const analysis = defineProcessor({
  queue: 'analysis',
  concurrency: 1,
  async process(job, ctx: Context) {
    const runId =
      job.data.runId ??
      (await ctx.db.analysisRun.create({ data: { id: newId('run'), requestedBy: 'schedule' } })).id;
    const claimed = await ctx.db.analysisRun.updateMany({
      where: { id: runId, status: 'queued' },
      data: { status: 'running', startedAt: new Date() },
    });
    if (claimed.count === 0) return { skipped: runId };
    try {
      const summary = await runAnalysis(ctx.detection, runId, job.data.asOf ? new Date(job.data.asOf) : null);
      await ctx.db.analysisRun.update({
        where: { id: runId },
        data: {
          status: 'completed',
          finishedAt: new Date(),
          asOf: new Date(summary.asOf),
          summary: { ...summary },
        },
      });
      return summary;
    } catch (err) {
      ctx.logger.error({ runId, err }, 'analysis run failed');
      await ctx.db.analysisRun.update({
        where: { id: runId },
        data: {
          status: 'failed',
          finishedAt: new Date(),
          error: (err as Error).message.split('\n')[0]?.slice(0, 500) ?? 'failed',
        },
      });
      return { failed: runId };
    }
  },
  schedules: (ctx) =>
    ctx.policy.detection.schedule === 0
      ? []
      : [{ id: 'scheduled-analysis', every: ctx.policy.detection.schedule, name: 'scheduled', data: {} }],
});
