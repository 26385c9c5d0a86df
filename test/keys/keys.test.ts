import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/client.ts';
import type { AccountStatus } from '../../src/generated/prisma/enums.ts';
import { createKeyService, type KeyService } from '../../src/keys/service.ts';
import { newId } from '../../src/lib/ids.ts';
import { hmacHex, sha256Hex } from '../../src/lib/secrets.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, type TestResponse } from '../support/harness.ts';

// API keys through the HTTP API, and the lookup enforcement uses on every gateway call. Accounts are
// made directly in PostgreSQL in the state each test needs; signup has its own tests.

interface NewKey {
  id: string;
  key: string;
  prefix: string;
  name: string | null;
  status: string;
  expiresAt: string | null;
  createdAt: string;
}
interface Rotated extends NewKey {
  previous: { id: string; expiresAt: string };
}
interface KeyBody {
  id: string;
  accountId: string;
  name: string | null;
  prefix: string;
  status: 'active' | 'revoked' | 'expired';
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  rotatedTo: string | null;
}
interface ProblemBody {
  code: string;
  reasons?: string[];
  errors?: Array<{ field: string; message: string }>;
}

let app: TestApp;
let token: string;
let pepper: string;
const services: KeyService[] = [];

beforeAll(async () => {
  app = await startTestApp();
  token = await app.tokenWith('keys');
  pepper = app.ctx.config.GATEHOUSE_PEPPER ?? '';
});
afterAll(async () => {
  for (const s of services) s.close();
  await app.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`not true within ${withinMs} ms`);
    await sleep(10);
  }
}

async function call(method: string, path: string, body?: unknown): Promise<TestResponse> {
  const res = await app.request(method, path, { token, ...(body !== undefined ? { body } : {}) });
  expectContract(res, method, path);
  return res;
}

async function account(status: AccountStatus = 'active', tier = 'free'): Promise<string> {
  const id = newId('acc');
  const tag = randomBytes(6).toString('hex');
  await app.ctx.db.account.create({
    data: {
      id,
      email: `k.${tag}@example.com`,
      emailCanonicalHash: sha256Hex(`keys-test:${tag}`),
      emailDomain: 'example.com',
      status,
      tier,
    },
  });
  return id;
}

async function createKey(accountId: string, body: Record<string, unknown> = {}): Promise<NewKey> {
  const res = await call('POST', `/v1/accounts/${accountId}/keys`, body);
  expect(res.status, res.text).toBe(201);
  return res.body as NewKey;
}

async function listKeys(accountId: string): Promise<KeyBody[]> {
  const res = await call('GET', `/v1/accounts/${accountId}/keys`);
  expect(res.status, res.text).toBe(200);
  return (res.body as { keys: KeyBody[] }).keys;
}

const codeOf = (res: TestResponse) => (res.body as ProblemBody).code;

/** A second service on the same stores, with a clock the test moves. */
function withClock(clock: () => number, db: Db = app.ctx.db, lastUsedChunk?: number): KeyService {
  const service = createKeyService({
    db,
    audit: app.ctx.audit,
    redis: app.ctx.redis,
    channel: app.ctx.keys.invalidationChannel(),
    policy: () => app.ctx.policy,
    pepper,
    now: clock,
    lastUsedChunk,
  });
  services.push(service);
  return service;
}

