// API keys: issued to active accounts, at most `maxKeys` live ones per account (by tier), stored
// only as an HMAC with the server-side pepper, and resolved by `lookup` on every gateway call.
//
// Decisions a caller can rely on:
// - Only an `active` account gets a new key. `pending` and `challenged` accounts must finish
//   verification first (verification_required); a `suspended` one gets account_suspended. A
//   `throttled` account keeps using the keys it holds (enforcement slows them down) but cannot mint
//   new ones (account_restricted): a farm flagged for throttling must not spread over fresh keys.
// - A live key is active and unexpired. A key in its rotation grace (rotatedTo set) is not counted,
//   so a key and its successor count as one and rotation works at the limit.
// - Rotation never extends a key's life: the successor inherits the old key's expiry, and the grace
//   only ever brings the old key's expiry closer.
// - Every write to an account's keys happens with the account row locked (SELECT … FOR UPDATE), so
//   concurrent creates at the limit cannot both succeed and a key cannot be rotated twice.
// - `lookup` answers from memory for up to 30 s (unknown and dead keys for 2 s); past that a live
//   key is still answered from memory while one background load refreshes it, and only an entry
//   unused for 10 minutes is loaded on the request path again. Revocation, rotation and
//   `invalidateAccount` publish on the invalidation channel and every instance drops what it cached
//   at once; a lost message is bounded by the TTL plus one refresh. Expiry is checked on every lookup.
// - lastUsedAt is written in batches every 30 s (and on close), never on the request path.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit.ts';
import type { Db } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import type { AccountStatus } from '../generated/prisma/enums.ts';
import { ProblemError } from '../http/problem.ts';
import { newId } from '../lib/ids.ts';
import { hmacHex, newSecret } from '../lib/secrets.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';
import type { Principal } from '../tokens/scopes.ts';
import { LAST_USED_STEP_MS } from './last-used.ts';

export const KEY_PREFIX = 'gh_live_';
/** 32 random bytes are 43 base64url characters. */
const KEY_FORMAT = /^gh_live_[A-Za-z0-9_-]{43}$/;
const DISPLAY_PREFIX_LENGTH = 12;
export const MAX_GRACE_SECONDS = 7 * 24 * 3600;

const CACHE_TTL_MS = 30_000;
// Past this a stale entry is not trusted even while PostgreSQL cannot be reached to refresh it.
const STALE_LIMIT_MS = 10 * 60_000;
// A failed refresh is retried no sooner than this, so an outage costs one query per key per second.
const REFRESH_RETRY_MS = 1_000;
// Stale keys are refreshed together: gathered this long, then loaded this many per query.
const REFRESH_GATHER_MS = 10;
const REFRESH_BATCH = 500;
const NEGATIVE_TTL_MS = 2_000;
const MAX_CACHED = 50_000;
// lastUsedAt times written per statement (see flushLastUsed).
const LAST_USED_CHUNK = 2_000;
// Kept apart from live keys, so a flood of invalid keys cannot evict the keys in real use.
const MAX_NEGATIVE = 10_000;
const LAST_USED_FLUSH_MS = 30_000;
const WARN_EVERY_MS = 10_000;
// Creates at the limit queue on the account row lock; give them time to take their turn.
const TX_OPTIONS = { maxWait: 5_000, timeout: 10_000 } as const;

export type KeyState = 'active' | 'revoked' | 'expired';

export interface KeyView {
  id: string;
  accountId: string;
  name: string | null;
  prefix: string;
  status: KeyState;
  expiresAt: string | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  rotatedTo: string | null;
}

/** A new key with its secret, which is never shown again. */
export interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  name: string | null;
  status: 'active';
  expiresAt: string | null;
  createdAt: string;
}

export interface RotatedKey extends CreatedKey {
  /** The replaced key and the instant it stops working. */
  previous: { id: string; expiresAt: string };
}

/** What enforcement needs to know about the key a request carries. */
export interface KeyRecord {
  keyId: string;
  accountId: string;
  /** Epoch milliseconds; null when the key never expires. */
  expiresAt: number | null;
  account: {
    status: AccountStatus;
    tier: string;
    limitsOverride: unknown;
    clusterId: string | null;
  };
}

/** The hot-path resolver: null for unknown, revoked and expired keys. */
export type KeyLookup = (secret: string) => Promise<KeyRecord | null>;

