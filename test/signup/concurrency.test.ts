import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { type SignupWorld, startSignupWorld } from '../support/signup-env.ts';

// Velocity windows wide open, so every request reaches the database and the race is real.
const open = parsePolicy(`
version: 1
signup:
  velocity:
    emailPattern: [{ window: 1h, limit: 1000 }]
    global: [{ window: 1m, limit: 100000, buckets: 12 }]
`);

let world: SignupWorld;
let app: TestApp;
beforeAll(async () => {
  world = await startSignupWorld();
  // A full suite loads two cores; the captcha budget must not be what this test measures.
  app = await startTestApp({ env: { ...world.env, CAPTCHA_TIMEOUT_MS: '5000' }, policy: open });
});
afterAll(async () => {
  await app.close();
  await world.close();
});

describe('concurrent signups', () => {
  it('50 concurrent signups sharing one canonical e-mail make exactly one account', async () => {
    const token = await app.tokenWith('signup');
    const base = `kasia${randomBytes(3).toString('hex').replace(/\d/g, 'q')}`;
    const variants = Array.from({ length: 50 }, (_, i) => {
      const dotted = base.split('').join(i % 2 ? '.' : '');
      return `${dotted}+try${i}@${i % 3 ? 'gmail.com' : 'googlemail.com'}`;
    });
    const results = await Promise.all(
      variants.map((email, i) =>
        app.request('POST', '/v1/signups', {
          token,
          body: { email, captchaToken: world.captcha(), ip: `71.10.${i}.${10 + i}` },
        }),
      ),
    );
    const statuses = results.map((r) => r.status);
    const unexpected = results.filter((r) => r.status !== 201 && r.status !== 403).map((r) => r.text);
    expect(unexpected).toEqual([]);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 403)).toHaveLength(49);
    for (const r of results.filter((x) => x.status === 403)) {
      expect((r.body as { reasons: string[] }).reasons).toEqual(['email_in_use']);
    }
    const winner = results.find((r) => r.status === 201)!.body as { accountId: string };
    const account = await app.ctx.db.account.findUniqueOrThrow({ where: { id: winner.accountId } });
    const same = await app.ctx.db.account.count({
      where: { emailCanonicalHash: account.emailCanonicalHash },
    });
    expect(same).toBe(1);
    const attempts = await app.ctx.db.signupAttempt.count({
      where: { emailCanonicalHash: account.emailCanonicalHash },
    });
    expect(attempts).toBe(50);
  });
});
