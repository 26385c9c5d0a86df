import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

// Whatever a caller sends, Gatehouse answers with a problem naming the field at fault: never a 500.

let app: TestApp;
let token: string;
beforeAll(async () => {
  app = await startTestApp();
  token = await app.tokenWith('signup');
});
afterAll(async () => {
  await app.close();
});

const FIELDS = [
  'email',
  'phone',
  'captchaToken',
  'ip',
  'fingerprint',
  'tlsFingerprint',
  'userAgent',
  'acceptLanguage',
  'externalId',
];

const nasty = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ minLength: 5_000, maxLength: 20_000 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
  fc.constantFrom(
    '999.1.1.1',
    '1.2.3',
    '::ffff:999.1.1.1',
    'fe80::1%eth0',
    '010.1.1.1',
    'jоhn@gmail.com',
    'a\u200b@gmail.com',
    'x@xn--80ak6aa92e.com',
    '"quoted"@example.com',
    'user@[127.0.0.1]',
    'üser@bücher.de',
    '+1 (555) 0100',
    '+99999999999999999',
  ),
);

const plausible = {
  email: fc.oneof(fc.emailAddress(), nasty),
  captchaToken: fc.oneof(fc.constant('pass-token'), nasty),
  ip: fc.oneof(fc.ipV4(), fc.ipV6(), nasty),
  phone: fc.oneof(fc.constant('+447400123456'), nasty),
  fingerprint: nasty,
  userAgent: nasty,
  externalId: nasty,
};

describe('POST /v1/signups with hostile input', () => {
  it('never answers 500 and names the field at fault', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record(plausible, { requiredKeys: [] }),
        fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string(), { maxKeys: 2 }),
        async (body, extra) => {
          const payload = { ...extra, ...body };
          const res = await app.request('POST', '/v1/signups', { token, body: payload });
          expect([201, 400, 403, 409, 429]).toContain(res.status);
          expectContract(res, 'POST', '/v1/signups');
          if (res.status === 400) {
            const errors = (res.body as { errors?: Array<{ field: string }> }).errors ?? [];
            expect(errors.length).toBeGreaterThan(0);
            for (const e of errors) {
              const top = e.field.split('.')[0]!;
              expect(FIELDS.includes(top) || e.field in extra || top === 'body', e.field).toBe(true);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);

  it('answers 400 to bodies that are not objects', async () => {
    for (const raw of ['[]', '"text"', '42', 'null', '{"email": "a@b.co", "email": 1}']) {
      const res = await app.request('POST', '/v1/signups', {
        token,
        rawBody: raw,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status, raw).toBe(400);
      expectContract(res, 'POST', '/v1/signups');
    }
  });
});
