import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKeys } from '../../src/redis/keys.ts';
import { cleanRedisPrefix, startTestApp, testPrefix } from '../support/harness.ts';

// Job schedulers live in Redis: a worker start must leave exactly the ones the policy and the code
// ask for, whatever an earlier start or an earlier release left behind.

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

async function plant(prefix: string, queueName: string, id: string): Promise<void> {
  const queue = new Queue(queueName, { connection: redis, prefix: createKeys(prefix).bullPrefix });
  try {
    await queue.upsertJobScheduler(id, { every: 3_600_000 }, { name: id, data: {} });
  } finally {
    await queue.close();
  }
}

async function schedulerIds(prefix: string, queueName: string): Promise<string[]> {
  const queue = new Queue(queueName, { connection: redis, prefix: createKeys(prefix).bullPrefix });
  try {
    return (await queue.getJobSchedulers(0, -1)).map((s) => s.key).sort();
  } finally {
    await queue.close();
  }
}

describe('job schedulers at worker start', () => {
  it('keeps the analysis schedule the policy asks for, and drops strays and retired queues’ ones', async () => {
    const prefix = testPrefix();
    // Left by an earlier release (the one-queue analysis) and by a schedule since taken out.
    await plant(prefix, 'analysis', 'scheduled-analysis');
    await plant(prefix, 'features', 'nightly-extra');
    const app = await startTestApp({ prefix, workers: true, scheduledAnalysis: true });
    try {
      expect(await schedulerIds(prefix, 'features')).toEqual(['scheduled-analysis']);
      expect(await schedulerIds(prefix, 'analysis')).toEqual([]);
      expect(await schedulerIds(prefix, 'maintenance')).toEqual(['purge-expired-verifications']);
    } finally {
      await app.close();
      await cleanRedisPrefix(inject('redisUrl'), prefix);
    }
  });

  it('stops the scheduled analysis once the policy switches it off (schedule: 0)', async () => {
    const prefix = testPrefix();
    // What a start with the schedule on left behind.
    await plant(prefix, 'features', 'scheduled-analysis');
    const app = await startTestApp({ prefix, workers: true });
    try {
      expect(app.ctx.policy.detection.schedule).toBe(0);
      expect(await schedulerIds(prefix, 'features')).toEqual([]);
      expect(await schedulerIds(prefix, 'maintenance')).toEqual(['purge-expired-verifications']);
    } finally {
      await app.close();
      await cleanRedisPrefix(inject('redisUrl'), prefix);
    }
  });
});
