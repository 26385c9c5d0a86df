import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalEmail,
  canonicalEmailHash,
  emailPattern,
  isPrivacyRelay,
  isPublicProvider,
  type ParsedEmail,
  parseEmail,
} from '../../src/signals/email.ts';

function parsed(input: string): ParsedEmail {
  const result = parseEmail(input);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(input)} to parse: ${result.detail}`);
  return result.value;
}

describe('parseEmail accepts', () => {
  it.each([
    ['john@gmail.com', 'john', 'gmail.com', 'gmail.com'],
    ['  John.Smith@Example.COM\n', 'John.Smith', 'example.com', 'example.com'],
    ["o'brien+news@example.ie", "o'brien+news", 'example.ie', 'example.ie'],
    ['user@bücher.de', 'user', 'xn--bcher-kva.de', 'bücher.de'],
    ['user@xn--bcher-kva.de', 'user', 'xn--bcher-kva.de', 'bücher.de'],
    ['user@пример.рф', 'user', 'xn--e1afmkfd.xn--p1ai', 'пример.рф'],
    ['user@東京.jp', 'user', 'xn--1lqs71d.jp', '東京.jp'],
    // UTS #46 maps full-width letters and the ideographic full stop, as browsers do.
    ['user@ｇｍａｉｌ。com', 'user', 'gmail.com', 'gmail.com'],
    [`${'a'.repeat(64)}@example.com`, 'a'.repeat(64), 'example.com', 'example.com'],
  ])('%s', (input, local, domain, domainUnicode) => {
    expect(parsed(input)).toEqual({ local, domain, domainUnicode, address: `${local}@${domain}` });
  });
});

describe('parseEmail rejects', () => {
  it.each([
    ['', /empty/],
    ['plain.example.com', /missing @/],
    ['a@b@example.com', /more than one @/],
    ['"john doe"@example.com', /whitespace/],
    ['"john"@example.com', /quoted/],
    ['john(comment)@example.com', /comments/],
    ['.john@example.com', /dot-atom/],
    ['john.@example.com', /dot-atom/],
    ['jo..hn@example.com', /dot-atom/],
    [`${'a'.repeat(65)}@example.com`, /local part longer than 64/],
    [`${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`, /longer than 254/],
    [`${'a'.repeat(288)}@example.com`, /longer than 64/],
    ['user@[192.168.0.1]', /IP-literal/],
    ['user@1.2.3.4', /all digits/],
    ['user@0x7f.1', /all digits/],
    ['user@localhost', /no dot/],
    ['user@example.com.', /empty label/],
    ['user@-example.com', /inner hyphens/],
    ['user@exa_mple.com', /characters other than/],
    // domainToASCII would percent-decode this into exa.com.
    ['user@ex%61.com', /characters other than/],
    [`user@${'a'.repeat(64)}.com`, /label longer than 63/],
    ['user@xn--zz.com', /not a valid/],
    // Cyrillic о (U+043E) inside a Latin name.
    ['jоhn@gmail.com', /mixes scripts/],
    ['user@gооgle.com', /domain label mixes scripts/],
    ['иван@mail.ru', /non-ASCII local part/],
    ['ｊｏｈｎ@gmail.com', /non-ASCII local part/],
    ['jo\u200bhn@gmail.com', /invisible/],
    ['jo\u202ehn@gmail.com', /bidirectional/],
    ['user@ex\u00adample.com', /invisible/],
    ['jo\u0000hn@gmail.com', /control/],
    ['jo\ud800hn@gmail.com', /surrogate/],
  ])('%j', (input, detail) => {
    const result = parseEmail(input);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.reason).toBe('invalid_email');
      expect(result.detail).toMatch(detail);
    }
  });

  it('rejects a 300-character address', () => {
    const input = `${'a'.repeat(60)}@${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(52)}.com`;
    expect(input).toHaveLength(300);
    expect(parseEmail(input)).toMatchObject({ ok: false, detail: expect.stringMatching(/longer than 254/) });
  });
});

describe('canonicalEmail', () => {
  it.each([
    ['J.o.h.n+x@googlemail.com', 'john@gmail.com'],
    ['john@gmail.com', 'john@gmail.com'],
    ['John.Smith+news@outlook.com', 'john.smith@outlook.com'],
    ['j.doe+a@hotmail.co.uk', 'j.doe@hotmail.co.uk'],
    ['j.doe+a@live.com', 'j.doe@live.com'],
    ['basename-shopping@yahoo.com', 'basename@yahoo.com'],
    ['base-name-x@yahoo.co.jp', 'base@yahoo.co.jp'],
    ['Tim+apps@me.com', 'tim@icloud.com'],
    ['tim@mac.com', 'tim@icloud.com'],
    ['alice+x@fastmail.fm', 'alice@fastmail.fm'],
    ['shop@alice.fastmail.com', 'alice@fastmail.com'],
    ['alice.user+x@protonmail.com', 'alice.user@proton.me'],
    ['alice.user@pm.me', 'alice.user@proton.me'],
    ['First.Last+tag@Example.com', 'first.last@example.com'],
    ['first-last@example.com', 'first-last@example.com'],
    ['+tag@example.com', '+tag@example.com'],
    ['a.+x@example.com', 'a@example.com'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalEmail(parsed(input))).toBe(expected);
  });

  it('hashes the canonical form with sha256', () => {
    const canonical = canonicalEmail(parsed('J.o.h.n+x@googlemail.com'));
    expect(canonicalEmailHash(canonical)).toBe(
      '142d78e466cacab37c3751a6ba0d288ce40db609ce9c49617ea6b24665f1aa9c',
    );
    expect(canonicalEmailHash(canonical)).toBe(canonicalEmailHash(canonicalEmail(parsed('john@gmail.com'))));
  });
});

describe('emailPattern', () => {
  it.each([
    ['john.smith1987@example.com', 'johnsmith', 'a.a9', 'p:a.a9:johnsmit:4@example.com'],
    ['john.smith1987@gmail.com', 'johnsmith', 'a9', 'p:a9:johnsmit:4@gmail.com'],
    ['user8812@example.com', 'user', 'a9', 'p:a9:user:4@example.com'],
    ['user_2024_01@example.com', 'user', 'a_9_9', 'p:a_9_9:user:2@example.com'],
    ['xk29fj3@example.com', 'xk29fj', 'a9a9', 'r:a2d2a2d1@example.com'],
    ['J.o.h.n+x@googlemail.com', 'john', 'a', 'p:a:john:0@gmail.com'],
  ])('%s', (input, base, shape, key) => {
    expect(emailPattern(parsed(input))).toEqual({ base, shape, key });
  });

  it('groups sequential and templated names, not different people', () => {
    const key = (input: string) => emailPattern(parsed(input)).key;
    expect(key('user8812@example.com')).toBe(key('user8813@example.com'));
    expect(key('xk29fj3@example.com')).toBe(key('pq81md4@example.com'));
    expect(key('user8812@example.com')).not.toBe(key('user8812@example.org'));
    expect(key('john.smith1987@example.com')).not.toBe(key('mary.jones1987@example.com'));
  });
});

describe('provider classification', () => {
  it.each([
    ['gmail.com', true, false],
    ['googlemail.com', true, false],
    ['hotmail.co.uk', true, false],
    ['yahoo.co.jp', true, false],
    ['proton.me', true, false],
    ['qq.com', true, false],
    ['mail.ru', true, false],
    ['example.com', false, false],
    ['hotmail.red', false, false],
    ['duck.com', false, true],
    ['simplelogin.co', false, true],
    ['addy.io', false, true],
    ['someone.anonaddy.me', false, true],
    ['mozmail.com', false, true],
    ['privaterelay.appleid.com', false, true],
    ['mailinator.com', false, false],
  ])('%s: public %s, relay %s', (domain, isPublic, isRelay) => {
    expect(isPublicProvider(domain)).toBe(isPublic);
    expect(isPrivacyRelay(domain)).toBe(isRelay);
  });
});

describe('properties', () => {
  it('parseEmail never throws', () => {
    const anyText = fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary' }),
      fc.string({ unit: 'grapheme' }),
      // Lone surrogates and every other UTF-16 unit, which 'binary' never produces unpaired.
      fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }),
    );
    const addressLike = fc.tuple(anyText, anyText).map(([l, d]) => `${l}@${d}`);
    fc.assert(
      fc.property(fc.oneof(anyText, addressLike), (input) => {
        const result = parseEmail(input);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('canonicalEmail is idempotent and yields a parseable address', () => {
    const atom = fc.stringMatching(/^[a-zA-Z0-9+_-]{1,8}$/);
    const local = fc.array(atom, { minLength: 1, maxLength: 4 }).map((atoms) => atoms.join('.'));
    // biome-ignore format: keep the domain list compact
    const domain = fc.constantFrom(
      'gmail.com', 'googlemail.com', 'outlook.com', 'hotmail.fr', 'yahoo.com', 'me.com', 'pm.me',
      'fastmail.com', 'box.fastmail.com', 'example.com', 'bücher.de',
    );
    const address = fc.oneof(
      fc.tuple(local, domain).map(([l, d]) => `${l}@${d}`),
      fc.emailAddress(),
    );
    fc.assert(
      fc.property(address, (input) => {
        const first = parseEmail(input);
        if (!first.ok) return;
        const canonical = canonicalEmail(first.value);
        const again = parseEmail(canonical);
        expect(again.ok).toBe(true);
        if (again.ok) expect(canonicalEmail(again.value)).toBe(canonical);
      }),
      { numRuns: 2000 },
    );
  });
});
