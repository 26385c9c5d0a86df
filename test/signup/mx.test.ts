import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProblemError } from '../../src/http/problem.ts';
import { createSlidingWindowLimiter } from '../../src/limits/limiter.ts';
import { createDisposableChecker } from '../../src/signals/disposable.ts';
import { createHostingClassifier } from '../../src/signals/hosting.ts';
import { createCaptchaVerifier } from '../../src/signup/captcha.ts';
import { createReplayGuard } from '../../src/signup/captcha-replay.ts';
import { createSignupService } from '../../src/signup/service.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { personLocal } from '../support/people.ts';

// The optional MX check runs behind an injected resolver: here one that knows which domains
// accept mail, with the real stores behind everything else.

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app.close();
});

const MAIL_DOMAINS = new Set(['gmail.com']);

function service() {
  const { ctx } = app;
  return createSignupService({
    db: ctx.db,
    keys: ctx.keys,
    limiter: createSlidingWindowLimiter(ctx.redis),
    captcha: createCaptchaVerifier({ provider: 'none', secret: 'none' }),
    captchaFailMode: 'closed',
    replay: createReplayGuard(ctx.redis, (hash) => ctx.keys.captchaSeen(hash)),
    asn: ctx.asn,
    hosting: createHostingClassifier(),
    disposable: createDisposableChecker(),
    rules: ctx.rules,
    queues: ctx.queues,
    policy: () => ctx.policy,
    pepper: 'test-pepper-test-pepper-test-pepper-0001',
    logger: ctx.logger,
    hasMx: async (domain) => MAIL_DOMAINS.has(domain),
  });
}

describe('MX check', () => {
  it('refuses a domain that accepts no mail as invalid_email, naming the field', async () => {
    const err = await service()
      .signup({ email: `${personLocal()}@no-mail-here.example`, captchaToken: 'x', ip: '73.60.1.1' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProblemError);
    expect((err as ProblemError).status).toBe(400);
    expect((err as ProblemError).body()).toMatchObject({
      code: 'invalid_email',
      errors: [{ field: 'email' }],
    });
  });

  it('lets a domain with mail servers through', async () => {
    const result = await service().signup({
      email: `${personLocal()}@gmail.com`,
      captchaToken: 'y',
      ip: '73.60.1.2',
    });
    expect(result.decision).toBe('allow');
  });
});