export interface KeyService {
  create(
    accountId: string,
    input: { name?: string | null | undefined; expiresAt?: Date | null | undefined },
    actor: Principal,
  ): Promise<CreatedKey>;
  /** Newest first; never the secret or its hash. */
  list(accountId: string): Promise<KeyView[]>;
  /** Idempotent: revoking a revoked key succeeds (and publishes the invalidation again). */
  revoke(keyId: string, actor: Principal): Promise<void>;
  rotate(keyId: string, input: { graceSeconds?: number | undefined }, actor: Principal): Promise<RotatedKey>;
  lookup: KeyLookup;
  /** Feed every message of the invalidation channel here; those for other capabilities are ignored. */
  handleInvalidation(message: string): void;
  /** Tells every instance to drop the account's cached keys (after a status or tier change). */
  invalidateAccount(accountId: string): Promise<void>;
  /** Drops every cached lookup, e.g. after the subscriber reconnected and may have missed messages. */
  clear(): void;
  /** Waits for the subscription, when the service owns one. */
  ready(): Promise<void>;
  /**
   * Detaches from the subscriber (the connection itself belongs to the caller) and writes the
   * pending lastUsedAt times; await it before closing the database.
   */
  close(): Promise<void>;
  /** Writes the pending lastUsedAt times now rather than at the next 30 s tick. */
  flushLastUsed(): Promise<void>;
}

export interface KeyDeps {
  db: Db;
  audit: AuditLog;
  /** Publishes invalidations; any connection not in subscriber mode. */
  redis: Pick<Redis, 'publish'>;
  /** When given, the service subscribes itself; otherwise feed it through handleInvalidation. */
  subscriber?: Pick<Redis, 'subscribe' | 'on' | 'off'>;
  channel: string;
  policy: () => Policy;
  pepper: string;
  logger?: Logger;
  now?: () => number;
  /** lastUsedAt times per statement; tests set it low to see a flush take several. */
  lastUsedChunk?: number;
}

const KEY_PROBLEMS = {
  verification_required: { status: 403, title: 'The account must finish verification first' },
  account_suspended: { status: 403, title: 'The account is suspended' },
  account_restricted: { status: 403, title: 'The account may not get new keys now' },
  key_limit_reached: { status: 409, title: 'The account holds as many live keys as its tier allows' },
  key_not_active: { status: 409, title: 'Only an active key can be rotated' },
  key_already_rotated: { status: 409, title: 'The key has been rotated already' },
} as const;
export type KeyProblemCode = keyof typeof KEY_PROBLEMS;

const keyProblem = (code: KeyProblemCode, detail: string) =>
  new ProblemError({ code, ...KEY_PROBLEMS[code] }, { detail, reasons: [code] });

const invalidation = z.discriminatedUnion('type', [
  z.object({ type: z.literal('key'), keyId: z.string().optional(), hash: z.string().optional() }),
  z.object({ type: z.literal('account'), accountId: z.string() }),
]);
type Invalidation = z.infer<typeof invalidation>;

type Tx = Prisma.TransactionClient;

type KeyRow = {
  id: string;
  accountId: string;
  name: string | null;
  prefix: string;
  status: 'active' | 'revoked';
  expiresAt: Date | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  rotatedTo: string | null;
};

const stateOf = (row: Pick<KeyRow, 'status' | 'expiresAt'>, t: number): KeyState => {
  if (row.status === 'revoked') return 'revoked';
  return row.expiresAt && row.expiresAt.getTime() <= t ? 'expired' : 'active';
};

const view = (row: KeyRow, t: number): KeyView => ({
  id: row.id,
  accountId: row.accountId,
  name: row.name,
  prefix: row.prefix,
  status: stateOf(row, t),
  expiresAt: row.expiresAt?.toISOString() ?? null,
  createdAt: row.createdAt.toISOString(),
  lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  revokedAt: row.revokedAt?.toISOString() ?? null,
  rotatedTo: row.rotatedTo,
});

const created = (row: KeyRow, key: string): CreatedKey => ({
  id: row.id,
  key,
  prefix: row.prefix,
  name: row.name,
  status: 'active',
  expiresAt: row.expiresAt?.toISOString() ?? null,
  createdAt: row.createdAt.toISOString(),
});

/** Live keys count against maxKeys; keys in their rotation grace are represented by their successor. */
const liveKeys = (accountId: string, t: number): Prisma.ApiKeyWhereInput => ({
  accountId,
  status: 'active',
  rotatedTo: null,
  OR: [{ expiresAt: null }, { expiresAt: { gt: new Date(t) } }],
});

