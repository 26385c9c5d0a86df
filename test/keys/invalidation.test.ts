import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyService, type KeyService } from '../../src/keys/service.ts';
import { newId } from '../../src/lib/ids.ts';
import { sha256Hex } from '../../src/lib/secrets.ts';
import type { Principal } from '../../src/tokens/scopes.ts';
import { startTestApp, type TestApp, testPrefix } from '../support/harness.ts';

// A key revoked, rotated or whose account changed on one API instance must stop resolving from the
// caches of every other instance within a second, through the Redis invalidation channel.

const operator: Principal = { tokenId: 'admin', name: 'test operator', scopes: ['admin'] };

let app: TestApp;
const connections: Redis[] = [];
const services: KeyService[] = [];

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  for (const s of services) s.close();
  for (const c of connections) c.disconnect();
  await app.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`not true within ${withinMs} ms`);
    await sleep(10);
  }
  return Date.now() - started;
}

const connect = () => {
  const redis = new Redis(app.ctx.config.REDIS_URL);
  connections.push(redis);
  return redis;
};

/** Another API instance: its own key cache and Redis connections, on the same PostgreSQL. */
async function instance(channel: string, opts: { subscribe?: boolean } = {}): Promise<KeyService> {
  const service = createKeyService({
    db: app.ctx.db,
    audit: app.ctx.audit,
    redis: connect(),
    ...(opts.subscribe === false ? {} : { subscriber: connect() }),
    channel,
    policy: () => app.ctx.policy,
    pepper: app.ctx.config.GATEHOUSE_PEPPER ?? '',
  });
  services.push(service);
  await service.ready();
  return service;
}

async function activeAccount(): Promise<string> {
  const id = newId('acc');
  const tag = randomBytes(6).toString('hex');
  await app.ctx.db.account.create({
    data: {
      id,
      email: `i.${tag}@example.com`,
      emailCanonicalHash: sha256Hex(`invalidation-test:${tag}`),
      emailDomain: 'example.com',
      status: 'active',
    },
  });
  return id;
}

const channel = () => `${testPrefix()}:invalidate`;

describe('between key services', () => {
  it('drops a revoked key from every cache within a second', async () => {
    const ch = channel();
    const [a, b, deaf] = [await instance(ch), await instance(ch), await instance(ch, { subscribe: false })];
    const accountId = await activeAccount();
    const { id, key } = await a.create(accountId, {}, operator);
    expect((await b.lookup(key))?.keyId).toBe(id);
    expect((await deaf.lookup(key))?.keyId).toBe(id);

    await a.revoke(id, operator);
    expect(await a.lookup(key)).toBeNull();
    await eventually(async () => (await b.lookup(key)) === null, 1_000);
    // Without the message the cached entry would still answer: the channel is what stopped it.
    expect((await deaf.lookup(key))?.keyId).toBe(id);
  });

  it('drops every cached key of an account when the account is invalidated', async () => {
    const ch = channel();
    const [a, b] = [await instance(ch), await instance(ch)];
    const accountId = await activeAccount();
    const one = await a.create(accountId, {}, operator);
    const two = await a.create(accountId, {}, operator);
    expect((await b.lookup(one.key))?.account.status).toBe('active');
    expect((await b.lookup(two.key))?.account.status).toBe('active');

    await app.ctx.db.account.update({ where: { id: accountId }, data: { status: 'suspended' } });
    await a.invalidateAccount(accountId);
    await eventually(async () => (await b.lookup(one.key))?.account.status === 'suspended', 1_000);
    expect((await b.lookup(two.key))?.account.status).toBe('suspended');
  });

  it('drops the old key of a rotation without grace', async () => {
    const ch = channel();
    const [a, b] = [await instance(ch), await instance(ch)];
    const accountId = await activeAccount();
    const old = await a.create(accountId, {}, operator);
    expect(await b.lookup(old.key)).not.toBeNull();

    const rotated = await a.rotate(old.id, {}, operator);
    await eventually(async () => (await b.lookup(old.key)) === null, 1_000);
    expect((await b.lookup(rotated.key))?.keyId).toBe(rotated.id);
  });

  it('shortens the old key of a rotation with grace on every instance', async () => {
    const ch = channel();
    const [a, b] = [await instance(ch), await instance(ch)];
    const accountId = await activeAccount();
    const old = await a.create(accountId, {}, operator);
    expect((await b.lookup(old.key))?.expiresAt).toBeNull();

    const rotated = await a.rotate(old.id, { graceSeconds: 300 }, operator);
    const until = Date.parse(rotated.previous.expiresAt);
    await eventually(async () => (await b.lookup(old.key))?.expiresAt === until, 1_000);
  });
});

describe('between API instances', () => {
  let one: TestApp;
  let two: TestApp;
  beforeAll(async () => {
    const prefix = testPrefix();
    one = await startTestApp({ prefix });
    two = await startTestApp({ prefix });
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
  });

  it('stops a key revoked through one instance on the other within a second', async () => {
    const accountId = await activeAccount();
    const created = await one.request('POST', `/v1/accounts/${accountId}/keys`, { body: {} });
    expect(created.status, created.text).toBe(201);
    const { id, key } = created.body as { id: string; key: string };
    expect((await two.ctx.apiKeys.lookup(key))?.keyId).toBe(id);

    expect((await one.request('DELETE', `/v1/keys/${id}`)).status).toBe(204);
    await eventually(async () => (await two.ctx.apiKeys.lookup(key)) === null, 1_000);
  });

  it('shows the other instance an account status change within a second', async () => {
    const accountId = await activeAccount();
    const created = await one.request('POST', `/v1/accounts/${accountId}/keys`, { body: {} });
    const { key } = created.body as { key: string };
    expect((await two.ctx.apiKeys.lookup(key))?.account.status).toBe('active');

    await app.ctx.db.account.update({ where: { id: accountId }, data: { status: 'throttled' } });
    await one.ctx.apiKeys.invalidateAccount(accountId);
    await eventually(async () => (await two.ctx.apiKeys.lookup(key))?.account.status === 'throttled', 1_000);
  });
});
