import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKeys } from '../../src/redis/keys.ts';
import {
  type CaptchaResult,
  type CaptchaVerifierOptions,
  classifyErrorCodes,
  createCaptchaVerifier,
  ERROR_CODE_TABLE,
  MAX_TOKEN_LENGTH,
} from '../../src/signup/captcha.ts';
import { createReplayGuard } from '../../src/signup/captcha-replay.ts';
import {
  behaviours,
  HCAPTCHA_TEST_SECRET,
  HCAPTCHA_TEST_SITEKEY,
  HCAPTCHA_TEST_TOKEN,
  type SiteverifyServer,
  startSiteverifyServer,
  TURNSTILE_TEST_SECRET,
} from '../support/siteverify-server.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function expectFailed(result: CaptchaResult, codes: string[]): void {
  expect(result).toEqual({ ok: false, reason: 'captcha_failed', codes });
}

function expectUnavailable(result: CaptchaResult, detail?: RegExp): void {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.reason).toBe('captcha_unavailable');
  if (detail && result.reason === 'captcha_unavailable') expect(result.detail).toMatch(detail);
}

/** Neither the secret nor the token may leak into what callers log or return. */
function expectNoSecrets(result: CaptchaResult, ...secrets: string[]): void {
  const text = JSON.stringify(result);
  for (const secret of secrets) expect(text).not.toContain(secret);
}

