import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { personLocal } from '../support/people.ts';
import { type SignupWorld, startSignupWorld } from '../support/signup-env.ts';
import { behaviours } from '../support/siteverify-server.ts';

// Every signup reason code, each produced by a realistic input through HTTP against the real
// PostgreSQL, Redis and a local siteverify server. Velocity limits are small so the windows fill fast.

const policy = parsePolicy(`
version: 1
signup:
  velocity:
    ip: [{ window: 1h, limit: 5 }]
    subnet: [{ window: 1h, limit: 8 }]
    asn: [{ window: 1h, limit: 100 }]
    hostingAsn: [{ window: 1h, limit: 4 }]
    emailDomain: [{ window: 1h, limit: 3 }]
    emailPattern: [{ window: 24h, limit: 3, buckets: 96 }]
    fingerprint: [{ window: 24h, limit: 2, buckets: 96 }]
    global: [{ window: 1m, limit: 10000, buckets: 12 }]
`);

let world: SignupWorld;
let app: TestApp;
let signupToken: string;
beforeAll(async () => {
  world = await startSignupWorld();
  app = await startTestApp({ env: world.env, policy, workers: true });
  signupToken = await app.tokenWith('signup');
});
afterAll(async () => {
  await app.close();
  await world.close();
});

// Residential addresses (Comcast, AS7922), a fresh /24 for each caller so windows do not mix.
let subnetCounter = Number.parseInt(randomBytes(1).toString('hex'), 16);
const freshSubnet = () => {
  subnetCounter = (subnetCounter + 1) % 250;
  const second = 10 + Math.floor(Math.random() * 200);
  return `73.${second}.${subnetCounter}`;
};
const residentialIp = () => `${freshSubnet()}.10`;
/** A human-looking, unique local part (programmatic names would share a velocity pattern). */
const name = (prefix?: string) => (prefix ? `${prefix}.${personLocal()}` : personLocal());

interface Problem {
  code: string;
  reasons: string[];
  errors?: Array<{ field: string }>;
}

async function signup(overrides: Record<string, unknown> = {}) {
  const body = {
    email: `${name('ann')}@gmail.com`,
    captchaToken: world.captcha(),
    ip: residentialIp(),
    userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15',
    ...overrides,
  };
  const res = await app.request('POST', '/v1/signups', { token: signupToken, body });
  expectContract(res, 'POST', '/v1/signups');
  return res;
}

const reasonsOf = (res: { body: unknown }) => (res.body as Problem).reasons;

