import { type Job, Worker } from 'bullmq';
import type { Context } from '../src/context.ts';
import { createRedis } from '../src/redis/client.ts';
import { createAlertsProcessor } from './alerts.ts';
import { enrich } from './enrich.ts';
import { maintenance } from './maintenance.ts';
import { createNotifyProcessor } from './notify.ts';
import type { Processor } from './processor.ts';
import { analysisStages } from './stages.ts';
import { startUsageIngestor } from './usage-ingest.ts';

/** Every queue consumer this process runs. */
export const processors: Processor[] = [
  maintenance,
  createNotifyProcessor((ctx) => ctx.notifier),
  enrich,
  ...analysisStages,
  createAlertsProcessor(({ config }) =>
    config.ALERT_WEBHOOK_URL && config.ALERT_WEBHOOK_SECRET
      ? { url: config.ALERT_WEBHOOK_URL, secret: config.ALERT_WEBHOOK_SECRET }
      : undefined,
  ),
] as unknown as Processor[];

export interface WorkerPool {
  workers: Worker[];
  /** Stops taking jobs, lets the ones in flight finish, closes connections. */
  close(): Promise<void>;
}

export async function startWorkers(ctx: Context, list: Processor[] = processors): Promise<WorkerPool> {
  // Workers block on Redis and must never give up on a command (BullMQ requires this).
  const connection = createRedis({
    url: ctx.config.REDIS_URL,
    connectTimeoutMs: ctx.config.CONNECT_TIMEOUT_MS,
    forWorkers: true,
  });
  connection.on('error', (err) =>
    ctx.logger.warn({ err: { message: err.message } }, 'worker Redis connection error'),
  );
  const workers: Worker[] = [];
  for (const processor of list) {
    const worker = new Worker(processor.queue, (job: Job) => processor.process(job, ctx), {
      connection,
      prefix: ctx.keys.bullPrefix,
      concurrency: processor.concurrency ?? ctx.config.WORKER_CONCURRENCY,
    });
    worker.on('failed', (job, err) =>
      ctx.logger.warn(
        {
          queue: processor.queue,
          jobId: job?.id,
          attempts: job?.attemptsMade,
          err: { message: err.message },
        },
        'job failed',
      ),
    );
    worker.on('error', (err) =>
      ctx.logger.error({ queue: processor.queue, err: { message: err.message } }, 'worker error'),
    );
    workers.push(worker);
    for (const schedule of processor.schedules?.(ctx) ?? []) {
      await ctx.queues
        .get(processor.queue)
        .upsertJobScheduler(
          schedule.id,
          { every: schedule.every },
          { name: schedule.name, data: schedule.data },
        );
    }
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  // Not a BullMQ queue: a consumer group on the usage stream that enforcement appends to.
  const usage = await startUsageIngestor(ctx);
  ctx.logger.info({ queues: list.map((p) => p.queue) }, 'workers started');
  return {
    workers,
    async close() {
      await Promise.all([...workers.map((w) => w.close()), usage.close()]);
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
