import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, type TestResponse } from '../support/harness.ts';
import { personLocal } from '../support/people.ts';
import { type SignupWorld, startSignupWorld } from '../support/signup-env.ts';

// The whole path of a real user: signup, the verification e-mail delivered through the signed
// webhook, the phone step-up by SMS code, and the account becoming active.

const policy = parsePolicy(`
version: 1
signup:
  verification:
    phoneResendCooldown: 1ms
    phoneDailyPerAccount: 3
    phoneDailyPerNumber: 10
`);

let world: SignupWorld;
let app: TestApp;
let token: string;
beforeAll(async () => {
  world = await startSignupWorld();
  app = await startTestApp({ env: world.env, policy, workers: true });
  token = await app.tokenWith('signup');
});
afterAll(async () => {
  await app.close();
  await world.close();
});

let ipCounter = Number.parseInt(randomBytes(1).toString('hex'), 16);
const residentialIp = () => `98.10.${++ipCounter % 250}.${1 + Math.floor(Math.random() * 250)}`;
const email = () => `${personLocal()}@outlook.com`;
// Unique UK mobile numbers (07400 range is mobile).
const mobile = () => `+4474001${String(Math.floor(Math.random() * 100_000)).padStart(5, '0')}`;

async function call(method: string, path: string, body?: unknown): Promise<TestResponse> {
  const res = await app.request(method, path, { token, ...(body !== undefined ? { body } : {}) });
  expectContract(res, method, path);
  return res;
}

async function signup(extra: Record<string, unknown> = {}) {
  const res = await call('POST', '/v1/signups', {
    email: email(),
    captchaToken: world.captcha(),
    ip: residentialIp(),
    ...extra,
  });
  expect(res.status, res.text).toBe(201);
  return (res.body as { accountId: string }).accountId;
}

type Account = {
  status: string;
  phone: string | null;
  verification: { email: boolean; phone: boolean; pending: string[] };
};

