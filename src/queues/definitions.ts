import type { OperatorAlert } from '../detection/actions.ts';

// Queue names and typed job payloads, shared by the API (producers) and the workers (consumers).

export interface NotificationMessage {
  type: 'verify_email' | 'verify_phone';
  /** An e-mail address or an E.164 phone number. */
  to: string;
  accountId: string;
  /** The e-mail token or the SMS code. Kept in the job only until it is delivered. */
  secret: string;
  expiresAt: string;
}

export interface JobPayloads {
  /** Housekeeping: remove verification secrets long after they expired. */
  maintenance: { task: 'purge-expired-verifications'; olderThanDays: number };
  /** Deliver a verification message through the configured notifier, with retries. */
  notify: NotificationMessage;
  /** Extract an account's signals into the inverted index (then linking picks it up). */
  enrich: { accountId: string };
  /** An analysis run's first stage: usage features (scheduled runs have no run record yet). */
  features: { runId?: string };
  /** An analysis run's next stages: links, then cluster scores, then actions (src/detection/run-stages.ts). */
  link: { runId: string };
  score: { runId: string };
  act: { runId: string };
  /** Tell the operator (signed webhook) that a cluster was throttled or suspended, or a tier surged. */
  alerts: OperatorAlert;
}

export type QueueName = keyof JobPayloads;

export const QUEUE_NAMES: readonly QueueName[] = [
  'maintenance',
  'notify',
  'enrich',
  'features',
  'link',
  'score',
  'act',
  'alerts',
];

/**
 * Queues of earlier releases that nothing consumes any more. Their job schedulers are removed when
 * workers start, so an upgrade leaves nothing firing into them (`analysis` ran a whole analysis in
 * one job before the four stage queues).
 */
export const RETIRED_QUEUE_NAMES: readonly string[] = ['analysis'];
