import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/client.ts';
import { createTokenService } from '../../src/tokens/service.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app.close();
});

describe('service tokens', () => {
  it('creates a token shown once, lists it without its secret, and revokes it', async () => {
    const created = await app.request('POST', '/v1/tokens', {
      body: { name: 'signup backend', scopes: ['signup'] },
    });
    expect(created.status).toBe(201);
    expectContract(created, 'POST', '/v1/tokens');
    const { id, token, prefix } = created.body as { id: string; token: string; prefix: string };
    expect(token).toMatch(/^ght_[A-Za-z0-9_-]{43}$/);
    expect(token.startsWith(prefix)).toBe(true);

    const listed = await app.request('GET', '/v1/tokens');
    expect(listed.status).toBe(200);
    expectContract(listed, 'GET', '/v1/tokens');
    expect(listed.text).not.toContain(token);
    expect((listed.body as { tokens: Array<{ id: string }> }).tokens.map((t) => t.id)).toContain(id);

    const revoked = await app.request('DELETE', `/v1/tokens/${id}`);
    expect(revoked.status).toBe(204);
    expectContract(revoked, 'DELETE', `/v1/tokens/${id}`);

    const after = await app.request('GET', '/v1/tokens', { token });
    expect(after.status).toBe(401);
    expectContract(after, 'GET', '/v1/tokens');
  });

  it('stores only a hash of the token', async () => {
    const token = await app.tokenWith('keys');
    const rows = await app.ctx.db.serviceToken.findMany({ where: { prefix: token.slice(0, 12) } });
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('answers 403 to a token without the admin scope and 401 to an unknown one', async () => {
    const keysToken = await app.tokenWith('keys');
    const forbidden = await app.request('GET', '/v1/tokens', { token: keysToken });
    expect(forbidden.status).toBe(403);
    expectContract(forbidden, 'GET', '/v1/tokens');
    expect((forbidden.body as { code: string }).code).toBe('forbidden');

    const unknown = await app.request('GET', '/v1/tokens', {
      token: 'ght_notarealtokennotarealtokennotarealtoken00',
    });
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('www-authenticate')).toContain('invalid_token');
    const missing = await app.request('GET', '/v1/tokens', { token: null });
    expect(missing.status).toBe(401);
    expect((missing.body as { code: string }).code).toBe('unauthenticated');
  });

  it('lets a token created with admin scope manage tokens', async () => {
    const admin = await app.tokenWith('admin');
    const res = await app.request('POST', '/v1/tokens', {
      token: admin,
      body: { name: 'gw', scopes: ['enforce'] },
    });
    expect(res.status).toBe(201);
  });

  it('rejects unknown scopes, unknown fields and empty names, naming the fields', async () => {
    const res = await app.request('POST', '/v1/tokens', {
      body: { name: '', scopes: ['root'], colour: 'red' },
    });
    expect(res.status).toBe(400);
    expectContract(res, 'POST', '/v1/tokens');
    const fields = (res.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['name', 'scopes.0', 'colour']));
  });

  it('answers 404 for revoking a token that does not exist and 400 for a malformed id', async () => {
    const missing = await app.request('DELETE', '/v1/tokens/tok_0000000000000000000000');
    expect(missing.status).toBe(404);
    expectContract(missing, 'DELETE', '/v1/tokens/tok_0000000000000000000000');
    const bad = await app.request('DELETE', '/v1/tokens/nope');
    expect(bad.status).toBe(400);
  });

  it('records token creation and revocation in the audit log', async () => {
    const created = await app.request('POST', '/v1/tokens', {
      body: { name: 'audited', scopes: ['ingest'] },
    });
    const { id } = created.body as { id: string };
    await app.request('DELETE', `/v1/tokens/${id}`);
    const events = await app.ctx.db.auditEvent.findMany({ where: { subjectId: id }, orderBy: { at: 'asc' } });
    expect(events.map((e) => e.action)).toEqual(['token.created', 'token.revoked']);
    expect(events[0]!.actor).toBe('admin');
  });

  it('looks a token up once for many callers, and refreshes it before it expires', async () => {
    const token = await app.tokenWith('enforce');
    // The real database, with its token lookups counted.
    let lookups = 0;
    let release: (() => void) | null = null;
    const db = new Proxy(app.ctx.db, {
      get(target, prop, receiver) {
        if (prop !== 'serviceToken') return Reflect.get(target, prop, receiver);
        const delegate = target.serviceToken;
        return {
          findUnique: async (args: Parameters<typeof delegate.findUnique>[0]) => {
            lookups++;
            if (release === null) await new Promise<void>((resolve) => (release = resolve));
            return delegate.findUnique(args);
          },
          update: (args: Parameters<typeof delegate.update>[0]) => delegate.update(args),
        };
      },
    }) as Db;
    let clock = 1_000_000;
    const tokens = createTokenService({ db, audit: app.ctx.audit, now: () => clock });

    // A cold cache and 20 calls at once: one query, held until all 20 are waiting on it.
    const first = Array.from({ length: 20 }, () => tokens.authenticate(token));
    await new Promise((r) => setTimeout(r, 20));
    expect(lookups).toBe(1);
    (release as unknown as () => void)();
    for (const principal of await Promise.all(first)) expect(principal?.scopes).toEqual(['enforce']);
    expect(lookups).toBe(1);

    // Fresh: no query. Within a second of expiring: answered from the cache, refreshed behind.
    clock += 3_000;
    expect(await tokens.authenticate(token)).not.toBeNull();
    expect(lookups).toBe(1);
    clock += 1_500;
    expect(await tokens.authenticate(token)).not.toBeNull();
    expect(lookups).toBe(2);
    await new Promise((r) => setTimeout(r, 50));
    // Past the first lookup's expiry, the refreshed entry answers without a query.
    clock += 1_000;
    expect(await tokens.authenticate(token)).not.toBeNull();
    expect(lookups).toBe(2);

    // An invalidation (a revocation anywhere) makes the next call look again.
    tokens.invalidate();
    expect(await tokens.authenticate(token)).not.toBeNull();
    expect(lookups).toBe(3);
  });

  it('answers a token revoked while its lookup was in flight as revoked to later callers', async () => {
    const created = await app.request('POST', '/v1/tokens', {
      body: { name: 'racing', scopes: ['enforce'] },
    });
    const { id, token } = created.body as { id: string; token: string };
    const tokens = createTokenService({ db: app.ctx.db, audit: app.ctx.audit });
    const before = tokens.authenticate(token);
    expect(await tokens.revoke(id, { tokenId: 'admin', name: 'admin', scopes: ['admin'] })).toBe(true);
    // The lookup that began before the revocation may still see the token; nothing after it does.
    await before;
    expect(await tokens.authenticate(token)).toBeNull();
  });
});
