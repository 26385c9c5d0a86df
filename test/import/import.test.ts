import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/client.ts';
import { minhash } from '../../src/enforce/minhash.ts';
import { IMPORT_BODY_LIMITS } from '../../src/import/routes.ts';
import { createImportService } from '../../src/import/service.ts';
import { createDisposableChecker } from '../../src/signals/disposable.ts';
import { createHostingClassifier } from '../../src/signals/hosting.ts';
import { createKey } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, type TestResponse } from '../support/harness.ts';
import { personLocal } from '../support/people.ts';

// Backfill through HTTP against the real PostgreSQL: accounts with their signup context, then
// gateway logs, each at its own event time.

const ACCOUNTS = '/v1/import/accounts';
const EVENTS = '/v1/usage-events';
const HOUR = 3_600_000;
const H0 = Date.UTC(2025, 5, 3, 14, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

let app: TestApp;
let ingest: string;
beforeAll(async () => {
  app = await startTestApp();
  ingest = await app.tokenWith('ingest');
});
afterAll(async () => {
  await app.close();
});

interface Imported {
  imported: number;
  existing: number;
  accounts: Array<{ externalId: string; accountId: string; created: boolean }>;
}
interface Problem {
  code: string;
  reasons?: string[];
  errors: Array<{ field: string; message: string }>;
}

const tag = () => randomBytes(5).toString('hex');

/** A plausible existing user: unique external id and mailbox, a residential (Comcast) address. */
function user(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const t = tag();
  return {
    externalId: `u-${t}`,
    email: `${personLocal()}.${t}@example.org`,
    createdAt: iso(H0 - 30 * 24 * HOUR),
    ip: `73.12.${Number.parseInt(t.slice(0, 2), 16)}.10`,
    ...overrides,
  };
}

async function post(path: string, body: unknown, token = ingest): Promise<TestResponse> {
  const res = await app.request('POST', path, { token, body });
  expectContract(res, 'POST', path);
  return res;
}

async function importOne(overrides: Record<string, unknown> = {}): Promise<string> {
  const res = await post(ACCOUNTS, { accounts: [user(overrides)] });
  expect(res.status, res.text).toBe(200);
  return (res.body as Imported).accounts[0]!.accountId;
}

const rowsOf = async (accountIds: string[]) => {
  const where = { accountId: { in: accountIds } };
  const [accounts, attempts, signals, audits] = await Promise.all([
    app.ctx.db.account.count({ where: { id: { in: accountIds } } }),
    app.ctx.db.signupAttempt.count({ where }),
    app.ctx.db.signal.count({ where }),
    app.ctx.db.auditEvent.count({
      where: { action: 'accounts.imported', data: { path: ['accountIds'], array_contains: accountIds } },
    }),
  ]);
  return { accounts, attempts, signals, audits };
};

describe('importing accounts', () => {
  it('creates each account at its own creation time with its signals indexed then', async () => {
    const days = [40, 20, 10].map((d) => H0 - d * 24 * HOUR);
    const batch = [
      user({ createdAt: iso(days[1]!), phone: '+1 800 555 0199', fingerprint: 'fp-shared' }),
      user({ createdAt: iso(days[0]!), ip: '34.102.1.1', userAgent: 'Mozilla/5.0', status: 'suspended' }),
      user({ createdAt: iso(days[2]!), tier: 'free', tlsFingerprint: 'tls-1' }),
    ];
    const res = await post(ACCOUNTS, { accounts: batch });
    expect(res.status, res.text).toBe(200);
    const body = res.body as Imported;
    expect(body.imported).toBe(3);
    expect(body.existing).toBe(0);
    expect(body.accounts.map((a) => a.externalId)).toEqual(batch.map((b) => b.externalId));
    expect(body.accounts.every((a) => a.created)).toBe(true);
    const [a, b, c] = body.accounts.map((x) => x.accountId) as [string, string, string];
    // Ids sort by creation time, not by the order of the batch.
    expect([a, b, c].sort()).toEqual([b, a, c]);

    const stored = await app.ctx.db.account.findUniqueOrThrow({ where: { id: a } });
    expect(stored).toMatchObject({
      externalId: batch[0]!.externalId,
      source: 'import',
      status: 'active',
      tier: 'free',
      // A toll-free number is refused at signup but is a fact about an existing user.
      phone: '+18005550199',
      createdAt: new Date(days[1]!),
      emailVerifiedAt: new Date(days[1]!),
    });
    expect((await app.ctx.db.account.findUniqueOrThrow({ where: { id: b } })).status).toBe('suspended');

    const attempt = await app.ctx.db.signupAttempt.findFirstOrThrow({ where: { accountId: b } });
    expect(attempt).toMatchObject({ decision: 'allow', reasons: [], ip: '34.102.1.1', asn: 396982 });
    expect(attempt.createdAt).toEqual(new Date(days[0]!));
    expect(attempt.signals).toMatchObject({ hosting: true, disposable: false, publicProvider: false });

    const signals = await app.ctx.db.signal.findMany({ where: { accountId: { in: [a, b, c] } } });
    const kinds = (id: string) => signals.filter((s) => s.accountId === id).map((s) => s.kind);
    expect(kinds(a)).toEqual(
      expect.arrayContaining([
        'email',
        'email_domain',
        'ip',
        'subnet',
        'asn',
        'fingerprint',
        'phone',
        'phone_prefix',
      ]),
    );
    expect(kinds(b)).toEqual(expect.arrayContaining(['hosting_asn', 'user_agent']));
    expect(kinds(c)).toContain('tls_fingerprint');
    for (const s of signals) {
      const at = s.accountId === a ? days[1] : s.accountId === b ? days[0] : days[2];
      expect(s.at).toEqual(new Date(at!));
    }
    expect(signals.find((s) => s.accountId === a && s.kind === 'ip')?.value).toBe(batch[0]!.ip);
    expect((await rowsOf([a, b, c])).audits).toBe(1);
  });

  it('changes nothing when the same batch is sent again', async () => {
    const batch = [user(), user(), user()];
    const first = await post(ACCOUNTS, { accounts: batch });
    expect(first.status).toBe(200);
    const ids = (first.body as Imported).accounts.map((a) => a.accountId);
    const before = await rowsOf(ids);

    const again = await post(ACCOUNTS, { accounts: batch });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({
      imported: 0,
      existing: 3,
      accounts: ids.map((accountId, i) => ({ externalId: batch[i]!.externalId, accountId, created: false })),
    });
    expect(await rowsOf(ids)).toEqual(before);
  });

  it('creates each account once when the same batch arrives twice at the same moment', async () => {
    const batch = Array.from({ length: 20 }, () => user());
    const [one, two] = await Promise.all([
      post(ACCOUNTS, { accounts: batch }),
      post(ACCOUNTS, { accounts: batch }),
    ]);
    expect([one!.status, two!.status]).toEqual([200, 200]);
    const results = [one!.body as Imported, two!.body as Imported];
    expect(results.map((r) => r.imported).sort()).toEqual([0, 20]);
    expect(results[0]!.accounts).toEqual(
      results[1]!.accounts.map((a) => ({ ...a, created: results[0]!.accounts[0]!.created })),
    );
    const externalIds = batch.map((b) => b.externalId as string);
    expect(await app.ctx.db.account.count({ where: { externalId: { in: externalIds } } })).toBe(20);
  });

  it('redoes its plan when another import of the same accounts commits first', async () => {
    const batch = Array.from({ length: 5 }, () => user());
    let raced = false;
    let rival: Imported | undefined;
    // The rival import commits after this one has read which accounts exist, before it writes.
    const db = new Proxy(app.ctx.db, {
      get(target, prop) {
        const value: unknown = Reflect.get(target, prop, target);
        if (prop !== '$queryRaw' || typeof value !== 'function') {
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return async (...args: unknown[]) => {
          const rows: unknown = await value.apply(target, args);
          if (!raced) {
            raced = true;
            rival = (await post(ACCOUNTS, { accounts: batch })).body as Imported;
          }
          return rows;
        };
      },
    }) as Db;
    const service = createImportService({
      db,
      audit: app.ctx.audit,
      asn: app.ctx.asn,
      hosting: createHostingClassifier(),
      disposable: createDisposableChecker(),
      policy: () => app.ctx.policy,
      logger: app.ctx.logger,
    });
    const outcome = await service.importAccounts(batch, {
      tokenId: 'admin',
      name: 'test',
      scopes: ['admin'],
    });
    expect(rival?.imported).toBe(5);
    expect(outcome).toEqual({
      ok: true,
      value: {
        imported: 0,
        existing: 5,
        accounts: rival!.accounts.map((a) => ({ ...a, created: false })),
      },
    });
  });

  it('refuses a batch with bad records whole, naming each record and field', async () => {
    const batch = [
      user(),
      user({ email: 'not-an-address' }),
      user({ phone: '+1 555' }),
      user({ ip: '300.1.2.3', createdAt: iso(Date.now() + 24 * HOUR), tier: 'platinum', nickname: 'x' }),
    ];
    const res = await post(ACCOUNTS, { accounts: batch });
    expect(res.status).toBe(400);
    const problem = res.body as Problem;
    expect(problem.code).toBe('validation_failed');
    expect(problem.errors.map((e) => e.field).sort()).toEqual([
      'accounts.1.email',
      'accounts.2.phone',
      'accounts.3.createdAt',
      'accounts.3.ip',
      'accounts.3.nickname',
      'accounts.3.tier',
    ]);
    expect(problem.reasons).toEqual(expect.arrayContaining(['invalid_email', 'invalid_phone']));
    const stored = await app.ctx.db.account.count({
      where: { externalId: { in: batch.map((b) => b.externalId as string) } },
    });
    expect(stored).toBe(0);
  });

  it('refuses two records with the same externalId, naming both', async () => {
    const twin = user();
    const res = await post(ACCOUNTS, { accounts: [twin, user(), user({ externalId: twin.externalId })] });
    expect(res.status).toBe(400);
    expect((res.body as Problem).errors.map((e) => e.field)).toEqual([
      'accounts.0.externalId',
      'accounts.2.externalId',
    ]);
    expect(await app.ctx.db.account.count({ where: { externalId: twin.externalId as string } })).toBe(0);
  });

  it("refuses aliases of another account's mailbox, stored or in the same batch", async () => {
    // Without dots of its own, so the dot added below is the only one (and never doubled).
    const local = `${personLocal().replaceAll('.', '')}${tag()}`;
    await importOne({ email: `${local}@gmail.com` });

    const dotted = `${local.slice(0, 3)}.${local.slice(3)}`;
    const res = await post(ACCOUNTS, {
      accounts: [
        user(),
        user({ email: `${dotted}+work@gmail.com` }),
        user({ email: `${local}@googlemail.com` }),
      ],
    });
    expect(res.status).toBe(400);
    const problem = res.body as Problem;
    expect(problem.errors.map((e) => e.field)).toEqual(['accounts.1.email', 'accounts.2.email']);
    expect(problem.reasons).toEqual(['email_in_use']);
    expect(await app.ctx.db.account.count({ where: { email: { contains: local.slice(3) } } })).toBe(1);

    const other = `${personLocal()}${tag()}`;
    const pair = await post(ACCOUNTS, {
      accounts: [user({ email: `${other}@gmail.com` }), user({ email: `${other}+x@GMAIL.com` })],
    });
    expect(pair.status).toBe(400);
    expect((pair.body as Problem).errors.map((e) => e.field)).toEqual([
      'accounts.0.email',
      'accounts.1.email',
    ]);
  });

  it('imports 1,000 accounts in one call', async () => {
    const batch = Array.from({ length: 1000 }, (_, i) =>
      user({ createdAt: iso(H0 - i * 60_000), fingerprint: `fp-${i % 50}`, userAgent: 'Mozilla/5.0 (X11)' }),
    );
    const started = performance.now();
    const res = await post(ACCOUNTS, { accounts: batch });
    const ms = performance.now() - started;
    expect(res.status, res.text).toBe(200);
    expect((res.body as Imported).imported).toBe(1000);
    const ids = (res.body as Imported).accounts.map((a) => a.accountId);
    expect(await app.ctx.db.signal.count({ where: { accountId: { in: ids } } })).toBeGreaterThanOrEqual(6000);
    console.info(`imported 1,000 accounts over HTTP in ${Math.round(ms)} ms`);
    expect(ms).toBeLessThan(5_000);
  });
});

describe('ingesting usage events', () => {
  const hourOf = (accountId: string, hour: number) =>
    app.ctx.db.usageHour.findUnique({ where: { accountId_hour: { accountId, hour: new Date(hour) } } });

  it('counts events named by accountId, externalId or keyId into the hours they happened in', async () => {
    const externalId = `u-${tag()}`;
    const accountId = await importOne({ externalId });
    const key = await createKey(app, accountId, app.adminToken);

    const res = await post(EVENTS, {
      events: [
        { accountId, at: iso(H0 + 60_000), ip: '73.12.34.10', endpoint: '/v1/chat' },
        { accountId, at: iso(H0 + 120_000), ip: '34.102.1.1', fingerprint: 'fp-9' },
        { externalId, at: iso(H0 + 30 * 60_000), cost: 5 },
        { keyId: key.id, at: iso(H0 + HOUR + 5 * 60_000), decision: 'deny', cost: 3 },
      ],
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ accepted: 4, duplicates: 0 });

    expect(await hourOf(accountId, H0)).toMatchObject({
      requests: 3,
      cost: 7n,
      denied: 0,
      ips: ['73.12.34.10', '34.102.1.1'],
      fingerprints: ['fp-9'],
      asns: [7922, 396982],
    });
    expect(await hourOf(accountId, H0 + HOUR)).toMatchObject({ requests: 1, cost: 0n, denied: 1 });
    const events = await app.ctx.db.usageEvent.findMany({ where: { accountId }, orderBy: { at: 'asc' } });
    expect(events.map((e) => e.at.getTime())).toEqual([
      H0 + 60_000,
      H0 + 120_000,
      H0 + 30 * 60_000,
      H0 + HOUR + 5 * 60_000,
    ]);
    expect(events[3]).toMatchObject({ keyId: key.id, decision: 'deny' });
    const stored = await app.ctx.db.apiKey.findUniqueOrThrow({ where: { id: key.id } });
    expect(stored.lastUsedAt).toEqual(new Date(H0 + HOUR + 5 * 60_000));
  });

  it('refuses the whole batch when an event names no known account', async () => {
    const accountId = await importOne();
    const res = await post(EVENTS, {
      events: [
        { accountId, at: iso(H0) },
        { accountId: 'acc_nobody', at: iso(H0) },
        { keyId: 'key_nothing', at: iso(H0) },
        { externalId: `u-${tag()}`, at: iso(H0) },
        { at: iso(H0) },
        { accountId, externalId: 'also', at: iso(H0) },
        { accountId, at: 'yesterday', ip: 'localhost', cost: -1 },
      ],
    });
    expect(res.status).toBe(400);
    expect((res.body as Problem).errors.map((e) => e.field)).toEqual([
      'events.1.accountId',
      'events.2.keyId',
      'events.3.externalId',
      'events.4',
      'events.5',
      'events.6.at',
      'events.6.ip',
      'events.6.cost',
    ]);
    expect(await app.ctx.db.usageHour.count({ where: { accountId } })).toBe(0);
    expect(await app.ctx.db.usageEvent.count({ where: { accountId } })).toBe(0);
  });

  it('counts the same events once, whether they carry ids or not', async () => {
    const accountId = await importOne();
    const withIds = [0, 1, 2].map((i) => ({ id: `gw-${accountId}-${i}`, accountId, at: iso(H0 + i * 1000) }));
    // Without ids the content is the identity: these two differ only in their query.
    const withoutIds = [
      { accountId, at: iso(H0 + 10_000), endpoint: '/v1/complete', query: 'translate this into French' },
      { accountId, at: iso(H0 + 10_000), endpoint: '/v1/complete', query: 'summarise the attached report' },
    ];

    expect((await post(EVENTS, { events: withIds })).body).toEqual({ accepted: 3, duplicates: 0 });
    expect((await post(EVENTS, { events: withoutIds })).body).toEqual({ accepted: 2, duplicates: 0 });
    expect((await post(EVENTS, { events: withIds })).body).toEqual({ accepted: 0, duplicates: 3 });
    expect((await post(EVENTS, { events: withoutIds })).body).toEqual({ accepted: 0, duplicates: 2 });
    // The same id with other content is still the event already counted.
    const changed = { ...withIds[0]!, at: iso(H0 + 50_000), cost: 9 };
    const repeated = [withoutIds[0]!, changed, withoutIds[0]!];
    expect((await post(EVENTS, { events: repeated })).body).toEqual({ accepted: 0, duplicates: 3 });

    expect(await hourOf(accountId, H0)).toMatchObject({ requests: 5, cost: 5n });
    expect(await app.ctx.db.usageEvent.count({ where: { accountId } })).toBe(5);
  });

  it('keeps a query only as its MinHash', async () => {
    const accountId = await importOne();
    const query = 'write a short poem about the lighthouse keeper and his cat';
    const res = await post(EVENTS, { events: [{ accountId, at: iso(H0), query }] });
    expect(res.status).toBe(200);
    const [event] = await app.ctx.db.usageEvent.findMany({ where: { accountId } });
    expect(event?.queryMinhash).toEqual(minhash(query));
    expect(JSON.stringify(event)).not.toMatch(/lighthouse/);
  });

  it('takes 5,000 events in one call, a body over the default limit', async () => {
    const accountId = await importOne();
    const events = Array.from({ length: 5000 }, (_, i) => ({
      accountId,
      at: iso(H0 + i * 10_000),
      ip: `73.12.${i % 200}.10`,
      userAgent:
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
      endpoint: '/v1/chat/completions',
      query: `please review pull request number ${i} and list the risky changes`,
    }));
    expect(JSON.stringify({ events }).length).toBeGreaterThan(app.ctx.config.BODY_LIMIT_BYTES);
    const started = performance.now();
    const res = await post(EVENTS, { events });
    const ms = performance.now() - started;
    expect(res.status, res.text.slice(0, 300)).toBe(200);
    expect(res.body).toEqual({ accepted: 5000, duplicates: 0 });
    console.info(`ingested 5,000 events over HTTP in ${Math.round(ms)} ms`);
    const hours = await app.ctx.db.usageHour.aggregate({ where: { accountId }, _sum: { requests: true } });
    expect(hours._sum.requests).toBe(5000);
  });
});

describe('import scopes', () => {
  it('answers 403 to a token without the ingest scope', async () => {
    const signup = await app.tokenWith('signup');
    const accounts = await post(ACCOUNTS, { accounts: [user()] }, signup);
    expect(accounts.status).toBe(403);
    const events = await post(EVENTS, { events: [{ accountId: 'acc_x', at: iso(H0) }] }, signup);
    expect(events.status).toBe(403);
  });

  it('answers 413 to a body over the import limit', async () => {
    const padding = 'x'.repeat(IMPORT_BODY_LIMITS.accounts);
    const res = await post(ACCOUNTS, { accounts: [user({ userAgent: padding })] });
    expect(res.status).toBe(413);
  });

  it('lets an admin token import too', async () => {
    const res = await post(ACCOUNTS, { accounts: [user()] }, app.adminToken);
    expect(res.status).toBe(200);
  });
});
