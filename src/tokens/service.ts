import { timingSafeEqual } from 'node:crypto';
import type { AuditLog } from '../audit/audit.ts';
import type { Db } from '../db/client.ts';
import { newId } from '../lib/ids.ts';
import { newSecret, sha256, sha256Hex } from '../lib/secrets.ts';
import { type Principal, SCOPES, type Scope } from './scopes.ts';

const TOKEN_PREFIX = 'ght_';
const CACHE_TTL_MS = 5_000;
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
}): TokenService {
  const now = deps.now ?? Date.now;
  // Positive lookups are cached briefly so a busy gateway does not hit PostgreSQL on every call;
  // revocation clears the cache at once on this instance (and through pub/sub on the others).
  const cache = new Map<string, { principal: Principal | null; until: number }>();
  const lastUsedWritten = new Map<string, number>();
  // Digests have a fixed length, so timingSafeEqual on them reveals neither the token's length nor
  // where a guess differs; hashing the admin token once keeps that to one hash per request.
  const adminDigest = deps.adminToken ? sha256(deps.adminToken) : null;

  return {
    async authenticate(bearer) {
      const digest = sha256(bearer);
      if (adminDigest && timingSafeEqual(digest, adminDigest)) {
        return { tokenId: 'admin', name: 'bootstrap admin', scopes: ['admin'] };
      }
      if (!bearer.startsWith(TOKEN_PREFIX) || bearer.length > 200) return null;
      // Lookup by hash: the secret itself is never compared, so timing reveals nothing about it.
      const hash = digest.toString('hex');
      const hit = cache.get(hash);
      const t = now();
      if (hit && hit.until > t) return hit.principal;
      const row = await deps.db.serviceToken.findUnique({ where: { hash } });
      const principal: Principal | null =
        row && !row.revokedAt ? { tokenId: row.id, name: row.name, scopes: view(row).scopes } : null;
      if (cache.size > 10_000) cache.clear();
      cache.set(hash, { principal, until: t + CACHE_TTL_MS });
      if (row && principal && t - (lastUsedWritten.get(row.id) ?? 0) > LAST_USED_EVERY_MS) {
        lastUsedWritten.set(row.id, t);
        // Best effort: a failed bookkeeping write must not fail the caller's request.
        deps.db.serviceToken
          .update({ where: { id: row.id }, data: { lastUsedAt: new Date(t) } })
          .catch(() => undefined);
      }
      return principal;
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
      cache.clear();
      await deps.audit.record({
        actor: actor.tokenId,
        action: 'token.revoked',
        subjectType: 'token',
        subjectId: id,
        data: {},
      });
      return true;
    },

    invalidate() {
      cache.clear();
    },
  };
}
