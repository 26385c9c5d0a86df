import { defineProcessor } from './processor.ts';

const DAY_MS = 24 * 3600 * 1000;

/** Housekeeping: verification secrets are only hashes, but nothing needs them long after expiry. */
export const maintenance = defineProcessor({
  queue: 'maintenance',
  concurrency: 1,
  async process(job, ctx) {
    switch (job.data.task) {
      case 'purge-expired-verifications': {
        const cutoff = new Date(Date.now() - job.data.olderThanDays * DAY_MS);
        const { count } = await ctx.db.verification.deleteMany({ where: { expiresAt: { lt: cutoff } } });
        return { purged: count };
      }
    }
  },
  schedules: (ctx) => [
    {
      id: 'purge-expired-verifications',
      every: 3600 * 1000,
      name: 'purge-expired-verifications',
      data: { task: 'purge-expired-verifications', olderThanDays: ctx.policy.retention.verificationsDays },
    },
  ],
});
