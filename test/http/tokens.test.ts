import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
