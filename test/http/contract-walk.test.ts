import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectContract, operations } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

// Walks every /v1 operation in openapi.yaml: each must refuse a missing token (401) and a token
// without its scope (403), as problem+json matching the contract.

const SCOPES = ['signup', 'keys', 'enforce', 'ingest', 'admin'] as const;
const v1 = operations.filter((op) => op.template.startsWith('/v1/'));

let app: TestApp;
const tokens = new Map<string, string>();
beforeAll(async () => {
  app = await startTestApp();
  for (const scope of SCOPES) tokens.set(scope, await app.tokenWith(scope));
});
afterAll(async () => {
  await app.close();
});

const concrete = (template: string) => template.replace(/\{[^}]+\}/g, 'x_0000000000000000000000');

describe('every /v1 route', () => {
  it('is listed with its scopes and declares 401 and 403', () => {
    expect(v1.length).toBeGreaterThan(0);
    for (const op of v1) {
      expect(op.scopes, `${op.method} ${op.template}`).not.toBeNull();
      expect(op.scopes!.length, `${op.method} ${op.template}`).toBeGreaterThan(0);
      expect(Object.keys(op.responses), `${op.method} ${op.template}`).toEqual(
        expect.arrayContaining(['401', '403']),
      );
    }
  });

  for (const op of v1) {
    it(`${op.method} ${op.template} answers 401 without a token and 403 without its scope`, async () => {
      const path = concrete(op.template);
      const gateway = op.template === '/v1/enforce/forward-auth';
      const anon = await app.request(op.method, path, {
        token: null,
        body: op.method === 'GET' || op.method === 'DELETE' ? undefined : {},
      });
      expect(anon.status).toBe(401);
      expectContract(anon, op.method, path);

      const lacking = SCOPES.find((s) => s !== 'admin' && !op.scopes!.includes(s))!;
      const token = tokens.get(lacking)!;
      const headers: Record<string, string> = gateway ? { 'x-gatehouse-token': token } : {};
      const wrong = await app.request(op.method, path, {
        token: gateway ? null : token,
        headers,
        body: op.method === 'GET' || op.method === 'DELETE' ? undefined : {},
      });
      expect(wrong.status).toBe(403);
      expectContract(wrong, op.method, path);
    });
  }
});
