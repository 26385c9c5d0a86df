import { type Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Context } from '../src/context.ts';
import { RETIRED_QUEUE_NAMES } from '../src/queues/definitions.ts';
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
  }
  await reconcileSchedules(ctx, list, connection);
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

/**
 * Job schedulers live in Redis and outlast the process, the policy and the release that made them.
 * A schedule switched off in the policy (`detection.schedule: 0`) or dropped from the code would go
 * on firing. So each queue of `list` keeps exactly the schedulers its processor asks for now, and
 * the queues of earlier releases lose theirs.
 */
async function reconcileSchedules(ctx: Context, list: Processor[], connection: Redis): Promise<void> {
  for (const processor of list) {
    const queue = ctx.queues.get(processor.queue);
    const wanted = processor.schedules?.(ctx) ?? [];
    for (const schedule of wanted) {
      await queue.upsertJobScheduler(
        schedule.id,
        { every: schedule.every },
        { name: schedule.name, data: schedule.data },
      );
    }
    await removeSchedulersExcept(ctx, queue, new Set(wanted.map((schedule) => schedule.id)));
  }
  for (const name of RETIRED_QUEUE_NAMES) {
    const queue = new Queue(name, { connection, prefix: ctx.keys.bullPrefix });
    try {
      await removeSchedulersExcept(ctx, queue, new Set());
    } finally {
      await queue.close();
    }
  }
}

async function removeSchedulersExcept(ctx: Context, queue: Queue, keep: ReadonlySet<string>): Promise<void> {
  for (const existing of await queue.getJobSchedulers(0, -1)) {
    if (keep.has(existing.key)) continue;
    await queue.removeJobScheduler(existing.key);
    ctx.logger.info(
      { queue: queue.name, scheduler: existing.key },
      'removed a job scheduler no longer asked for',
    );
  }
}
