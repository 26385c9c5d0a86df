import { timingSafeEqual } from 'node:crypto';
import type { AuditLog } from '../audit/audit.ts';
import type { Db } from '../db/client.ts';
import { newId } from '../lib/ids.ts';
import { newSecret, sha256Hex } from '../lib/secrets.ts';
import { type Principal, SCOPES, type Scope } from './scopes.ts';

const TOKEN_PREFIX = 'ght_';
const CACHE_TTL_MS = 5_000;
/** The invalidation-channel message that makes every instance drop its cached token lookups. */
export const TOKENS_INVALIDATION = JSON.stringify({ type: 'tokens' });
/** A cached lookup this close to expiring is refreshed in the background, once. */
const REFRESH_AHEAD_MS = 1_000;
const LAST_USED_EVERY_MS = 60_000;

export interface TokenView {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface TokenService {
  authenticate(bearer: string): Promise<Principal | null>;
  create(input: { name: string; scopes: Scope[] }, actor: Principal): Promise<TokenView & { token: string }>;
  list(): Promise<TokenView[]>;
  revoke(id: string, actor: Principal): Promise<boolean>;
  /** Drops cached lookups (called on revocation, locally and from other instances). */
  invalidate(): void;
}

type Row = {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
};

const view = (row: Row): TokenView => ({
  id: row.id,
  name: row.name,
  prefix: row.prefix,
  scopes: row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
  createdAt: row.createdAt.toISOString(),
  lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  revokedAt: row.revokedAt?.toISOString() ?? null,
});

export function createTokenService(deps: {
  db: Db;
  audit: AuditLog;
  adminToken?: string | undefined;
  now?: () => number;
  /** Tells the other instances to drop their cached lookups (the invalidation channel). */
  publish?: (message: string) => Promise<unknown>;
}): TokenService {
  const now = deps.now ?? Date.now;
  // Lookups are cached briefly so a busy gateway does not hit PostgreSQL on every call; revocation
  // clears the cache at once on this instance (and through pub/sub on the others). One lookup per
  // token is in flight at a time, and a cached one is refreshed shortly before it expires: with
  // thousands of calls a second, an expiry would otherwise send every call that arrives during the
  // query to PostgreSQL with its own query, and make them all wait.
  const cache = new Map<string, { principal: Principal | null; until: number }>();
  const loading = new Map<string, Promise<Principal | null>>();
  // Bumped by every invalidation: a lookup that began before it may hold what it retracts.
  let generation = 0;
  const lastUsedWritten = new Map<string, number>();
  // Digests have a fixed length, so timingSafeEqual on them reveals neither the token's length nor
  // where a guess differs; hashing the admin token once keeps that to one hash per request. The
  // digest is kept as its hex text, the form the lookups below use, so a request's digest is made
  // once and never converted back and forth.
  const adminDigest = deps.adminToken ? Buffer.from(sha256Hex(deps.adminToken), 'latin1') : null;

  const load = (hash: string): Promise<Principal | null> => {
    const inFlight = loading.get(hash);
    if (inFlight) return inFlight;
    const started = generation;
    const lookup = (async () => {
      const row = await deps.db.serviceToken.findUnique({ where: { hash } });
      const t = now();
      const principal: Principal | null =
        row && !row.revokedAt ? { tokenId: row.id, name: row.name, scopes: view(row).scopes } : null;
      if (generation === started) {
        if (cache.size > 10_000) cache.clear();
        cache.set(hash, { principal, until: t + CACHE_TTL_MS });
      }
      if (row && principal && t - (lastUsedWritten.get(row.id) ?? 0) > LAST_USED_EVERY_MS) {
        lastUsedWritten.set(row.id, t);
        // Best effort: a failed bookkeeping write must not fail the caller's request.
        deps.db.serviceToken
          .update({ where: { id: row.id }, data: { lastUsedAt: new Date(t) } })
          .catch(() => undefined);
      }
      return principal;
    })().finally(() => {
      if (loading.get(hash) === lookup) loading.delete(hash);
    });
    loading.set(hash, lookup);
    return lookup;
  };

  const invalidate = () => {
    generation++;
    cache.clear();
    // Callers from now on start a lookup of their own rather than join one that began before.
    loading.clear();
  };

  return {
    async authenticate(bearer) {
      const hash = sha256Hex(bearer);
      if (adminDigest && timingSafeEqual(Buffer.from(hash, 'latin1'), adminDigest)) {
        return { tokenId: 'admin', name: 'bootstrap admin', scopes: ['admin'] };
      }
      if (!bearer.startsWith(TOKEN_PREFIX) || bearer.length > 200) return null;
      // Lookup by hash: the secret itself is never compared, so timing reveals nothing about it.
      const hit = cache.get(hash);
      const t = now();
      if (hit && hit.until > t) {
        // A failed refresh leaves the entry to expire; the next caller after that looks it up.
        if (hit.until - t < REFRESH_AHEAD_MS) void load(hash).catch(() => undefined);
        return hit.principal;
      }
      return load(hash);
    },

    async create(input, actor) {
      const token = newSecret(TOKEN_PREFIX);
      const row = await deps.db.serviceToken.create({
        data: {
          id: newId('tok'),
          name: input.name,
          hash: sha256Hex(token),
          prefix: token.slice(0, TOKEN_PREFIX.length + 8),
          scopes: [...new Set(input.scopes)],
        },
      });
      await deps.audit.record({
        actor: actor.tokenId,
        action: 'token.created',
        subjectType: 'token',
        subjectId: row.id,
        data: { name: row.name, scopes: row.scopes },
      });
      return { ...view(row), token };
    },

    async list() {
      const rows = await deps.db.serviceToken.findMany({ orderBy: { createdAt: 'desc' }, take: 1000 });
      return rows.map(view);
    },

    async revoke(id, actor) {
      const result = await deps.db.serviceToken.updateMany({
        where: { id, revokedAt: null },
        data: { revokedAt: new Date(now()) },
      });
      if (result.count === 0) {
        return (await deps.db.serviceToken.count({ where: { id } })) > 0;
      }
      invalidate();
      // Best effort, like the cache it clears: another instance that misses it holds the token at
      // most CACHE_TTL_MS longer.
      await deps.publish?.(TOKENS_INVALIDATION).catch(() => undefined);
      await deps.audit.record({
        actor: actor.tokenId,
        action: 'token.revoked',
        subjectType: 'token',
        subjectId: id,
        data: {},
      });
      return true;
    },

    invalidate,
  };
}
