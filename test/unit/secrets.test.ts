import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { constantTimeEqual, hmacHex, sha256, sha256Hex } from '../../src/lib/secrets.ts';

const referenceHmac = (key: string, value: string) => createHmac('sha256', key).update(value).digest('hex');

describe('digests', () => {
  it('HMAC-SHA-256 equals createHmac for keys shorter than, as long as and longer than the block', () => {
    for (const key of ['', 'k', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(65), 'p'.repeat(500), 'ключ-🔑']) {
      // Around the longest value hashed in place (341 UTF-16 units, up to 3 bytes each) and past it.
      const values = ['', 'gh_live_abc', 'ü', '🔑'.repeat(40), 'v'.repeat(1_000)];
      values.push('€'.repeat(341), '€'.repeat(342), 'a'.repeat(341), 'a'.repeat(342), '\ud800'.repeat(341));
      for (const value of values) {
        expect(hmacHex(key, value)).toBe(referenceHmac(key, value));
      }
    }
  });

  it('HMAC-SHA-256 equals createHmac on arbitrary keys and values', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 150 }),
        fc.string({ unit: 'binary' }),
        (key, value) => {
          expect(hmacHex(key, value)).toBe(referenceHmac(key, value));
        },
      ),
      { numRuns: 500 },
    );
    // Many peppers in turn (the pads are kept per pepper, a few at a time).
    for (let i = 0; i < 40; i++) {
      const key = randomBytes(24).toString('hex');
      expect(hmacHex(key, `value-${i}`)).toBe(referenceHmac(key, `value-${i}`));
    }
  });

  it('SHA-256 equals createHash, as hex and as bytes', () => {
    for (const value of ['', 'abc', 'ü🔑', 'z'.repeat(10_000)]) {
      expect(sha256Hex(value)).toBe(createHash('sha256').update(value).digest('hex'));
      expect(sha256(value).equals(createHash('sha256').update(value).digest())).toBe(true);
    }
  });

  it('compares strings by value', () => {
    expect(constantTimeEqual('gh_adm_1', 'gh_adm_1')).toBe(true);
    expect(constantTimeEqual('gh_adm_1', 'gh_adm_2')).toBe(false);
    expect(constantTimeEqual('', 'x')).toBe(false);
  });
});
