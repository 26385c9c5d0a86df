import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { answerJson } from '../../src/enforce/answer.ts';
import type { EnforcementDecision } from '../../src/enforce/decide.ts';

// The enforcement answer is written by hand; it must be valid JSON that says exactly what
// JSON.stringify of the same decision says, whatever the window names and numbers.

const number = fc.oneof(
  fc.integer(),
  fc.integer({ min: 0, max: 86_400 }),
  fc.double(),
  fc.constantFrom(0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER, 1e21),
);

const decision: fc.Arbitrary<EnforcementDecision> = fc.record(
  {
    decision: fc.constantFrom('allow', 'throttle', 'deny'),
    reason: fc.constantFrom(
      'invalid_key',
      'account_suspended',
      'verification_required',
      'rate_limited',
      'quota_exhausted',
      'blocked_ip',
      'limiter_unavailable',
      'near_limit',
      'flagged',
    ),
    accountId: fc.oneof(fc.string(), fc.constant('acc_01JEXAMPLE')),
    delayMs: number,
    retryAfterMs: number,
    degrade: fc.boolean(),
    limits: fc.array(
      fc.record({
        // Quotes, backslashes, control characters and lone surrogates must come out escaped.
        name: fc.oneof(fc.constantFrom('key:1m', 'user:24h', 'a"b\\c', '\u2028', '\ud800'), fc.string()),
        limit: number,
        remaining: number,
        resetSeconds: number,
      }),
      { maxLength: 12 },
    ),
  },
  { requiredKeys: ['decision', 'limits'] },
);

describe('answerJson', () => {
  it('parses to what JSON.stringify gives for the same decision', () => {
    fc.assert(
      fc.property(decision, (d) => {
        const text = answerJson(d);
        expect(JSON.parse(text)).toStrictEqual(JSON.parse(JSON.stringify(d)));
      }),
      { numRuns: 3_000 },
    );
  });

  it('leaves out what the decision does not have, and the headers it carries', () => {
    const outcome = {
      decision: 'allow' as const,
      accountId: 'acc_1',
      limits: [{ name: 'key:1m', limit: 60, remaining: 59, resetSeconds: 5 }],
      headers: { RateLimit: '"key:1m";r=59;t=5' },
    };
    expect(answerJson(outcome)).toBe(
      '{"decision":"allow","accountId":"acc_1","limits":[{"name":"key:1m","limit":60,"remaining":59,"resetSeconds":5}]}',
    );
    expect(answerJson({ decision: 'deny', reason: 'invalid_key', limits: [] })).toBe(
      '{"decision":"deny","reason":"invalid_key","limits":[]}',
    );
  });
});