describe('issuing keys', () => {
  it('shows the secret once and stores only its HMAC', async () => {
    const accountId = await account();
    const created = await createKey(accountId, { name: 'production' });
    expect(created.key).toMatch(/^gh_live_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({
      id: expect.stringMatching(/^key_/),
      prefix: created.key.slice(0, 12),
      name: 'production',
      status: 'active',
      expiresAt: null,
    });

    const row = await app.ctx.db.apiKey.findUniqueOrThrow({ where: { id: created.id } });
    expect(row.hash).toBe(hmacHex(pepper, created.key));
    expect(JSON.stringify(row)).not.toContain(created.key.slice(12));

    const listed = await call('GET', `/v1/accounts/${accountId}/keys`);
    expect(listed.text).not.toContain(created.key.slice(12));
    expect(listed.text).not.toContain(row.hash);
    expect((listed.body as { keys: KeyBody[] }).keys).toEqual([
      expect.objectContaining({
        id: created.id,
        accountId,
        status: 'active',
        prefix: created.prefix,
        lastUsedAt: null,
        revokedAt: null,
        rotatedTo: null,
      }),
    ]);

    const audit = await app.ctx.db.auditEvent.findMany({ where: { subjectId: created.id } });
    expect(audit.map((e) => e.action)).toEqual(['key.created']);
    expect(JSON.stringify(audit)).not.toContain(created.key.slice(12));
  });

  it('resolves a key to its account, tier and cluster, and records when it was last used', async () => {
    const accountId = await account('active', 'pro');
    const clusterId = newId('clu');
    await app.ctx.db.cluster.create({ data: { id: clusterId, evidence: {} } });
    await app.ctx.db.clusterMember.create({ data: { accountId, clusterId } });
    await app.ctx.db.account.update({ where: { id: accountId }, data: { limitsOverride: { key: [] } } });
    const { id, key } = await createKey(accountId);

    expect(await app.ctx.apiKeys.lookup(key)).toEqual({
      keyId: id,
      accountId,
      expiresAt: null,
      account: { status: 'active', tier: 'pro', limitsOverride: { key: [] }, clusterId },
    });
    // Uses are written in batches every 30 s; the test asks for the batch now.
    await app.ctx.apiKeys.flushLastUsed();
    await eventually(async () => (await listKeys(accountId))[0]?.lastUsedAt !== null, 2_000);
  });

  it('accepts a name and an expiry, and refuses an expiry in the past', async () => {
    const accountId = await account();
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const created = await createKey(accountId, { name: 'ci', expiresAt });
    expect(created.expiresAt).toBe(expiresAt);

    const past = await call('POST', `/v1/accounts/${accountId}/keys`, {
      expiresAt: new Date(Date.now() - 1_000).toISOString(),
    });
    expect(past.status).toBe(400);
    expect((past.body as ProblemBody).errors).toEqual([
      { field: 'expiresAt', message: 'must be in the future' },
    ]);
  });

  it('refuses unknown fields, bad ids and unknown accounts', async () => {
    const accountId = await account();
    const extra = await call('POST', `/v1/accounts/${accountId}/keys`, { name: 'x', scopes: ['all'] });
    expect(extra.status).toBe(400);
    expect((extra.body as ProblemBody).errors).toEqual([
      { field: 'scopes', message: 'is not a known field' },
    ]);
    expect((await call('POST', `/v1/accounts/${accountId}/keys`, { name: 'n'.repeat(101) })).status).toBe(
      400,
    );
    expect((await call('POST', '/v1/accounts/12/keys', {})).status).toBe(400);
    expect((await call('POST', `/v1/accounts/${newId('acc')}/keys`, {})).status).toBe(404);
    expect((await call('GET', `/v1/accounts/${newId('acc')}/keys`)).status).toBe(404);
  });

  it('refuses pending, challenged, suspended and throttled accounts, each with its code', async () => {
    const expected: Array<[AccountStatus, string]> = [
      ['pending', 'verification_required'],
      ['challenged', 'verification_required'],
      ['suspended', 'account_suspended'],
      ['throttled', 'account_restricted'],
    ];
    for (const [status, code] of expected) {
      const res = await call('POST', `/v1/accounts/${await account(status)}/keys`, {});
      expect(res.status, status).toBe(403);
      expect(res.body, status).toMatchObject({ code, reasons: [code] });
    }
  });

  it('lets a throttled account keep using the keys it holds', async () => {
    const accountId = await account();
    const { key } = await createKey(accountId);
    await app.ctx.db.account.update({ where: { id: accountId }, data: { status: 'throttled' } });
    await app.ctx.apiKeys.invalidateAccount(accountId);
    expect((await app.ctx.apiKeys.lookup(key))?.account.status).toBe('throttled');
  });
});

describe('the live-key limit', () => {
  it('allows the free tier two live keys; revoked and expired keys make room', async () => {
    const accountId = await account();
    const first = await createKey(accountId);
    const second = await createKey(accountId);
    const third = await call('POST', `/v1/accounts/${accountId}/keys`, {});
    expect(third.status).toBe(409);
    expect(third.body).toMatchObject({ code: 'key_limit_reached', reasons: ['key_limit_reached'] });

    expect((await call('DELETE', `/v1/keys/${first.id}`)).status).toBe(204);
    await createKey(accountId);
    await app.ctx.db.apiKey.update({
      where: { id: second.id },
      data: { expiresAt: new Date(Date.now() - 1_000) },
    });
    await createKey(accountId);
    expect((await call('POST', `/v1/accounts/${accountId}/keys`, {})).status).toBe(409);
  });

  it('lets exactly two of ten concurrent creates through', async () => {
    const accountId = await account();
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        app.request('POST', `/v1/accounts/${accountId}/keys`, { token, body: {} }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 201, 409, 409, 409, 409, 409, 409, 409, 409]);
    expect(await app.ctx.db.apiKey.count({ where: { accountId } })).toBe(2);
  });

  it('uses the tier of the account, and the default tier for a tier the policy does not list', async () => {
    const pro = await account('active', 'pro');
    for (let i = 0; i < 3; i++) await createKey(pro);
    const unknown = await account('active', 'legacy-gold');
    await createKey(unknown);
    await createKey(unknown);
    expect(codeOf(await call('POST', `/v1/accounts/${unknown}/keys`, {}))).toBe('key_limit_reached');
  });
});

