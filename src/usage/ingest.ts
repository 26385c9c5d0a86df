import type { PoolClient } from 'pg';
import type { Db } from '../db/client.ts';
import { LAST_USED_STEP_MS } from '../keys/last-used.ts';
import { decodeUsageEvent, type UsageEventRecord } from './event.ts';

// Usage ingestion: stream entries become hourly aggregates (every event), sampled events (for the
// detection workers) and api_keys.last_used_at, all in one PostgreSQL transaction per batch.
//
// Exactly-once counting. The worker acknowledges a batch on the stream only after this transaction
// commits, so a crash between the two redelivers the batch. Sampled events and last_used_at are
// naturally idempotent (primary key, greatest()), but the hourly sums are not. The transaction
// therefore first records every entry id in `usage_ingested` (ON CONFLICT DO NOTHING RETURNING) and
// aggregates only the ids that were new. Two workers holding the same entry (one claimed it from
// the other) serialise on that primary key, and the loser sees it as already counted. The ledger
// only needs ids that could still be delivered, i.e. those still in the stream: `pruneIngested`
// drops everything older than the stream's first entry.

/**
 * At most this many distinct values per set (ips, fingerprints, asns) per account-hour, so a hostile
 * account cannot grow a row without bound. A stored set of this size means "at least this many";
 * the first values seen are the ones kept.
 */
export const DISTINCT_CAP = 64;

const HOUR_MS = 3_600_000;
const INT4_MAX = 2_147_483_647;
// The largest instant a JavaScript Date (and so a timestamptz parameter) can carry.
const MAX_DATE_MS = 8_640_000_000_000_000;

/** One decoded stream entry: its id (`<ms>-<seq>`) and its event. */
export interface IngestEntry {
  id: string;
  event: UsageEventRecord;
}

export interface HourTotals {
  accountId: string;
  /** Start of the hour (UTC), ms since the epoch. */
  hour: number;
  requests: number;
  /** Cost of the requests served: a denied request consumed nothing. */
  cost: number;
  denied: number;
  ips: Set<string>;
  fingerprints: Set<string>;
  asns: Set<number>;
}

export interface Aggregate {
  /** By `${accountId}|${hour}`. */
  hours: Map<string, HourTotals>;
  /** The entries detection asked for (sampled), in stream order. */
  events: IngestEntry[];
  /** Latest event time per key, ms since the epoch. */
  keysLastUsed: Map<string, number>;
}

export interface WriteResult {
  /** Entries counted now. */
  counted: number;
  /** Entries already counted by an earlier delivery. */
  duplicates: number;
  /** Entries of accounts that no longer exist. */
  orphaned: number;
}

export const hourOf = (at: number): number => Math.floor(at / HOUR_MS) * HOUR_MS;

const addCapped = <T>(set: Set<T>, value: T | null): void => {
  if (value !== null && set.size < DISTINCT_CAP) set.add(value);
};

/** Folds a batch into per-account-hour totals, the sampled events and each key's last use. */
export function aggregate(entries: readonly IngestEntry[]): Aggregate {
  const hours = new Map<string, HourTotals>();
  const events: IngestEntry[] = [];
  const keysLastUsed = new Map<string, number>();
  for (const entry of entries) {
    const e = entry.event;
    const hour = hourOf(e.at);
    const key = `${e.accountId}|${hour}`;
    let totals = hours.get(key);
    if (!totals) {
      totals = {
        accountId: e.accountId,
        hour,
        requests: 0,
        cost: 0,
        denied: 0,
        ips: new Set(),
        fingerprints: new Set(),
        asns: new Set(),
      };
      hours.set(key, totals);
    }
    totals.requests += 1;
    if (e.decision === 'deny') totals.denied += 1;
    else totals.cost += e.cost;
    addCapped(totals.ips, e.ip);
    addCapped(totals.fingerprints, e.fingerprint);
    addCapped(totals.asns, e.asn);
    if (e.sampled) events.push(entry);
    if (e.keyId !== null) keysLastUsed.set(e.keyId, Math.max(keysLastUsed.get(e.keyId) ?? e.at, e.at));
  }
  return { hours, events, keysLastUsed };
}

const inInt4 = (n: number): boolean => n >= 0 && n <= INT4_MAX;
// PostgreSQL text cannot hold NUL; one such value must not make a whole batch unwritable.
const clean = (s: string | null): string | null => (s === null ? null : s.replaceAll('\u0000', ''));

/**
 * A stream entry as ingestion needs it, or null when it cannot be one (acknowledged and skipped).
 * Beyond `decodeUsageEvent`: an entry appended with `ok=0` was refused by the limiter although it
 * was built as `allow`, and values the columns cannot hold are dropped rather than failing the batch.
 */