describe('verification', () => {
  it('takes a legitimate signup to active through the e-mail token', async () => {
    const externalId = `user-${randomBytes(5).toString('hex')}`;
    const id = await signup({ externalId });
    const before = await call('GET', `/v1/accounts/${id}`);
    expect(before.body).toMatchObject({
      status: 'pending',
      verification: { email: false, pending: ['email'] },
    });

    const message = await world.waitForMessage(id, 'verify_email');
    expect(message.type === 'verify_email' && message.token.length).toBeGreaterThan(30);
    const verified = await call('POST', `/v1/accounts/${id}/verify-email`, {
      token: message.type === 'verify_email' ? message.token : '',
    });
    expect(verified.status).toBe(200);
    expect(verified.body).toMatchObject({ status: 'active', verification: { email: true, pending: [] } });

    const found = await call('GET', `/v1/accounts?externalId=${externalId}`);
    expect((found.body as { accounts: Array<{ id: string }> }).accounts.map((a) => a.id)).toEqual([id]);
    const none = await call('GET', '/v1/accounts?externalId=nobody-has-this');
    expect((none.body as { accounts: unknown[] }).accounts).toEqual([]);
  });

  it('refuses a wrong, a reused and an expired token with the same answer', async () => {
    const id = await signup();
    const message = await world.waitForMessage(id, 'verify_email');
    const good = message.type === 'verify_email' ? message.token : '';

    const wrong = await call('POST', `/v1/accounts/${id}/verify-email`, { token: `${good.slice(0, -2)}xx` });
    expect(wrong.status).toBe(400);
    await app.ctx.db.verification.updateMany({
      where: { accountId: id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    const expired = await call('POST', `/v1/accounts/${id}/verify-email`, { token: good });
    expect(expired.status).toBe(400);
    const strip = (r: TestResponse) => ({ ...(r.body as Record<string, unknown>), instance: undefined });
    expect(strip(expired)).toEqual(strip(wrong));
    expect((wrong.body as { code: string }).code).toBe('verification_failed');
  });

  it('resends a fresh token and retires the old one', async () => {
    const id = await signup();
    const first = await world.waitForMessage(id, 'verify_email');
    const resent = await call('POST', `/v1/accounts/${id}/verify-email/resend`);
    expect(resent.status).toBe(202);
    const second = await world.waitForMessage(id, 'verify_email', 1);
    const old = await call('POST', `/v1/accounts/${id}/verify-email`, {
      token: first.type === 'verify_email' ? first.token : '',
    });
    expect(old.status).toBe(400);
    const fresh = await call('POST', `/v1/accounts/${id}/verify-email`, {
      token: second.type === 'verify_email' ? second.token : '',
    });
    expect(fresh.status).toBe(200);
  });

  it('makes a challenged signup verify a phone before it is active', async () => {
    const res = await call('POST', '/v1/signups', {
      email: email(),
      captchaToken: world.captcha(),
      ip: '52.94.3.1',
    });
    expect(res.body).toMatchObject({ decision: 'challenge', next: ['verify_email', 'verify_phone'] });
    const id = (res.body as { accountId: string }).accountId;
    const mail = await world.waitForMessage(id, 'verify_email');
    const afterEmail = await call('POST', `/v1/accounts/${id}/verify-email`, {
      token: mail.type === 'verify_email' ? mail.token : '',
    });
    expect(afterEmail.body).toMatchObject({
      status: 'pending',
      verification: { email: true, pending: ['phone'] },
    });

    const number = mobile();
    const started = await call('POST', `/v1/accounts/${id}/phone`, { phone: number });
    expect(started.status).toBe(202);
    const sms = await world.waitForMessage(id, 'verify_phone');
    expect(sms.to).toBe(number);
    const code = sms.type === 'verify_phone' ? sms.code : '';
    expect(code).toMatch(/^\d{6}$/);
    const done = await call('POST', `/v1/accounts/${id}/phone/verify`, { code });
    expect(done.status).toBe(200);
    expect(done.body as Account).toMatchObject({
      status: 'active',
      phone: number,
      verification: { phone: true, pending: [] },
    });
  });

  it('burns a code after five wrong guesses', async () => {
    const id = await signup();
    await call('POST', `/v1/accounts/${id}/phone`, { phone: mobile() });
    const sms = await world.waitForMessage(id, 'verify_phone');
    const code = sms.type === 'verify_phone' ? sms.code : '';
    const wrongCode = code === '000000' ? '111111' : '000000';
    for (let i = 0; i < 5; i++) {
      expect((await call('POST', `/v1/accounts/${id}/phone/verify`, { code: wrongCode })).status).toBe(400);
    }
    const right = await call('POST', `/v1/accounts/${id}/phone/verify`, { code });
    expect(right.status).toBe(400);
    expect((right.body as { code: string }).code).toBe('verification_failed');
  });

  it('keeps one live account per verified number (phone_in_use), at signup and at step-up', async () => {
    const number = mobile();
    const owner = await signup();
    await call('POST', `/v1/accounts/${owner}/phone`, { phone: number });
    const sms = await world.waitForMessage(owner, 'verify_phone');
    expect(
      (
        await call('POST', `/v1/accounts/${owner}/phone/verify`, {
          code: sms.type === 'verify_phone' ? sms.code : '',
        })
      ).status,
    ).toBe(200);

    const other = await signup();
    const stepUp = await call('POST', `/v1/accounts/${other}/phone`, { phone: number });
    expect(stepUp.status).toBe(403);
    expect((stepUp.body as { reasons: string[] }).reasons).toEqual(['phone_in_use']);

    const atSignup = await call('POST', '/v1/signups', {
      email: email(),
      captchaToken: world.captcha(),
      ip: residentialIp(),
      phone: number,
    });
    expect(atSignup.status).toBe(403);
    expect((atSignup.body as { reasons: string[] }).reasons).toContain('phone_in_use');
  });

  it('refuses a number of a suspended account, and VoIP numbers at step-up', async () => {
    const number = mobile();
    const farm = await signup({ phone: number });
    await app.ctx.db.account.update({ where: { id: farm }, data: { status: 'suspended' } });
    const next = await signup();
    const res = await call('POST', `/v1/accounts/${next}/phone`, { phone: number });
    expect(res.status).toBe(403);
    expect((res.body as { reasons: string[] }).reasons).toEqual(['phone_in_use']);
    const voip = await call('POST', `/v1/accounts/${next}/phone`, { phone: '+445612345678' });
    expect(voip.status).toBe(403);
    expect((voip.body as { reasons: string[] }).reasons).toEqual(['phone_type_not_allowed']);
    const suspendedVerify = await call('POST', `/v1/accounts/${farm}/phone`, { phone: mobile() });
    expect(suspendedVerify.status).toBe(403);
  });

  it('caps the codes sent to one account per day', async () => {
    const id = await signup();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await call('POST', `/v1/accounts/${id}/phone`, { phone: mobile() });
      statuses.push(res.status);
      if (res.status === 429) expect(res.headers.get('retry-after')).toBeTruthy();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(statuses).toEqual([202, 202, 202, 429]);
  });

  it('answers 404 for an unknown account and 400 for a malformed id', async () => {
    expect((await call('GET', '/v1/accounts/acc_0000000000000000000000')).status).toBe(404);
    expect((await call('GET', '/v1/accounts/12')).status).toBe(400);
  });
});
