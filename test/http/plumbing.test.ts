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

const problem = (body: unknown) =>
  body as { type: string; code: string; status: number; detail?: string; instance?: string };

describe('HTTP plumbing', () => {
  it('answers 413 as problem+json to a 2 MiB body', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024), scopes: ['signup'] });
    const res = await app.request('POST', '/v1/tokens', {
      rawBody: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(problem(res.body).code).toBe('payload_too_large');
    expectContract(res, 'POST', '/v1/tokens');
  });

  it('answers 400 as problem+json to malformed JSON', async () => {
    const res = await app.request('POST', '/v1/tokens', {
      rawBody: '{"name": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
    expect(problem(res.body).code).toBe('malformed_json');
    expect(problem(res.body).type).toBe('urn:gatehouse:problem:malformed_json');
    expectContract(res, 'POST', '/v1/tokens');
  });

  it('answers 415 to a body that is not JSON', async () => {
    const res = await app.request('POST', '/v1/tokens', {
      rawBody: 'name=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(415);
    expectContract(res, 'POST', '/v1/tokens');
  });

  it('answers 404 as problem+json to an unknown route, after authentication', async () => {
    const res = await app.request('GET', '/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(problem(res.body).code).toBe('not_found');
    const anon = await app.request('GET', '/v1/nothing-here', { token: null });
    expect(anon.status).toBe(401);
    const root = await app.request('GET', '/nothing', { token: null });
    expect(root.status).toBe(404);
    expect(root.headers.get('content-type')).toMatch(/problem\+json/);
  });

  it('echoes a well-formed request id and makes one otherwise', async () => {
    const given = await app.request('GET', '/healthz', { headers: { 'x-request-id': 'req-123' } });
    expect(given.headers.get('x-request-id')).toBe('req-123');
    const made = await app.request('GET', '/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const res = await app.request('GET', '/v1/none', { headers: { 'x-request-id': 'req-456' } });
    expect(problem(res.body).instance).toBe('req-456');
  });

  it('reports liveness, readiness and Prometheus metrics', async () => {
    const health = await app.request('GET', '/healthz', { token: null });
    expect(health.status).toBe(200);
    expectContract(health, 'GET', '/healthz');
    const ready = await app.request('GET', '/readyz', { token: null });
    expect(ready.status).toBe(200);
    expectContract(ready, 'GET', '/readyz');
    await app.request('GET', '/v1/tokens');
    const metrics = await app.request('GET', '/metrics', { token: null });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(
      /gatehouse_http_requests_total\{method="GET",route="\/v1\/tokens",status="200"\} \d+/,
    );
    expect(metrics.text).toContain('gatehouse_http_request_duration_seconds_bucket');
    expect(metrics.text).toMatch(/gatehouse_queue_jobs\{queue="maintenance",state="waiting"\} \d+/);
    // fetch's connections: each request above went to node:http as not an enforcement request.
    expect(
      Number(/gatehouse_wire_handovers_total\{reason="route"\} (\d+)/.exec(metrics.text)?.[1]),
    ).toBeGreaterThan(0);
    expect(metrics.text).toMatch(/^gatehouse_wire_requests_total \d+$/m);
  });

  it('never writes a token or secret to the logs', async () => {
    const created = await app.request('POST', '/v1/tokens', {
      body: { name: 'log check', scopes: ['signup'] },
    });
    const secret = (created.body as { token: string }).token;
    await app.request('GET', '/v1/tokens', { token: secret });
    await app.request('GET', '/v1/tokens?token=sneaky-query-secret', { token: secret });
    await app.request('POST', '/v1/tokens', {
      rawBody: `{"name":"${secret}",`,
      headers: { 'content-type': 'application/json' },
    });
    const all = app.logs.join('');
    expect(all.length).toBeGreaterThan(0);
    expect(all).toContain('"route":"/v1/tokens"');
    expect(all).not.toContain(secret);
    expect(all).not.toContain(app.adminToken);
    expect(all).not.toContain('sneaky-query-secret');
  });
});
