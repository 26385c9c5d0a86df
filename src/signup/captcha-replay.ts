// Refuses a captcha token we have already accepted once, across every API instance.
//
// The providers are single-use too, but not always: hCaptcha's and Turnstile's test keys accept a
// token over and over, a Turnstile retry with the same idempotency key replays the first verdict,
// and with provider 'none' nothing checks at all. Claiming here makes a replay cost one Redis
// round trip instead of a siteverify call, whatever the provider does.
//
// Only the sha256 of the token reaches Redis: a token is a bearer credential until it expires, and
// key names show up in MONITOR output, slow logs and dumps.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export interface ReplayGuard {
  /** True the first time a token is seen, false for every later sight within the TTL. */
  claim(token: string): Promise<boolean>;
}

/**
 * @param ttlSeconds how long a token is remembered. It must outlive the token itself (hCaptcha 120 s,
 *   Turnstile 300 s), or a replay after the key expires would reach the provider again.
 */
export function createReplayGuard(
  redis: Redis,
  keyFor: (tokenHash: string) => string,
  ttlSeconds = 300,
): ReplayGuard {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new TypeError('replay guard ttlSeconds must be a positive integer');
  }
  return {
    async claim(token: string): Promise<boolean> {
      const tokenHash = createHash('sha256').update(token, 'utf8').digest('hex');
      // One atomic command: two instances racing on the same token cannot both win.
      const reply = await redis.set(keyFor(tokenHash), '1', 'EX', ttlSeconds, 'NX');
      return reply === 'OK';
    },
  };
}
