/**
 * How far a key's `last_used_at` must move before it is written again. The API documents the field
 * as updated at most once a minute: it may trail the latest use by up to a minute, and a key in
 * constant use costs one row update a minute, not one per flush or ingestion batch.
 */
export const LAST_USED_STEP_MS = 60_000;