function refuseUnlessActive(status: AccountStatus): void {
  switch (status) {
    case 'active':
      return;
    case 'pending':
    case 'challenged':
      throw keyProblem('verification_required', 'The account has verification steps left');
    case 'suspended':
      throw keyProblem('account_suspended', 'A suspended account gets no keys');
    case 'throttled':
      throw keyProblem('account_restricted', 'A throttled account keeps its keys but gets no new ones');
  }
}

const accountNotFound = (id: string) => new ProblemError('not_found', { detail: `No account ${id}` });
const keyNotFound = (id: string) => new ProblemError('not_found', { detail: `No key ${id}` });

/** Locks the account row for the rest of the transaction: every key write for it queues here. */
async function lockAccount(tx: Tx, accountId: string): Promise<{ status: AccountStatus; tier: string }> {
  const rows = await tx.$queryRaw<Array<{ status: AccountStatus; tier: string }>>`
    SELECT status::text AS status, tier FROM accounts WHERE id = ${accountId} FOR UPDATE`;
  const row = rows[0];
  if (!row) throw accountNotFound(accountId);
  return row;
}

interface Cached {
  record: KeyRecord;
  /** Fresh until then; stale (answered, refreshed in the background) until `staleUntil`. */
  until: number;
  staleUntil: number;
  /** No background refresh starts before this. */
  refreshAfter: number;
}

type KeyQueryRow = {
  hash: string;
  id: string;
  account_id: string;
  status: string;
  expires_at: Date | null;
  account_status: AccountStatus;
  tier: string;
  limits_override: unknown;
  cluster_id: string | null;
};

