import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Hooks, startHooks } from '../../simulator/hooks.ts';
import { signWebhookBody } from '../../src/notify/webhook.ts';

// The simulator's stand-ins for the captcha provider and the product's mail and SMS sender.

let hooks: Hooks;
beforeAll(async () => {
  hooks = await startHooks({ captchaSecret: 'the-secret', webhookSecret: 'whsec_the_webhook_secret' });
});
afterAll(async () => {
  await hooks.close();
});

const verify = async (secret: string, response: string) => {
  const res = await fetch(hooks.siteverifyUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ secret, response }).toString(),
  });
  return (await res.json()) as { success: boolean; 'error-codes'?: string[] };
};

const deliver = (body: string, signature: string) =>
  fetch(hooks.webhookUrl, { method: 'POST', headers: { 'x-gatehouse-signature': signature }, body });

describe('simulator hooks', () => {
  it('passes each solved captcha once, as hCaptcha does', async () => {
    const token = hooks.captcha();
    expect(await verify('the-secret', token)).toMatchObject({ success: true });
    expect(await verify('the-secret', token)).toEqual({
      success: false,
      'error-codes': ['already-seen-response'],
    });
    expect(await verify('another-secret', hooks.captcha())).toMatchObject({
      'error-codes': ['invalid-input-secret'],
    });
    expect(await verify('the-secret', 'forged')).toMatchObject({ 'error-codes': ['invalid-input-response'] });
  });

  it('hands a signed verification message to whoever waits for it, and refuses a bad signature', async () => {
    const waiting = hooks.inbox.next('acc_1', 'verify_phone', 0, 5_000);
    const body = JSON.stringify({
      type: 'verify_phone',
      to: '+447400123456',
      code: '123456',
      accountId: 'acc_1',
      expiresAt: '2030-01-01T00:00:00Z',
    });
    expect((await deliver(body, 't=1,v1=00')).status).toBe(401);
    expect((await deliver(body, signWebhookBody(hooks.webhookSecret, body, Date.now() / 1000))).status).toBe(
      204,
    );
    expect(await waiting).toMatchObject({ code: '123456' });
    expect(hooks.badSignatures()).toBe(1);
    expect(await hooks.inbox.next('acc_1', 'verify_phone', 1, 50)).toBeNull();
  });
});