describe('POST /v1/signups', () => {
  it('allows a legitimate signup and stores the attempt with its signals', async () => {
    const res = await signup({
      externalId: `ext-${randomBytes(6).toString('hex')}`,
      fingerprint: `fp-${name()}`,
    });
    expect(res.status).toBe(201);
    const body = res.body as {
      accountId: string;
      status: string;
      decision: string;
      reasons: string[];
      next: string[];
    };
    expect(body).toMatchObject({ status: 'pending', decision: 'allow', reasons: [], next: ['verify_email'] });
    const attempt = await app.ctx.db.signupAttempt.findFirstOrThrow({ where: { accountId: body.accountId } });
    expect(attempt.decision).toBe('allow');
    expect(attempt.asn).toBe(7922);
    expect(attempt.subnet).toMatch(/^73\.\d+\.\d+\.0\/24$/);
    expect(attempt.emailCanonicalHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a failed captcha (captcha_failed) and a replayed token', async () => {
    const bad = await signup({ captchaToken: 'not-a-real-token' });
    expect(bad.status).toBe(403);
    expect((bad.body as Problem).code).toBe('captcha_failed');

    const token = world.captcha();
    expect((await signup({ captchaToken: token })).status).toBe(201);
    const replay = await signup({ captchaToken: token });
    expect(replay.status).toBe(403);
    expect(reasonsOf(replay)).toEqual(['captcha_failed']);
  });

  it('fails closed with 503 captcha_unavailable when the provider hangs', async () => {
    world.siteverify.setBehaviour(behaviours.hang());
    try {
      const started = Date.now();
      const res = await signup();
      expect(res.status).toBe(503);
      expect((res.body as Problem).code).toBe('captcha_unavailable');
      expect(res.headers.get('retry-after')).toBeTruthy();
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      world.siteverify.reset();
    }
  });

  it('refuses disposable e-mail (disposable_email) but not a privacy relay', async () => {
    const res = await signup({ email: `${name()}@mailinator.com` });
    expect(res.status).toBe(403);
    expect(reasonsOf(res)).toContain('disposable_email');
    const relay = await signup({ email: `${name()}@duck.com` });
    expect(relay.status).toBe(201);
  });

  it('answers 400 invalid_email naming the field for malformed and look-alike addresses', async () => {
    for (const email of ['not-an-email', 'jоhn@gmail.com', `${'a'.repeat(70)}@gmail.com`, 'a@b']) {
      const res = await signup({ email });
      expect(res.status, email).toBe(400);
      expect((res.body as Problem).code).toBe('invalid_email');
      expect((res.body as Problem).errors?.[0]?.field).toBe('email');
    }
  });

  it('treats Gmail dot and +tag variants as the same person (email_in_use)', async () => {
    const local = name('johnny');
    expect((await signup({ email: `${local}@gmail.com` })).status).toBe(201);
    const dotted = `${local.replaceAll('.', '').split('').join('.')}+promo@googlemail.com`;
    const again = await signup({ email: dotted });
    expect(again.status).toBe(403);
    expect(reasonsOf(again)).toContain('email_in_use');
  });

  it('answers 400 invalid_phone and 403 phone_type_not_allowed for a VoIP number', async () => {
    const invalid = await signup({ phone: '+4412' });
    expect(invalid.status).toBe(400);
    expect((invalid.body as Problem).code).toBe('invalid_phone');
    expect((invalid.body as Problem).errors?.[0]?.field).toBe('phone');

    const voip = await signup({ phone: '+44 56 1234 5678' });
    expect(voip.status).toBe(403);
    expect(reasonsOf(voip)).toContain('phone_type_not_allowed');
    // The refused number is kept with the attempt, in E.164: farms reuse their VoIP numbers.
    const refused = await app.ctx.db.signupAttempt.findMany({ where: { phone: '+445612345678' } });
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ decision: 'deny', accountId: null });
    expect(refused[0]?.reasons).toContain('phone_type_not_allowed');

    const mobile = await signup({ phone: '+447400123456' });
    expect(mobile.status).toBe(201);
  });

  it('challenges a signup from a cloud network with a phone step-up (hosting_network)', async () => {
    const res = await signup({ ip: '3.5.140.1' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      decision: 'challenge',
      reasons: ['hosting_network'],
      next: ['verify_email', 'verify_phone'],
    });
  });

  it('applies operator block rules at once (blocked_ip, blocked_asn, blocked_email_domain, blocked_email_pattern)', async () => {
    const subnet = freshSubnet();
    const domain = `${name('corp')}.example`;
    const rules = [
      { kind: 'cidr', mode: 'block', value: `${subnet}.0/24` },
      { kind: 'asn', mode: 'block', value: 'AS2856' },
      { kind: 'email_domain', mode: 'block', value: domain },
      { kind: 'email_pattern', mode: 'block', value: 'farmbot*@gmail.com' },
    ];
    for (const rule of rules) {
      const res = await app.request('POST', '/v1/rules', { body: rule });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    expect(reasonsOf(await signup({ ip: `${subnet}.77` }))).toContain('blocked_ip');
    expect(reasonsOf(await signup({ ip: '86.150.2.3' }))).toContain('blocked_asn');
    expect(reasonsOf(await signup({ email: `${name()}@mail.${domain}` }))).toContain('blocked_email_domain');
    const patterned = await signup({ email: `farmbot${randomBytes(2).toString('hex')}@gmail.com` });
    expect(patterned.status).toBe(403);
    expect(reasonsOf(patterned)).toContain('blocked_email_pattern');
  });

  it('limits signups per IP with a sliding window (velocity_ip, 429 with Retry-After)', async () => {
    const ip = residentialIp();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await signup({ ip })).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201, 429]);
    const res = await signup({ ip });
    expect(res.status).toBe(429);
    expect(reasonsOf(res)).toEqual(['velocity_ip']);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(3000);
  });

  it('limits signups per /24 (velocity_subnet) across addresses', async () => {
    const subnet = freshSubnet();
    let last = await signup({ ip: `${subnet}.1` });
    for (let i = 2; i <= 9; i++) last = await signup({ ip: `${subnet}.${i}` });
    expect(last.status).toBe(429);
    expect(reasonsOf(last)).toContain('velocity_subnet');
  });

  it('is much stricter for hosting networks (velocity_asn)', async () => {
    // AWS (AS16509) addresses in different /24s: only the ASN window can refuse them.
    const results: number[] = [];
    let last = await signup({ ip: '54.81.1.1' });
    results.push(last.status);
    for (let i = 2; i <= 5; i++) {
      last = await signup({ ip: `54.${80 + i}.1.1` });
      results.push(last.status);
    }
    expect(results.slice(0, 3)).toEqual([201, 201, 201]);
    expect(last.status).toBe(429);
    expect(reasonsOf(last)).toEqual(['velocity_asn']);
  });

  it('limits a company domain (velocity_email_domain) but not gmail.com', async () => {
    const domain = `${name('acme')}.example`;
    let last = await signup({ email: `alice@${domain}` });
    for (const who of ['bob', 'carol', 'dave']) last = await signup({ email: `${who}.${name()}@${domain}` });
    expect(last.status).toBe(429);
    expect(reasonsOf(last)).toContain('velocity_email_domain');
  });

  it('limits programmatic names (velocity_email_pattern)', async () => {
    const stem = name('bot');
    const statuses: number[] = [];
    let last = await signup({ email: `${stem}1001@gmail.com` });
    statuses.push(last.status);
    for (const n of [1002, 1003, 1004]) {
      last = await signup({ email: `${stem}${n}@gmail.com` });
      statuses.push(last.status);
    }
    expect(statuses).toEqual([201, 201, 201, 429]);
    expect(reasonsOf(last)).toContain('velocity_email_pattern');
  });

  it('limits one device fingerprint (velocity_fingerprint), counting rejected attempts too', async () => {
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    const first = await signup({ fingerprint, email: `${name()}@mailinator.com` });
    expect(first.status).toBe(403);
    expect((await signup({ fingerprint })).status).toBe(201);
    const third = await signup({ fingerprint });
    expect(third.status).toBe(429);
    expect(reasonsOf(third)).toEqual(['velocity_fingerprint']);
  });

  it('stores every attempt, rejected ones included, with their reasons', async () => {
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    await signup({ fingerprint, email: `${name()}@mailinator.com` });
    const rows = await app.ctx.db.signupAttempt.findMany({ where: { fingerprint } });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ decision: 'deny', accountId: null });
    expect(rows[0]!.reasons).toContain('disposable_email');
  });

  it('refuses a second account with the same externalId (409)', async () => {
    const externalId = `ext-${randomBytes(6).toString('hex')}`;
    expect((await signup({ externalId })).status).toBe(201);
    const again = await signup({ externalId });
    expect(again.status).toBe(409);
    expect(reasonsOf(again)).toEqual(['external_id_in_use']);
  });

  it('queues the account for the linking workers, which index its signals', async () => {
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    const res = await signup({ fingerprint });
    const { accountId } = res.body as { accountId: string };
    const until = Date.now() + 10_000;
    let kinds: string[] = [];
    while (Date.now() < until) {
      kinds = (await app.ctx.db.signal.findMany({ where: { accountId } })).map((s) => s.kind);
      if (kinds.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(kinds).toEqual(
      expect.arrayContaining(['email', 'email_pattern', 'ip', 'subnet', 'asn', 'fingerprint', 'user_agent']),
    );
  });
});

describe('velocity_global', () => {
  it('caps all signups together', async () => {
    const tight = parsePolicy(
      'version: 1\nsignup:\n  velocity:\n    global: [{ window: 1m, limit: 2, buckets: 12 }]\n',
    );
    const other = await startTestApp({ env: world.env, policy: tight });
    try {
      const token = await other.tokenWith('signup');
      const statuses: number[] = [];
      let last: Awaited<ReturnType<TestApp['request']>> | undefined;
      for (let i = 0; i < 3; i++) {
        last = await other.request('POST', '/v1/signups', {
          token,
          body: { email: `${name()}@gmail.com`, captchaToken: world.captcha(), ip: residentialIp() },
        });
        statuses.push(last.status);
      }
      expect(statuses).toEqual([201, 201, 429]);
      expect(reasonsOf(last!)).toEqual(['velocity_global']);
    } finally {
      await other.close();
    }
  });
});