describe('revoking keys', () => {
  it('stops a cached key at once, and answers 204 again for a revoked key', async () => {
    const accountId = await account();
    const { id, key } = await createKey(accountId);
    expect(await app.ctx.apiKeys.lookup(key)).not.toBeNull();

    expect((await call('DELETE', `/v1/keys/${id}`)).status).toBe(204);
    expect(await app.ctx.apiKeys.lookup(key)).toBeNull();
    expect((await call('DELETE', `/v1/keys/${id}`)).status).toBe(204);

    const [listed] = await listKeys(accountId);
    expect(listed).toMatchObject({ id, status: 'revoked', revokedAt: expect.any(String) });
    const audit = await app.ctx.db.auditEvent.findMany({ where: { subjectId: id, action: 'key.revoked' } });
    expect(audit).toHaveLength(1);
  });

  it('answers 404 for an unknown key and 400 for a malformed id', async () => {
    expect((await call('DELETE', `/v1/keys/${newId('key')}`)).status).toBe(404);
    expect((await call('DELETE', '/v1/keys/acc_0000000000000000000000')).status).toBe(400);
  });
});

describe('rotating keys', () => {
  it('keeps the old key working through the grace, the new one after it', async () => {
    const accountId = await account();
    const old = await createKey(accountId, { name: 'backend' });
    const before = Date.now();
    const res = await call('POST', `/v1/keys/${old.id}/rotate`, { graceSeconds: 3600 });
    expect(res.status, res.text).toBe(201);
    const rotated = res.body as Rotated;
    expect(rotated).toMatchObject({ name: 'backend', status: 'active', previous: { id: old.id } });
    expect(rotated.key).not.toBe(old.key);
    const graceEnds = Date.parse(rotated.previous.expiresAt);
    expect(graceEnds).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(graceEnds).toBeLessThanOrEqual(Date.now() + 3_600_000);

    expect((await app.ctx.apiKeys.lookup(old.key))?.keyId).toBe(old.id);
    expect((await app.ctx.apiKeys.lookup(rotated.key))?.keyId).toBe(rotated.id);
    const listed = await listKeys(accountId);
    expect(listed.find((k) => k.id === old.id)).toMatchObject({
      status: 'active',
      rotatedTo: rotated.id,
      expiresAt: rotated.previous.expiresAt,
    });

    const later = withClock(() => graceEnds + 1);
    expect(await later.lookup(old.key)).toBeNull();
    expect((await later.lookup(rotated.key))?.keyId).toBe(rotated.id);
  });

  it('checks the expiry of a cached key on every lookup', async () => {
    const accountId = await account();
    const old = await createKey(accountId);
    const rotated = (await call('POST', `/v1/keys/${old.id}/rotate`, { graceSeconds: 10 })).body as Rotated;
    let clock = Date.now();
    const service = withClock(() => clock);
    expect(await service.lookup(old.key)).not.toBeNull();
    // Well within the cache lifetime, but past the grace.
    clock = Date.parse(rotated.previous.expiresAt) + 1;
    expect(await service.lookup(old.key)).toBeNull();
    expect(await service.lookup(rotated.key)).not.toBeNull();
  });

  it('revokes the old key at once without a grace', async () => {
    const accountId = await account();
    const old = await createKey(accountId);
    expect(await app.ctx.apiKeys.lookup(old.key)).not.toBeNull();
    const res = await call('POST', `/v1/keys/${old.id}/rotate`);
    expect(res.status, res.text).toBe(201);
    const rotated = res.body as Rotated;
    expect(Date.parse(rotated.previous.expiresAt)).toBeLessThanOrEqual(Date.now());

    expect(await app.ctx.apiKeys.lookup(old.key)).toBeNull();
    expect((await app.ctx.apiKeys.lookup(rotated.key))?.keyId).toBe(rotated.id);
    const listed = await listKeys(accountId);
    expect(listed.find((k) => k.id === old.id)).toMatchObject({ status: 'revoked', rotatedTo: rotated.id });
  });

  it('works at the limit: a key in its grace and its successor count as one', async () => {
    const accountId = await account();
    const first = await createKey(accountId);
    await createKey(accountId);
    const res = await call('POST', `/v1/keys/${first.id}/rotate`, { graceSeconds: 600 });
    expect(res.status, res.text).toBe(201);
    expect(codeOf(await call('POST', `/v1/accounts/${accountId}/keys`, {}))).toBe('key_limit_reached');
  });

  it('never extends a key: the successor inherits its expiry and the grace stops there', async () => {
    const accountId = await account();
    const expiresAt = new Date(Date.now() + 60_000).toISOString();
    const old = await createKey(accountId, { expiresAt });
    const rotated = (await call('POST', `/v1/keys/${old.id}/rotate`, { graceSeconds: 86_400 }))
      .body as Rotated;
    expect(rotated.expiresAt).toBe(expiresAt);
    expect(rotated.previous.expiresAt).toBe(expiresAt);
  });

  it('rotates only an active, not yet rotated key of an active account', async () => {
    const accountId = await account();
    const inGrace = await createKey(accountId);
    await call('POST', `/v1/keys/${inGrace.id}/rotate`, { graceSeconds: 60 });
    const again = await call('POST', `/v1/keys/${inGrace.id}/rotate`, {});
    expect(again.status).toBe(409);
    expect(codeOf(again)).toBe('key_already_rotated');

    const revoked = await createKey(accountId);
    await call('DELETE', `/v1/keys/${revoked.id}`);
    const dead = await call('POST', `/v1/keys/${revoked.id}/rotate`, {});
    expect(dead.status).toBe(409);
    expect(codeOf(dead)).toBe('key_not_active');

    const suspended = await account();
    const held = await createKey(suspended);
    await app.ctx.db.account.update({ where: { id: suspended }, data: { status: 'suspended' } });
    const refused = await call('POST', `/v1/keys/${held.id}/rotate`, {});
    expect(refused.status).toBe(403);
    expect(codeOf(refused)).toBe('account_suspended');

    expect((await call('POST', `/v1/keys/${newId('key')}/rotate`, {})).status).toBe(404);
    expect((await call('POST', `/v1/keys/${held.id}/rotate`, { graceSeconds: 604_801 })).status).toBe(400);
  });
});

