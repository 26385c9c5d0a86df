import { type Job, UnrecoverableError } from 'bullmq';
import { redactUrl } from '../src/config.ts';
import type { Context } from '../src/context.ts';
import { type OperatorAlert, operatorAlertSchema } from '../src/detection/actions.ts';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signWebhookBody } from '../src/notify/webhook.ts';
import { deliveryIdOf } from './notify.ts';

// Operator alerts (a farm suspended or throttled, a tier's usage surging) leave Gatehouse as signed
// JSON POSTs, signed like verification webhooks so one receiver library checks both.

export interface AlertTarget {
  url: string;
  secret: string;
  timeoutMs?: number;
}

/** The `alerts` queue's consumer; the shape of Processor<'alerts'> (workers/processor.ts). */
export interface AlertsProcessor {
  queue: 'alerts';
  concurrency?: number;
  process(job: Job<OperatorAlert>, ctx: Context): Promise<unknown>;
}

/**
 * Delivers `alerts` jobs to the operator's endpoint: the target itself, or a function that reads
 * it from the context. Without one (the endpoint was unset after the job was queued) a job is
 * dropped. A 4xx other than 408 and 429 fails the job at once; anything else is retried.
 */
export function createAlertsProcessor(
  target: AlertTarget | undefined | ((ctx: Context) => AlertTarget | undefined),
): AlertsProcessor {
  const targetFor = typeof target === 'function' ? target : () => target;
  return {
    queue: 'alerts',
    async process(job, ctx) {
      const to = targetFor(ctx);
      if (!to) {
        ctx.logger.warn(
          { queue: 'alerts', jobId: job.id },
          'operator alert dropped: no alert endpoint configured',
        );
        return { delivered: false };
      }
      const parsed = operatorAlertSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError('malformed alert job');
      const alert = parsed.data;
      const where = redactUrl(to.url);
      const timeoutMs = to.timeoutMs ?? ctx.config.NOTIFY_TIMEOUT_MS;
      const body = JSON.stringify(alert);
      let res: Response;
      try {
        res = await fetch(to.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'Gatehouse-Alerts/1',
            [SIGNATURE_HEADER]: signWebhookBody(to.secret, body, Date.now() / 1000),
            [EVENT_HEADER]: alert.type,
            [DELIVERY_HEADER]: deliveryIdOf(job),
          },
          body,
          // A redirected POST would be replayed as a GET or to another host: treat it as a failure.
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
        // Never the raw URL: its query string may carry the receiver's key.
        throw new Error(
          `alert webhook ${where} ${timedOut ? `did not answer within ${timeoutMs} ms` : 'unreachable'}`,
        );
      }
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) {
        ctx.logger.info(
          { queue: 'alerts', type: alert.type, status: res.status },
          'operator alert delivered',
        );
        return { delivered: true };
      }
      const message = `alert webhook ${where} answered HTTP ${res.status}`;
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        throw new UnrecoverableError(message);
      }
      throw new Error(message);
    },
  };
}