describe('hCaptcha verifier against a local siteverify', () => {
  let server: SiteverifyServer;
  const hcaptcha = (extra: Partial<CaptchaVerifierOptions> = {}) =>
    createCaptchaVerifier({
      provider: 'hcaptcha',
      secret: HCAPTCHA_TEST_SECRET,
      siteKey: HCAPTCHA_TEST_SITEKEY,
      verifyUrl: server.url,
      timeoutMs: 2000,
      ...extra,
    });

  beforeAll(async () => {
    server = await startSiteverifyServer({ mode: 'hcaptcha' });
  });
  afterEach(() => server.reset());
  afterAll(async () => {
    await server.close();
  });

  it('accepts the documented test token and reports hostname and challenge time', async () => {
    const result = await hcaptcha().verify(HCAPTCHA_TEST_TOKEN, '203.0.113.7');
    expect(result).toMatchObject({ ok: true, hostname: 'localhost' });
    if (!result.ok) return;
    expect(Number.isNaN(Date.parse(result.challengeTs ?? ''))).toBe(false);
  });

  it('sends secret, response, remoteip and sitekey as a urlencoded form', async () => {
    await hcaptcha().verify('pass-form-check', '2001:db8::1');
    expect(server.requests).toEqual([
      {
        secret: HCAPTCHA_TEST_SECRET,
        response: 'pass-form-check',
        remoteip: '2001:db8::1',
        sitekey: HCAPTCHA_TEST_SITEKEY,
      },
    ]);
    expect(server.headers[0]?.['content-type']).toBe('application/x-www-form-urlencoded');
  });

  it('does not forward a remote address that is not an IP', async () => {
    await hcaptcha().verify('pass-bad-ip', '1.2.3.4, 5.6.7.8');
    expect(server.requests[0]).not.toHaveProperty('remoteip');
  });

  it('fails an invalid token with the provider code', async () => {
    const result = await hcaptcha().verify('forged-token');
    expectFailed(result, ['invalid-input-response']);
    expectNoSecrets(result, HCAPTCHA_TEST_SECRET, 'forged-token');
  });

  it('fails an expired token', async () => {
    expectFailed(await hcaptcha().verify('expired-123'), ['expired-input-response']);
  });

  it('fails a token the second time it is verified', async () => {
    const verifier = hcaptcha();
    expect((await verifier.verify('pass-once')).ok).toBe(true);
    expectFailed(await verifier.verify('pass-once'), ['already-seen-response']);
  });

  it('gives up on a provider that never answers within the timeout', async () => {
    server.setBehaviour(behaviours.hang());
    const started = performance.now();
    const result = await hcaptcha({ timeoutMs: 200 }).verify('pass-hang');
    const elapsed = performance.now() - started;
    expectUnavailable(result, /no answer within 200 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(1000);
  });

  it('treats HTTP 500 as unavailable and does not retry (hCaptcha has no idempotency key)', async () => {
    server.setBehaviour(behaviours.http500());
    expectUnavailable(await hcaptcha().verify('pass-500'), /HTTP 500/);
    expect(server.requests).toHaveLength(1);
  });

  it('treats a non-JSON answer as unavailable', async () => {
    server.setBehaviour(behaviours.nonJson());
    expectUnavailable(await hcaptcha().verify('pass-html'), /without a siteverify JSON body/);
  });

  it('treats JSON without a boolean success as unavailable', async () => {
    server.setBehaviour(() => ({ kind: 'json', body: { success: 'true' } }));
    expectUnavailable(await hcaptcha().verify('pass-odd'));
  });

  it('reports a wrong secret as unavailable (our misconfiguration), without echoing it', async () => {
    const result = await hcaptcha({ secret: '0xnot-the-right-secret' }).verify(HCAPTCHA_TEST_TOKEN);
    expectUnavailable(result, /invalid-input-secret/);
    expectNoSecrets(result, '0xnot-the-right-secret', HCAPTCHA_TEST_TOKEN);
  });

  it('reports a sitekey that does not belong to the secret as unavailable', async () => {
    const result = await hcaptcha({ siteKey: '20000000-ffff-ffff-ffff-000000000002' }).verify('pass-sk');
    expectUnavailable(result, /sitekey-secret-mismatch/);
  });

  it('rejects an oversized, empty or non-ASCII token without calling the provider', async () => {
    const verifier = hcaptcha();
    expectFailed(await verifier.verify('a'.repeat(MAX_TOKEN_LENGTH.hcaptcha + 1)), [
      'oversized-input-response',
    ]);
    expectFailed(await verifier.verify(''), ['missing-input-response']);
    expectFailed(await verifier.verify('pass-\u00e9t\u00e9'), ['malformed-input-response']);
    expectFailed(await verifier.verify('pass-with space'), ['malformed-input-response']);
    expect(server.requests).toHaveLength(0);
  });

  it('reports a refused connection as unavailable', async () => {
    const gone = await startSiteverifyServer();
    const url = gone.url;
    await gone.close();
    const started = performance.now();
    const result = await hcaptcha({ verifyUrl: url }).verify('pass-refused');
    expectUnavailable(result, /network error: ECONNREFUSED/);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('fails a token solved on another hostname', async () => {
    expectFailed(await hcaptcha({ expectedHostname: 'signup.example.com' }).verify('pass-host'), [
      'hostname-mismatch',
    ]);
    expect((await hcaptcha({ expectedHostname: 'LOCALHOST' }).verify('pass-host-ok')).ok).toBe(true);
  });

  it('fails an Enterprise score above maxScore and passes one within bounds', async () => {
    const verifier = hcaptcha({ maxScore: 0.5 });
    expectFailed(await verifier.verify('pass-score-0.9-a'), ['score-above-max']);
    expect(await verifier.verify('pass-score-0.2-b')).toMatchObject({ ok: true, score: 0.2 });
    expectFailed(await hcaptcha({ minScore: 0.1 }).verify('pass-score-0.05-c'), ['score-below-min']);
  });

  it('is unavailable when a score threshold is set but the answer carries no score', async () => {
    expectUnavailable(await hcaptcha({ maxScore: 0.5 }).verify('pass-no-score'), /no score/);
  });

  it('fails closed on unknown codes, on a mix with a token code, and on success with codes', async () => {
    server.setBehaviour(behaviours.errorCodes('some-future-code'));
    expectFailed(await hcaptcha().verify('pass-x'), ['some-future-code']);
    server.setBehaviour(behaviours.errorCodes('bad-request', 'invalid-input-response'));
    expectFailed(await hcaptcha().verify('pass-y'), ['bad-request', 'invalid-input-response']);
    server.setBehaviour(() => ({
      kind: 'json',
      body: { success: true, 'error-codes': ['invalid-input-secret'] },
    }));
    expectUnavailable(await hcaptcha().verify('pass-z'), /invalid-input-secret/);
    server.setBehaviour(() => ({ kind: 'json', body: { success: false } }));
    expectFailed(await hcaptcha().verify('pass-w'), ['unspecified-failure']);
  });
});

describe('Turnstile verifier against a local siteverify', () => {
  let server: SiteverifyServer;
  const turnstile = (extra: Partial<CaptchaVerifierOptions> = {}) =>
    createCaptchaVerifier({
      provider: 'turnstile',
      secret: TURNSTILE_TEST_SECRET,
      siteKey: 'ignored-for-turnstile',
      verifyUrl: server.url,
      timeoutMs: 2000,
      ...extra,
    });

  beforeAll(async () => {
    server = await startSiteverifyServer({ mode: 'turnstile' });
  });
  afterEach(() => server.reset());
  afterAll(async () => {
    await server.close();
  });

  it('sends secret, response, remoteip and a uuid idempotency_key, but no sitekey', async () => {
    expect((await turnstile().verify('pass-ts', '198.51.100.4')).ok).toBe(true);
    const form = server.requests[0];
    expect(form).toMatchObject({
      secret: TURNSTILE_TEST_SECRET,
      response: 'pass-ts',
      remoteip: '198.51.100.4',
    });
    expect(form?.idempotency_key).toMatch(UUID);
    expect(form).not.toHaveProperty('sitekey');
  });

  it('fails a reused token with timeout-or-duplicate', async () => {
    const verifier = turnstile();
    expect((await verifier.verify('pass-dup')).ok).toBe(true);
    expectFailed(await verifier.verify('pass-dup'), ['timeout-or-duplicate']);
  });

  it('retries once after a 5xx with the same idempotency key, so the token is not burnt', async () => {
    server.setBehaviour(
      behaviours.firstThen(1, (_form, defaultReply) => {
        defaultReply(); // the provider consumed the token but the answer was lost
        return { kind: 'raw', status: 502, body: 'bad gateway' };
      }),
    );
    expect((await turnstile().verify('pass-retry')).ok).toBe(true);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0]?.idempotency_key).toBe(server.requests[1]?.idempotency_key);
  });

  it('is unavailable when internal-error persists across the retry', async () => {
    server.setBehaviour(behaviours.errorCodes('internal-error'));
    expectUnavailable(await turnstile().verify('pass-ie'), /internal-error/);
    expect(server.requests).toHaveLength(2);
  });

  it('rejects a token over the documented 2048 characters without a request', async () => {
    expectFailed(await turnstile().verify('p'.repeat(MAX_TOKEN_LENGTH.turnstile + 1)), [
      'oversized-input-response',
    ]);
    expect(server.requests).toHaveLength(0);
  });

  it('does not retry after a timeout, whose budget is already spent', async () => {
    server.setBehaviour(behaviours.hang());
    const started = performance.now();
    expectUnavailable(await turnstile({ timeoutMs: 200 }).verify('pass-slow'), /no answer/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(server.requests).toHaveLength(1);
  });
});

describe('captcha configuration and code table', () => {
  it("passes everything with provider 'none'", async () => {
    const verifier = createCaptchaVerifier({ provider: 'none', secret: '' });
    expect(await verifier.verify('')).toEqual({ ok: true });
  });

  it('refuses to start without a secret, or with score bounds on Turnstile', () => {
    expect(() => createCaptchaVerifier({ provider: 'hcaptcha', secret: '' })).toThrow(/secret/);
    expect(() => createCaptchaVerifier({ provider: 'turnstile', secret: 's', maxScore: 0.5 })).toThrow(
      /hCaptcha/,
    );
    expect(() =>
      createCaptchaVerifier({ provider: 'hcaptcha', secret: 's', minScore: 0.8, maxScore: 0.2 }),
    ).toThrow();
  });

  it('classifies every documented code: token problems fail, our setup and provider faults are unavailable', () => {
    const failedCodes = {
      hcaptcha: [
        'missing-input-response',
        'invalid-input-response',
        'expired-input-response',
        'already-seen-response',
        'invalid-or-already-seen-response',
      ],
      turnstile: ['missing-input-response', 'invalid-input-response', 'timeout-or-duplicate'],
    } as const;
    for (const provider of ['hcaptcha', 'turnstile'] as const) {
      for (const [code, entry] of Object.entries(ERROR_CODE_TABLE[provider])) {
        const expected = (failedCodes[provider] as readonly string[]).includes(code)
          ? 'captcha_failed'
          : 'captcha_unavailable';
        expect({ provider, code, outcome: entry.outcome }).toEqual({ provider, code, outcome: expected });
        expect(classifyErrorCodes(provider, [code])).toBe(expected);
      }
    }
    expect(Object.keys(ERROR_CODE_TABLE.turnstile)).toHaveLength(7);
    expect(classifyErrorCodes('turnstile', ['expired-input-response'])).toBe('captcha_failed');
  });
});

describe('captcha replay guard (real Redis)', () => {
  const redis = new Redis({
    host: '127.0.0.1',
    port: 6379,
    db: 0,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  });
  const keys = createKeys(`gatehouse-test-${randomUUID()}`);

  // Braces are literal in Redis glob patterns, so the hash-tagged key shape can be matched as is.
  const ownKeys = () => redis.keys(keys.captchaSeen('*'));

  beforeAll(async () => {
    await redis.connect();
  });
  afterAll(async () => {
    const found = await ownKeys();
    if (found.length > 0) await redis.del(...found);
    await redis.quit();
  });

  it('claims a token once and refuses it afterwards', async () => {
    const guard = createReplayGuard(redis, keys.captchaSeen, 120);
    expect(await guard.claim('pass-replay-1')).toBe(true);
    expect(await guard.claim('pass-replay-1')).toBe(false);
    expect(await guard.claim('pass-replay-2')).toBe(true);
  });

  it('stores only the sha256 of the token, with the TTL', async () => {
    const guard = createReplayGuard(redis, keys.captchaSeen, 120);
    const token = `secret-token-${randomUUID()}`;
    await guard.claim(token);
    const key = keys.captchaSeen(createHash('sha256').update(token).digest('hex'));
    expect(await redis.get(key)).toBe('1');
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
    for (const stored of await ownKeys()) {
      expect(stored).not.toContain(token);
      expect(stored).toMatch(/:[0-9a-f]{64}$/);
    }
  });

  it('lets exactly one of many concurrent claims win', async () => {
    const guard = createReplayGuard(redis, keys.captchaSeen);
    const results = await Promise.all(Array.from({ length: 20 }, () => guard.claim('pass-race')));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('refuses a non-positive or fractional TTL', () => {
    expect(() => createReplayGuard(redis, keys.captchaSeen, 0)).toThrow();
    expect(() => createReplayGuard(redis, keys.captchaSeen, 1.5)).toThrow();
  });
});