export function decodeForIngest(fields: Record<string, string>): UsageEventRecord | null {
  const e = decodeUsageEvent(fields);
  if (!e || e.at < 0 || e.at > MAX_DATE_MS) return null;
  return {
    ...e,
    accountId: clean(e.accountId) ?? '',
    keyId: clean(e.keyId),
    ip: clean(e.ip),
    // 4-byte private ASNs above 2^31 do not fit the integer columns.
    asn: e.asn !== null && inInt4(e.asn) ? e.asn : null,
    fingerprint: clean(e.fingerprint),
    tlsFingerprint: clean(e.tlsFingerprint),
    userAgent: clean(e.userAgent),
    endpoint: clean(e.endpoint),
    reason: clean(e.reason),
    decision: fields.ok === '0' ? 'deny' : e.decision,
    minhash: e.minhash.every(inInt4) ? e.minhash : [],
  };
}

/** Flat `[field, value, field, value…]` as Redis returns it → a record. */
export function fieldsOf(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * Writes one batch in one transaction and says what it counted. Entries already in the ledger are
 * skipped, so calling it again with the same entries changes nothing. Throws on a database fault:
 * the caller must not acknowledge the batch then.
 */
export async function writeBatch(
  db: Db,
  stream: string,
  entries: readonly IngestEntry[],
): Promise<WriteResult> {
  const unique = [...new Map(entries.map((e) => [e.id, e])).values()];
  if (unique.length === 0) return { counted: 0, duplicates: 0, orphaned: 0 };
  const ids = unique.map((e) => e.id);

  // On the pg pool under Prisma (src/db/client.ts): the rows go as one large JSON parameter, which
  // Prisma's raw queries would serialise and parse again first.
  const client = await db.pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    // Lock waits behind another worker's batch on the same hot rows are normal, not a fault.
    await client.query("SET LOCAL statement_timeout = '60s'");
    // Sorted, so two workers recording overlapping ids take the row locks in the same order.
    const fresh = await client.query<{ ms: string; seq: string }>(
      `INSERT INTO usage_ingested (stream, ms, seq)
       SELECT $1, split_part(x, '-', 1)::bigint, split_part(x, '-', 2)::bigint
       FROM unnest($2::text[]) AS x
       ORDER BY 2, 3
       ON CONFLICT DO NOTHING
       RETURNING ms, seq`,
      [stream, ids],
    );
    const freshIds = new Set(fresh.rows.map((r) => `${r.ms}-${r.seq}`));
    const novel = unique.filter((e) => freshIds.has(e.id));
    let result: WriteResult = { counted: 0, duplicates: unique.length, orphaned: 0 };
    if (novel.length > 0) {
      const accountIds = [...new Set(novel.map((e) => e.event.accountId))];
      const existing = await client.query<{ id: string }>(
        'SELECT id FROM accounts WHERE id = ANY($1::text[])',
        [accountIds],
      );
      const live = new Set(existing.rows.map((r) => r.id));
      const kept = novel.filter((e) => live.has(e.event.accountId));
      result = {
        counted: kept.length,
        duplicates: unique.length - novel.length,
        orphaned: novel.length - kept.length,
      };
      if (kept.length > 0) {
        const { hours, events, keysLastUsed } = aggregate(kept);
        await upsertHours(client, [...hours.values()]);
        if (events.length > 0) await insertEvents(client, events);
        if (keysLastUsed.size > 0) await touchKeys(client, keysLastUsed);
      }
    }
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

// Rows travel as one jsonb parameter: no parameter-count limit however large the batch, and the
// per-row arrays (ips, minhash) need no two-dimensional array juggling.

async function upsertHours(client: PoolClient, hours: HourTotals[]): Promise<void> {
  const rows = hours
    .sort((a, b) => (a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : a.hour - b.hour))
    .map((h) => ({
      account_id: h.accountId,
      hour: iso(h.hour),
      requests: h.requests,
      cost: h.cost,
      denied: h.denied,
      ips: [...h.ips],
      fingerprints: [...h.fingerprints],
      asns: [...h.asns],
    }));
  // The merged sets keep their oldest values first: a set already at the cap stays as it is, and so
  // does one that holds every new value already (a stored set has no repeats). Those two, the
  // usual cases (an account on a few addresses, or a farm's account at the cap), skip the merge:
  // unnesting, grouping and sorting both sets for every row was ~40% of this batch's statement
  // time in `npm run bench:ingest`.
  const merged = (set: string) =>
    `CASE WHEN cardinality(h.${set}) >= $2 OR h.${set} @> EXCLUDED.${set} THEN h.${set}
       ELSE ARRAY(SELECT v FROM unnest(h.${set} || EXCLUDED.${set}) WITH ORDINALITY AS u(v, n)
                  GROUP BY v ORDER BY min(n) LIMIT $2) END`;
  await client.query(
    `INSERT INTO usage_hours AS h (account_id, hour, requests, cost, denied, ips, fingerprints, asns)
     SELECT r.account_id, r.hour, r.requests, r.cost, r.denied, r.ips, r.fingerprints, r.asns
     FROM jsonb_to_recordset($1::jsonb) AS r(
       account_id text, hour timestamptz, requests int, cost bigint, denied int,
       ips text[], fingerprints text[], asns int[])
     ORDER BY r.account_id, r.hour
     ON CONFLICT (account_id, hour) DO UPDATE SET
       requests = h.requests + EXCLUDED.requests,
       cost = h.cost + EXCLUDED.cost,
       denied = h.denied + EXCLUDED.denied,
       ips = ${merged('ips')},
       fingerprints = ${merged('fingerprints')},
       asns = ${merged('asns')}`,
    [JSON.stringify(rows), DISTINCT_CAP],
  );
}

async function insertEvents(client: PoolClient, events: IngestEntry[]): Promise<void> {
  const rows = events.map(({ id, event: e }) => ({
    id: `evt_${id}`,
    account_id: e.accountId,
    key_id: e.keyId,
    at: iso(e.at),
    ip: e.ip,
    asn: e.asn,
    fingerprint: e.fingerprint,
    tls_fingerprint: e.tlsFingerprint,
    user_agent: e.userAgent,
    endpoint: e.endpoint,
    cost: Math.min(e.cost, INT4_MAX),
    decision: e.decision,
    reason: e.reason,
    query_minhash: e.minhash,
  }));
  await client.query(
    `INSERT INTO usage_events (id, account_id, key_id, at, ip, asn, fingerprint, tls_fingerprint,
       user_agent, endpoint, cost, decision, reason, query_minhash, source)
     SELECT r.id, r.account_id, r.key_id, r.at, r.ip, r.asn, r.fingerprint, r.tls_fingerprint,
       r.user_agent, r.endpoint, r.cost, r.decision, r.reason, r.query_minhash, 'live'
     FROM jsonb_to_recordset($1::jsonb) AS r(
       id text, account_id text, key_id text, at timestamptz, ip text, asn int, fingerprint text,
       tls_fingerprint text, user_agent text, endpoint text, cost int, decision text, reason text,
       query_minhash int[])
     ON CONFLICT (id) DO NOTHING`,
    [JSON.stringify(rows)],
  );
}

async function touchKeys(client: PoolClient, lastUsed: Map<string, number>): Promise<void> {
  const rows = JSON.stringify([...lastUsed].map(([id, at]) => ({ id, at: iso(at) })));
  // A key's time moves at most once a minute (LAST_USED_STEP_MS), as the API promises: each update is
  // a new row version, and a busy key is in nearly every batch, so writing it every time was ~16% of
  // a batch's statement time. Hot keys appear in every worker's batches: lock them in id order so two
  // batches cannot deadlock.
  const moves = "k.last_used_at IS NULL OR k.last_used_at < r.at - $2::int * interval '1 millisecond'";
  await client.query(
    `SELECT k.id FROM api_keys k
     JOIN jsonb_to_recordset($1::jsonb) AS r(id text, at timestamptz) ON r.id = k.id
     WHERE ${moves}
     ORDER BY k.id
     FOR NO KEY UPDATE OF k`,
    [rows, LAST_USED_STEP_MS],
  );
  await client.query(
    `UPDATE api_keys AS k SET last_used_at = r.at
     FROM jsonb_to_recordset($1::jsonb) AS r(id text, at timestamptz)
     WHERE k.id = r.id AND (${moves})`,
    [rows, LAST_USED_STEP_MS],
  );
}

const PRUNE_CHUNK = 10_000;

/**
 * Forgets ledger ids older than `firstId`, the stream's oldest entry: an entry trimmed from the
 * stream comes back, if at all, without its fields and is never counted again. Deletes in chunks so
 * a large backlog never holds locks or writes WAL in one burst.
 */
export async function pruneIngested(db: Db, stream: string, firstId: string): Promise<number> {
  const ms = firstId.split('-')[0] ?? '0';
  let total = 0;
  for (;;) {
    const n = await db.$executeRaw`
      DELETE FROM usage_ingested WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM usage_ingested WHERE stream = ${stream} AND ms < ${ms}::bigint LIMIT ${PRUNE_CHUNK}))`;
    total += n;
    if (n < PRUNE_CHUNK) return total;
  }
}

/**
 * Whether a write failed on the data itself (SQLSTATE class 22: out of range, bad encoding…):
 * retrying the same rows cannot succeed, unlike a lost connection or a deadlock.
 */
export function isDataError(err: unknown): boolean {
  const e = err as {
    code?: unknown;
    meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } };
    cause?: { originalCode?: unknown };
  };
  const code = e?.meta?.driverAdapterError?.cause?.originalCode ?? e?.cause?.originalCode ?? e?.code;
  return typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code);
}
