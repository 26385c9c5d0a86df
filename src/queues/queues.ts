import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type JobPayloads, QUEUE_NAMES, type QueueName } from './definitions.ts';

export interface Queues {
  add<Q extends QueueName>(queue: Q, name: string, data: JobPayloads[Q], opts?: JobsOptions): Promise<void>;
  get<Q extends QueueName>(queue: Q): Queue<JobPayloads[Q]>;
  depths(): Promise<Record<string, Record<string, number>>>;
  close(): Promise<void>;
}

const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { count: 1_000, age: 24 * 3600 },
  removeOnFail: { count: 5_000, age: 7 * 24 * 3600 },
};

export function createQueues(connection: Redis, prefix: string): Queues {
  const queues = new Map<QueueName, Queue>();
  for (const name of QUEUE_NAMES) {
    queues.set(name, new Queue(name, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS }));
  }
  const get = <Q extends QueueName>(name: Q) => queues.get(name) as unknown as Queue<JobPayloads[Q]>;
  return {
    get,
    async add(queue, name, data, opts) {
      // BullMQ's generic job-name typing is narrower than ours; the payload type is checked above.
      await (get(queue) as unknown as Queue).add(name, data, opts);
    },
    async depths() {
      const out: Record<string, Record<string, number>> = {};
      await Promise.all(
        [...queues].map(async ([name, q]) => {
          out[name] = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
        }),
      );
      return out;
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