export function createKeyService(deps: KeyDeps): KeyService {
  const now = deps.now ?? Date.now;
  const cache = new Map<string, Cached>();
  const negative = new Map<string, number>();
  // Bumped by every invalidation: a load that started before it may have read what it retracts.
  let generation = 0;
  const inflight = new Map<string, { generation: number; promise: Promise<KeyRecord | null> }>();
  // Key id → latest use (epoch ms) not yet written.
  let lastUsed = new Map<string, number>();
  let warnedAt = Number.NEGATIVE_INFINITY;

  const warn = (err: unknown, msg: string) => {
    const t = now();
    if (t - warnedAt < WARN_EVERY_MS) return;
    warnedAt = t;
    deps.logger?.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, msg);
  };

  const maxKeysFor = (tier: string): number => {
    const { tiers, defaultTier } = deps.policy().enforcement;
    const own = Object.hasOwn(tiers, tier) ? tiers[tier] : undefined;
    const fallback = Object.hasOwn(tiers, defaultTier) ? tiers[defaultTier] : undefined;
    return (own ?? fallback)?.maxKeys ?? 0;
  };

  const remember = (hash: string, record: KeyRecord | null, t: number) => {
    if (record === null) {
      if (negative.size >= MAX_NEGATIVE) negative.delete(negative.keys().next().value as string);
      negative.set(hash, t + NEGATIVE_TTL_MS);
      return;
    }
    cache.delete(hash);
    // Oldest first out: Map keeps insertion order, and a refreshed entry is re-inserted.
    if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
    cache.set(hash, { record, until: t + CACHE_TTL_MS, staleUntil: t + STALE_LIMIT_MS, refreshAfter: 0 });
  };

  const dropWhere = (matches: (record: KeyRecord) => boolean) => {
    for (const [hash, entry] of cache) if (matches(entry.record)) cache.delete(hash);
  };

  const apply = (message: Invalidation) => {
    generation++;
    if (message.type === 'key') {
      if (message.hash) {
        cache.delete(message.hash);
        negative.delete(message.hash);
      }
      const keyId = message.keyId;
      if (keyId) dropWhere((r) => r.keyId === keyId);
    } else {
      dropWhere((r) => r.accountId === message.accountId);
    }
  };

  const publish = (message: Invalidation) => deps.redis.publish(deps.channel, JSON.stringify(message));

  const touch = (keyId: string, t: number) => {
    const seen = lastUsed.get(keyId);
    if (seen === undefined || seen < t) lastUsed.set(keyId, t);
    // A flood of distinct keys flushes early instead of growing without bound.
    if (lastUsed.size >= MAX_CACHED) void flushLastUsed();
  };

  // Each statement carries its ids and times as two comma-joined strings split in SQL, and at most
  // `lastUsedChunk` of them: as arrays, the driver builds and escapes an array literal element by
  // element on the event loop. Measured against PostgreSQL on a 2-core machine, the longest
  // event-loop block of one flush: 1,000 keys 8-11 ms as arrays, 1.4-1.9 ms joined; 10,000 keys
  // 34-77 ms against 10-11 ms. Every decision in flight waits out such a block.
  const chunk = deps.lastUsedChunk ?? LAST_USED_CHUNK;
  const flushLastUsed = async (): Promise<void> => {
    if (lastUsed.size === 0) return;
    const batch = [...lastUsed];
    lastUsed = new Map();
    for (let i = 0; i < batch.length; i += chunk) {
      const part = batch.slice(i, i + chunk);
      // Key ids are ours (a prefix and base-32 characters), so a comma cannot occur in one.
      const ids = part.map(([id]) => id).join(',');
      const times = part.map(([, t]) => t).join(',');
      try {
        // Only forward, and only by LAST_USED_STEP_MS or more: another instance or the usage worker
        // may have written a later use already, and an update that moves the time by seconds
        // would still write a new row version.
        await deps.db.$executeRaw`
          UPDATE api_keys
          SET last_used_at = v.at
          FROM (SELECT id, timestamptz 'epoch' + t * interval '1 millisecond' AS at
                FROM unnest(string_to_array(${ids}, ','), string_to_array(${times}, ',')::bigint[]) AS u(id, t)) AS v
          WHERE api_keys.id = v.id
            AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.at - ${LAST_USED_STEP_MS}::int * interval '1 millisecond')`;
      } catch (err) {
        // Bookkeeping only: the uses are dropped rather than retried, so an outage cannot pile them up.
        warn(err, 'keys: could not record lastUsedAt');
        return;
      }
    }
  };
  const flushTimer = setInterval(() => void flushLastUsed(), LAST_USED_FLUSH_MS);
  flushTimer.unref();

  // The hashes go as one comma-joined string (hex digests hold no comma): as an array parameter
  // the driver escapes them one by one on the event loop, 3-5 ms for a batch of 500 against
  // ~1.3 ms joined (see flushLastUsed).
  /** The records of these hashes as PostgreSQL has them (null: unknown, revoked or expired). */
  const fetchRecords = async (hashes: readonly string[]): Promise<Map<string, KeyRecord | null>> => {
    const rows = await deps.db.$queryRaw<KeyQueryRow[]>`
      SELECT k.hash, k.id, k.account_id, k.status::text AS status, k.expires_at,
             a.status::text AS account_status, a.tier, a.limits_override, m.cluster_id
      FROM api_keys k
      JOIN accounts a ON a.id = k.account_id
      LEFT JOIN cluster_members m ON m.account_id = k.account_id
      WHERE k.hash = ANY(string_to_array(${hashes.join(',')}, ','))`;
    const records = new Map<string, KeyRecord | null>(hashes.map((h) => [h, null]));
    for (const row of rows) {
      if (row.status !== 'active') continue;
      records.set(row.hash, {
        keyId: row.id,
        accountId: row.account_id,
        expiresAt: row.expires_at?.getTime() ?? null,
        account: {
          status: row.account_status,
          tier: row.tier,
          limitsOverride: row.limits_override,
          clusterId: row.cluster_id,
        },
      });
    }
    return records;
  };

  /** Stores what a load found, unless an invalidation came in while it ran. */
  const settle = (hash: string, record: KeyRecord | null, gen: number) => {
    if (gen !== generation) return;
    // A refresh that finds the key gone must not leave the stale positive entry answering.
    if (record === null) cache.delete(hash);
    remember(hash, record, now());
  };

  const load = (hash: string): Promise<KeyRecord | null> => {
    const pending = inflight.get(hash);
    if (pending && pending.generation === generation) return pending.promise;
    const gen = generation;
    const promise = fetchRecords([hash])
      .then((records) => {
        const record = records.get(hash) ?? null;
        settle(hash, record, gen);
        return record;
      })
      .finally(() => {
        if (inflight.get(hash)?.promise === promise) inflight.delete(hash);
      });
    inflight.set(hash, { generation: gen, promise });
    return promise;
  };

  // Background refreshes are gathered for a moment and loaded together: keys cached together go
  // stale together, and a query each would stall every request behind a burst of them.
  const toRefresh = new Set<string>();
  let refreshTimer: NodeJS.Timeout | null = null;
  const flushRefreshes = async () => {
    refreshTimer = null;
    const hashes = [...toRefresh];
    toRefresh.clear();
    for (let i = 0; i < hashes.length; i += REFRESH_BATCH) {
      const chunk = hashes.slice(i, i + REFRESH_BATCH);
      const gen = generation;
      try {
        const records = await fetchRecords(chunk);
        for (const hash of chunk) settle(hash, records.get(hash) ?? null, gen);
      } catch (err) {
        // The stale records keep answering until their retry time or the stale limit.
        warn(err, 'keys: could not refresh cached keys');
      }
    }
  };
  const refresh = (hash: string) => {
    toRefresh.add(hash);
    if (refreshTimer === null) {
      refreshTimer = setTimeout(() => void flushRefreshes(), REFRESH_GATHER_MS);
      refreshTimer.unref();
    }
  };

  const handleInvalidation = (message: string) => {
    let raw: unknown;
    try {
      raw = JSON.parse(message);
    } catch {
      return;
    }
    const parsed = invalidation.safeParse(raw);
    if (parsed.success) apply(parsed.data);
  };

  const clear = () => {
    generation++;
    cache.clear();
    negative.clear();
  };

  const onMessage = (channel: string, message: string) => {
    if (channel === deps.channel) handleInvalidation(message);
  };
  let subscribed: Promise<void> = Promise.resolve();
  if (deps.subscriber) {
    deps.subscriber.on('message', onMessage);
    // Messages published while the subscriber was reconnecting are lost, so a reconnect drops all.
    deps.subscriber.on('ready', clear);
    subscribed = deps.subscriber.subscribe(deps.channel).then(() => undefined);
    subscribed.catch((err: unknown) => warn(err, 'keys: could not subscribe to invalidations'));
  }

  return {
    async create(accountId, input, actor) {
      const t = now();
      if (input.expiresAt && input.expiresAt.getTime() <= t) {
        throw new ProblemError('validation_failed', {
          detail: 'Invalid body: expiresAt',
          errors: [{ field: 'expiresAt', message: 'must be in the future' }],
        });
      }
      const key = newSecret(KEY_PREFIX);
      const row = await deps.db.$transaction(async (tx) => {
        const account = await lockAccount(tx, accountId);
        refuseUnlessActive(account.status);
        const max = maxKeysFor(account.tier);
        const live = await tx.apiKey.count({ where: liveKeys(accountId, t) });
        if (live >= max) {
          throw keyProblem(
            'key_limit_reached',
            `The account's tier allows ${max} live keys; revoke one to make room`,
          );
        }
        const row = await tx.apiKey.create({
          data: {
            id: newId('key', t),
            accountId,
            name: input.name ?? null,
            hash: hmacHex(deps.pepper, key),
            prefix: key.slice(0, DISPLAY_PREFIX_LENGTH),
            expiresAt: input.expiresAt ?? null,
          },
        });
        await deps.audit.record(
          {
            actor: actor.tokenId,
            action: 'key.created',
            subjectType: 'key',
            subjectId: row.id,
            data: { accountId, name: row.name, expiresAt: row.expiresAt?.toISOString() ?? null },
          },
          tx,
        );
        return row;
      }, TX_OPTIONS);
      return created(row, key);
    },

    async list(accountId) {
      const [account, rows] = await Promise.all([
        deps.db.account.findUnique({ where: { id: accountId }, select: { id: true } }),
        deps.db.apiKey.findMany({
          where: { accountId },
          omit: { hash: true },
          orderBy: { createdAt: 'desc' },
          take: 1000,
        }),
      ]);
      if (!account) throw accountNotFound(accountId);
      const t = now();
      return rows.map((row) => view(row, t));
    },

    async revoke(keyId, actor) {
      const key = await deps.db.apiKey.findUnique({
        where: { id: keyId },
        select: { hash: true, accountId: true, status: true },
      });
      if (!key) throw keyNotFound(keyId);
      if (key.status === 'active') {
        await deps.db.$transaction(async (tx) => {
          const { count } = await tx.apiKey.updateMany({
            where: { id: keyId, status: 'active' },
            data: { status: 'revoked', revokedAt: new Date(now()) },
          });
          if (count === 0) return;
          await deps.audit.record(
            {
              actor: actor.tokenId,
              action: 'key.revoked',
              subjectType: 'key',
              subjectId: keyId,
              data: { accountId: key.accountId },
            },
            tx,
          );
        });
      }
      const message: Invalidation = { type: 'key', keyId, hash: key.hash };
      apply(message);
      // A failure here surfaces (503) so the caller retries; a retry publishes again.
      await publish(message);
    },

    async rotate(keyId, input, actor) {
      const graceMs = Math.min(Math.max(input.graceSeconds ?? 0, 0), MAX_GRACE_SECONDS) * 1000;
      const t = now();
      const key = newSecret(KEY_PREFIX);
      const owner = await deps.db.apiKey.findUnique({ where: { id: keyId }, select: { accountId: true } });
      if (!owner) throw keyNotFound(keyId);
      const result = await deps.db.$transaction(async (tx) => {
        const account = await lockAccount(tx, owner.accountId);
        refuseUnlessActive(account.status);
        const old = await tx.apiKey.findUnique({ where: { id: keyId } });
        if (!old) throw keyNotFound(keyId);
        if (stateOf(old, t) !== 'active') {
          throw keyProblem('key_not_active', `Key ${keyId} is ${stateOf(old, t)}`);
        }
        if (old.rotatedTo) {
          throw keyProblem('key_already_rotated', `Key ${keyId} was replaced by ${old.rotatedTo}`);
        }
        const successor = await tx.apiKey.create({
          data: {
            id: newId('key', t),
            accountId: old.accountId,
            name: old.name,
            hash: hmacHex(deps.pepper, key),
            prefix: key.slice(0, DISPLAY_PREFIX_LENGTH),
            expiresAt: old.expiresAt,
          },
        });
        const endsAt = new Date(Math.min(old.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY, t + graceMs));
        await tx.apiKey.update({
          where: { id: keyId },
          data: {
            rotatedTo: successor.id,
            expiresAt: endsAt,
            ...(graceMs === 0 ? { status: 'revoked' as const, revokedAt: new Date(t) } : {}),
          },
        });
        await deps.audit.record(
          {
            actor: actor.tokenId,
            action: 'key.rotated',
            subjectType: 'key',
            subjectId: keyId,
            data: { accountId: old.accountId, successor: successor.id, until: endsAt.toISOString() },
          },
          tx,
        );
        return { successor, oldHash: old.hash, endsAt };
      }, TX_OPTIONS);
      const message: Invalidation = { type: 'key', keyId, hash: result.oldHash };
      apply(message);
      try {
        await publish(message);
      } catch (err) {
        // The new secret exists only in this answer, so it must reach the caller; other instances
        // stop trusting their cached copy of the old key within the cache TTL.
        warn(err, 'keys: could not publish the invalidation of a rotated key');
      }
      return {
        ...created(result.successor, key),
        previous: { id: keyId, expiresAt: result.endsAt.toISOString() },
      };
    },

    async lookup(secret) {
      if (!KEY_FORMAT.test(secret)) return null;
      const hash = hmacHex(deps.pepper, secret);
      const t = now();
      let record: KeyRecord | null;
      const hit = cache.get(hash);
      if (hit && hit.staleUntil > t) {
        record = hit.record;
        if (hit.until <= t && hit.refreshAfter <= t) {
          hit.refreshAfter = t + REFRESH_RETRY_MS;
          // The stale record answers now; a failed refresh keeps it until the retry or the limit.
          refresh(hash);
        }
      } else {
        if (hit) cache.delete(hash);
        const deadUntil = negative.get(hash);
        if (deadUntil !== undefined && deadUntil > t) return null;
        if (deadUntil !== undefined) negative.delete(hash);
        record = await load(hash);
      }
      if (!record || (record.expiresAt !== null && record.expiresAt <= t)) return null;
      touch(record.keyId, t);
      return record;
    },

    handleInvalidation,

    async invalidateAccount(accountId) {
      const message: Invalidation = { type: 'account', accountId };
      apply(message);
      await publish(message);
    },

    clear,

    ready: () => subscribed,

    close() {
      deps.subscriber?.off('message', onMessage);
      deps.subscriber?.off('ready', clear);
      clearInterval(flushTimer);
      if (refreshTimer !== null) clearTimeout(refreshTimer);
      refreshTimer = null;
      toRefresh.clear();
      return flushLastUsed();
    },

    flushLastUsed,
  };
}
