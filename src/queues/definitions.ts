// Queue names and typed job payloads, shared by the API (producers) and the workers (consumers).

export interface JobPayloads {
  /** Housekeeping: remove verification secrets long after they expired. */
  maintenance: { task: 'purge-expired-verifications'; olderThanDays: number };
}

export type QueueName = keyof JobPayloads;

export const QUEUE_NAMES: readonly QueueName[] = ['maintenance'];
