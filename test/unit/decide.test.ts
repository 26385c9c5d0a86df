import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/policy.ts';
import { decideSignup, type SignupFacts } from '../../src/signup/decide.ts';

const policy = parsePolicy('version: 1').signup;
const clean: SignupFacts = {
  captcha: 'ok',
  email: { disposable: false, privacyRelay: false, inUse: false },
  phone: null,
  network: { hosting: false },
  rules: [],
  velocity: [],
};
const facts = (over: Partial<SignupFacts>): SignupFacts => ({ ...clean, ...over });

describe('decideSignup', () => {
  it.each<[string, Partial<SignupFacts>, ReturnType<typeof decideSignup>]>([
    [
      'a clean signup is allowed and must verify its e-mail',
      {},
      { decision: 'allow', reasons: [], next: ['verify_email'] },
    ],
    [
      'a failed captcha is refused',
      { captcha: 'failed' },
      { decision: 'deny', status: 403, reasons: ['captcha_failed'] },
    ],
    [
      'an unreachable captcha provider fails closed',
      { captcha: 'unavailable' },
      { decision: 'deny', status: 503, reasons: ['captcha_unavailable'] },
    ],
    [
      'a disposable address is refused by default',
      { email: { disposable: true, privacyRelay: false, inUse: false } },
      { decision: 'deny', status: 403, reasons: ['disposable_email'] },
    ],
    [
      'a hosting network is challenged with a phone step-up',
      { network: { hosting: true } },
      { decision: 'challenge', reasons: ['hosting_network'], next: ['verify_email', 'verify_phone'] },
    ],
    [
      'velocity refuses with 429 and the longest wait',
      {
        velocity: [
          { dimension: 'ip', retryAfterMs: 5_000 },
          { dimension: 'fingerprint', retryAfterMs: 60_000 },
        ],
      },
      {
        decision: 'deny',
        status: 429,
        reasons: ['velocity_ip', 'velocity_fingerprint'],
        retryAfterMs: 60_000,
      },
    ],
    [
      'a hard refusal wins over velocity and names both',
      { captcha: 'failed', velocity: [{ dimension: 'ip', retryAfterMs: 1_000 }] },
      { decision: 'deny', status: 403, reasons: ['captcha_failed', 'velocity_ip'] },
    ],
    [
      'an allow rule on the network lifts the hosting challenge and network velocity',
      {
        network: { hosting: true },
        rules: [{ kind: 'cidr', mode: 'allow' }],
        velocity: [{ dimension: 'subnet', retryAfterMs: 1 }],
      },
      { decision: 'allow', reasons: [], next: ['verify_email'] },
    ],
    [
      'a network allow rule does not vouch for a disposable e-mail',
      {
        email: { disposable: true, privacyRelay: false, inUse: false },
        rules: [{ kind: 'asn', mode: 'allow' }],
      },
      { decision: 'deny', status: 403, reasons: ['disposable_email'] },
    ],
    [
      'an allow rule never lifts a captcha failure or a block rule',
      {
        captcha: 'failed',
        rules: [
          { kind: 'cidr', mode: 'allow' },
          { kind: 'email_domain', mode: 'block' },
        ],
      },
      { decision: 'deny', status: 403, reasons: ['captcha_failed', 'blocked_email_domain'] },
    ],
    [
      'a challenge rule asks for the phone',
      { rules: [{ kind: 'email_pattern', mode: 'challenge' }] },
      { decision: 'challenge', reasons: ['challenge_email_pattern'], next: ['verify_email', 'verify_phone'] },
    ],
    [
      'a phone already in use is refused',
      { phone: { ok: true, inUse: true } },
      { decision: 'deny', status: 403, reasons: ['phone_in_use'] },
    ],
  ])('%s', (_title, over, expected) => {
    expect(decideSignup(facts(over), policy)).toEqual(expected);
  });

  it('follows the policy: disposable challenged, phone always required', () => {
    const lenient = parsePolicy(
      'version: 1\nsignup:\n  email: { disposable: challenge }\n  verification: { required: [email, phone] }\n',
    ).signup;
    expect(decideSignup(facts({}), lenient)).toEqual({
      decision: 'allow',
      reasons: [],
      next: ['verify_email', 'verify_phone'],
    });
    expect(
      decideSignup(facts({ email: { disposable: true, privacyRelay: false, inUse: false } }), lenient),
    ).toMatchObject({
      decision: 'challenge',
      reasons: ['disposable_email'],
    });
  });
});
