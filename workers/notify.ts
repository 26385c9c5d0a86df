import { createHash } from 'node:crypto';
import { type Job, UnrecoverableError } from 'bullmq';
import type { Context } from '../src/context.ts';
import { maskRecipient, type Notifier } from '../src/notify/notifier.ts';
import type { NotificationMessage } from '../src/queues/definitions.ts';
import { defineProcessor, type Processor } from './processor.ts';

/** What a delivered or finally failed job keeps in Redis instead of the token or code. */
export const REMOVED_SECRET = '[removed]';

/**
 * Delivers `notify` jobs through a notifier: the notifier itself, or a function that picks it from
 * the context (`(ctx) => ctx.notifier`) once the context carries one. Failures are retried with the
 * queue's exponential back-off; a notifier's UnrecoverableError, or the last attempt, fails the job.
 */
export function createNotifyProcessor(
  notifier: Notifier | ((ctx: Context) => Notifier),
): Processor<'notify'> {
  const notifierFor = typeof notifier === 'function' ? notifier : () => notifier;
  return defineProcessor({
    queue: 'notify',
    async process(job, ctx) {
      const active = notifierFor(ctx);
      const msg = job.data;
      try {
        if (!isNotificationMessage(msg)) throw new UnrecoverableError('malformed notify job');
        if (msg.secret === REMOVED_SECRET) {
          throw new UnrecoverableError(
            'the secret was already removed from this job; it cannot be sent again',
          );
        }
        // An expired token or code only confuses the user who receives it.
        if (Date.parse(msg.expiresAt) <= Date.now()) {
          throw new UnrecoverableError('the verification expired before it could be delivered');
        }
        await active.send(msg, { deliveryId: deliveryIdOf(job) });
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (isFinalAttempt(job, error)) {
          ctx.logger.error(
            {
              queue: 'notify',
              jobId: job.id,
              type: isNotificationMessage(msg) ? msg.type : undefined,
              to: typeof msg?.to === 'string' ? maskRecipient(msg.to) : undefined,
              accountId: typeof msg?.accountId === 'string' ? msg.accountId : undefined,
              notifier: active.kind,
              attempts: job.attemptsMade + 1,
              err: { message: error.message },
            },
            'verification message not delivered',
          );
          await removeSecret(job, ctx);
        }
        throw error;
      }
      await removeSecret(job, ctx);
      return { delivered: true, notifier: active.kind };
    },
  });
}

// BullMQ counts an attempt as made only once it has failed, so while this one runs attemptsMade is
// the number of earlier attempts.
function isFinalAttempt(job: Job<NotificationMessage>, err: Error): boolean {
  return (
    err instanceof UnrecoverableError ||
    err.name === 'UnrecoverableError' ||
    job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
  );
}

// The job stays in Redis for a while after it finishes (removeOnComplete/removeOnFail); the token
// or code must not stay with it.
async function removeSecret(job: Job<NotificationMessage>, ctx: Context): Promise<void> {
  if (job.data?.secret === undefined || job.data.secret === REMOVED_SECRET) return;
  try {
    await job.updateData({ ...job.data, secret: REMOVED_SECRET });
  } catch (err) {
    // Failing the job here would send the message again; the secret then expires with the job.
    ctx.logger.warn(
      { queue: 'notify', jobId: job.id, err: { message: (err as Error).message } },
      'could not remove the secret from a finished notify job',
    );
  }
}

/** The same UUID-shaped id for every attempt of one job, so receivers can drop repeats. */
export function deliveryIdOf(job: Pick<Job, 'queueQualifiedName' | 'id' | 'timestamp'>): string {
  const hex = createHash('sha256')
    .update(`${job.queueQualifiedName}:${job.id ?? ''}:${job.timestamp}`)
    .digest('hex');
  // RFC 9562 version 8 (application-defined), so it parses wherever a UUID is expected.
  const variant = ((Number.parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function isNotificationMessage(value: unknown): value is NotificationMessage {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    (v.type === 'verify_email' || v.type === 'verify_phone') &&
    typeof v.to === 'string' &&
    v.to.length > 0 &&
    typeof v.accountId === 'string' &&
    typeof v.secret === 'string' &&
    v.secret.length > 0 &&
    typeof v.expiresAt === 'string'
  );
}
