import type { Job } from 'bullmq';
import type { Context } from '../src/context.ts';
import type { JobPayloads, QueueName } from '../src/queues/definitions.ts';

/** One queue's consumer: one file per queue in workers/, listed in workers/index.ts. */
export interface Processor<Q extends QueueName = QueueName> {
  queue: Q;
  /** Jobs in flight per process; defaults to WORKER_CONCURRENCY. */
  concurrency?: number;
  process(job: Job<JobPayloads[Q]>, ctx: Context): Promise<unknown>;
  /** Repeating jobs this queue runs on its own (BullMQ job schedulers, idempotent upserts). */
  schedules?: (ctx: Context) => Array<{ id: string; every: number; name: string; data: JobPayloads[Q] }>;
}

export const defineProcessor = <Q extends QueueName>(p: Processor<Q>): Processor<Q> => p;