describe('lookup', () => {
  it('answers null for expired keys, and lists them as expired', async () => {
    const accountId = await account();
    const { id, key } = await createKey(accountId, {
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
    await app.ctx.db.apiKey.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1_000) } });
    expect(await app.ctx.apiKeys.lookup(key)).toBeNull();
    expect((await listKeys(accountId))[0]?.status).toBe('expired');
  });

  it('answers null for malformed and unknown keys', async () => {
    expect(await app.ctx.apiKeys.lookup('')).toBeNull();
    expect(await app.ctx.apiKeys.lookup('gh_live_short')).toBeNull();
    expect(await app.ctx.apiKeys.lookup(`gh_live_${randomBytes(32).toString('base64url')}`)).toBeNull();
  });

  it('asks PostgreSQL once for a flood of the same unknown key, again after two seconds', async () => {
    let queries = 0;
    const db = {
      $queryRaw: async () => {
        queries++;
        await sleep(5);
        return [];
      },
    } as unknown as Db;
    let clock = Date.now();
    const service = withClock(() => clock, db);
    const bogus = `gh_live_${randomBytes(32).toString('base64url')}`;
    await Promise.all(Array.from({ length: 50 }, () => service.lookup(bogus)));
    for (let i = 0; i < 50; i++) await service.lookup(bogus);
    expect(queries).toBe(1);
    clock += 2_001;
    await service.lookup(bogus);
    expect(queries).toBe(2);
    expect(await service.lookup('not a key')).toBeNull();
    expect(queries).toBe(2);
  });

  it('serves a live key from memory for thirty seconds, then refreshes it in the background', async () => {
    const accountId = await account();
    const { key } = await createKey(accountId);
    let clock = Date.now();
    const service = withClock(() => clock);
    expect(await service.lookup(key)).not.toBeNull();
    // Without an invalidation message, a change in PostgreSQL is seen only when the entry goes stale.
    await app.ctx.db.account.update({ where: { id: accountId }, data: { tier: 'pro' } });
    clock += 29_000;
    expect((await service.lookup(key))?.account.tier).toBe('free');
    clock += 2_000;
    // Stale: answered from memory at once, while the refresh brings the change in.
    expect((await service.lookup(key))?.account.tier).toBe('free');
    await eventually(async () => (await service.lookup(key))?.account.tier === 'pro', 2_000);
  });

  it('refreshes a stale key with one query, and loads it on the request path past ten minutes', async () => {
    let queries = 0;
    let release: () => void = () => undefined;
    let gate = Promise.resolve();
    const row = {
      id: newId('key'),
      account_id: newId('acc'),
      status: 'active',
      expires_at: null,
      account_status: 'active',
      tier: 'free',
      limits_override: null,
      cluster_id: null,
    };
    // Answers any load, single or batched, with the one key's row.
    const db = {
      $queryRaw: async (_sql: TemplateStringsArray, hashes: string) => {
        queries++;
        await gate;
        // The hashes come as one comma-joined parameter.
        return hashes.split(',').map((hash) => ({ ...row, hash }));
      },
    } as unknown as Db;
    let clock = Date.now();
    const service = withClock(() => clock, db);
    const secret = `gh_live_${randomBytes(32).toString('base64url')}`;
    expect((await service.lookup(secret))?.keyId).toBe(row.id);
    expect(queries).toBe(1);

    gate = new Promise((resolve) => {
      release = resolve;
    });
    clock += 31_000;
    row.tier = 'pro';
    const stale = await Promise.all(Array.from({ length: 20 }, () => service.lookup(secret)));
    expect(stale.map((r) => r?.account.tier)).toEqual(Array(20).fill('free'));
    // The refresh leaves a moment later, gathered with any other key gone stale meanwhile.
    await eventually(async () => queries === 2, 1_000);
    release();
    await eventually(async () => (await service.lookup(secret))?.account.tier === 'pro', 1_000);
    expect(queries).toBe(2);

    // Unused for ten minutes: no longer trusted, the lookup waits for PostgreSQL.
    clock += 10 * 60_000 + 1;
    row.tier = 'enterprise';
    expect((await service.lookup(secret))?.account.tier).toBe('enterprise');
    expect(queries).toBe(3);
  });

  it('refreshes keys that went stale together with one query', async () => {
    const accounts = await Promise.all(Array.from({ length: 12 }, () => account()));
    const keys = await Promise.all(accounts.map((a) => createKey(a)));
    let queries = 0;
    // The real database, with every query counted.
    const counting = new Proxy(app.ctx.db, {
      get(target, prop, receiver) {
        if (prop !== '$queryRaw') return Reflect.get(target, prop, receiver);
        return (...args: unknown[]) => {
          queries++;
          return (target.$queryRaw as (...a: unknown[]) => unknown)(...args);
        };
      },
    }) as Db;
    let clock = Date.now();
    const service = withClock(() => clock, counting);
    for (const k of keys) expect(await service.lookup(k.key)).not.toBeNull();
    expect(queries).toBe(12);
    await app.ctx.db.account.updateMany({ where: { id: { in: accounts } }, data: { tier: 'pro' } });
    clock += 31_000;
    for (const k of keys) expect((await service.lookup(k.key))?.account.tier).toBe('free');
    await eventually(async () => (await service.lookup(keys[0]!.key))?.account.tier === 'pro', 2_000);
    for (const k of keys) expect((await service.lookup(k.key))?.account.tier).toBe('pro');
    expect(queries).toBe(13);
  });

  it('drops a stale key at once on invalidation, and when the refresh finds it gone', async () => {
    const accountId = await account();
    const { id, key } = await createKey(accountId);
    let clock = Date.now();
    const service = withClock(() => clock);
    expect(await service.lookup(key)).not.toBeNull();
    clock += 31_000;
    service.handleInvalidation(JSON.stringify({ type: 'key', keyId: id }));
    await app.ctx.db.apiKey.update({ where: { id }, data: { status: 'revoked' } });
    expect(await service.lookup(key)).toBeNull();

    const other = await createKey(accountId);
    expect(await service.lookup(other.key)).not.toBeNull();
    await app.ctx.db.apiKey.update({ where: { id: other.id }, data: { status: 'revoked' } });
    clock += 31_000;
    // A lost invalidation: the stale answer stands only until the background refresh lands.
    expect(await service.lookup(other.key)).not.toBeNull();
    await eventually(async () => (await service.lookup(other.key)) === null, 2_000);
  });

  it('writes lastUsedAt in one batch, off the request path, never moving it backwards', async () => {
    const accountId = await account('active', 'pro');
    const one = await createKey(accountId);
    const two = await createKey(accountId);
    let clock = Date.now();
    const service = withClock(() => clock);
    await service.lookup(one.key);
    await service.lookup(two.key);
    clock += 5_000;
    await service.lookup(one.key);
    expect((await listKeys(accountId)).map((k) => k.lastUsedAt)).toEqual([null, null]);

    await service.flushLastUsed();
    const used = new Map((await listKeys(accountId)).map((k) => [k.id, k.lastUsedAt]));
    expect(used.get(one.id)).toBe(new Date(clock).toISOString());
    expect(used.get(two.id)).toBe(new Date(clock - 5_000).toISOString());

    // Another instance with an older use must not overwrite the newer one.
    const behind = withClock(() => clock - 60_000);
    await behind.lookup(one.key);
    await behind.close();
    expect((await listKeys(accountId)).find((k) => k.id === one.id)?.lastUsedAt).toBe(
      new Date(clock).toISOString(),
    );
  });

  it('moves lastUsedAt only when it moves by a minute or more', async () => {
    const accountId = await account('active', 'pro');
    const { id, key } = await createKey(accountId);
    const start = Date.now() - 10 * 60_000;
    let clock = start;
    const service = withClock(() => clock);
    const used = async () => (await listKeys(accountId)).find((k) => k.id === id)?.lastUsedAt;
    const useAt = async (t: number) => {
      clock = t;
      await service.lookup(key);
      await service.flushLastUsed();
    };
    await useAt(start);
    expect(await used()).toBe(new Date(start).toISOString());
    await useAt(start + 60_000);
    expect(await used()).toBe(new Date(start).toISOString());
    await useAt(start + 60_001);
    expect(await used()).toBe(new Date(start + 60_001).toISOString());
    await service.close();
  });

  it('writes lastUsedAt over several statements when one flush holds more uses than a statement carries', async () => {
    const accountId = await account('active', 'pro');
    const keys = [await createKey(accountId), await createKey(accountId), await createKey(accountId)];
    const clock = Date.now() - 1_234;
    const service = withClock(() => clock, app.ctx.db, 2);
    for (const k of keys) await service.lookup(k.key);
    await service.flushLastUsed();
    const used = new Map((await listKeys(accountId)).map((k) => [k.id, k.lastUsedAt]));
    // To the millisecond: the times travel as epoch milliseconds.
    for (const k of keys) expect(used.get(k.id)).toBe(new Date(clock).toISOString());
  });

  it('ignores invalidation messages meant for other caches', async () => {
    const accountId = await account();
    const { key } = await createKey(accountId);
    const service = withClock(Date.now);
    expect(await service.lookup(key)).not.toBeNull();
    await app.ctx.db.account.update({ where: { id: accountId }, data: { tier: 'pro' } });
    for (const message of ['not json', '{"type":"rules"}', '{"type":"account"}', '{"type":"tokens"}']) {
      service.handleInvalidation(message);
    }
    expect((await service.lookup(key))?.account.tier).toBe('free');
    service.handleInvalidation(JSON.stringify({ type: 'account', accountId }));
    expect((await service.lookup(key))?.account.tier).toBe('pro');
  });
});
