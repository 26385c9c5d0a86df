import { describe, expect, it } from 'vitest';
import {
  compileGlob,
  compileRules,
  normaliseRuleValue,
  type RuleKind,
  type RuleSubject,
  type StoredRule,
} from '../../src/rules/service.ts';

const AT = Date.parse('2030-01-01T00:00:00Z');
let seq = 0;
const rule = (kind: RuleKind, value: string, expiresAt: Date | null = null): StoredRule => ({
  id: `rul_${String(++seq).padStart(22, '0')}`,
  kind,
  mode: 'block',
  value,
  expiresAt,
});
const matches = (r: StoredRule, subject: RuleSubject, at = AT) =>
  compileRules([r]).match(subject, at).length === 1;

describe('cidr rules', () => {
  it.each([
    ['203.0.113.0/24', '203.0.113.7', true],
    ['203.0.113.0/24', '203.0.114.7', false],
    ['203.0.113.7/32', '203.0.113.7', true],
    ['0.0.0.0/0', '8.8.8.8', true],
    ['0.0.0.0/0', '2001:db8::1', false],
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['2001:db8::1/128', '2001:0db8:0:0:0:0:0:1', true],
    ['203.0.113.0/24', '::ffff:203.0.113.9', true],
    ['203.0.113.0/24', 'not an address', false],
  ])('%s against %s → %s', (cidr, ip, expected) => {
    expect(matches(rule('cidr', cidr), { ip })).toBe(expected);
  });
});

describe('asn rules', () => {
  it('match the exact number only', () => {
    expect(matches(rule('asn', '64500'), { asn: 64500 })).toBe(true);
    expect(matches(rule('asn', '64500'), { asn: 64501 })).toBe(false);
  });
});

describe('email_domain rules', () => {
  it.each([
    ['example.com', 'example.com', true],
    ['example.com', 'mail.example.com', true],
    ['example.com', 'a.b.example.com', true],
    ['example.com', 'Mail.EXAMPLE.com', true],
    ['example.com', 'notexample.com', false],
    ['example.com', 'example.com.evil.net', false],
    ['mail.example.com', 'example.com', false],
    ['ru', 'mail.ru', true],
  ])('%s against %s → %s', (domain, emailDomain, expected) => {
    expect(matches(rule('email_domain', domain), { emailDomain })).toBe(expected);
  });
});

describe('email_pattern rules', () => {
  it.each([
    ['user*@example.com', 'user', 'example.com', true],
    ['user*@example.com', 'user123', 'example.com', true],
    ['user*@example.com', 'User99', 'EXAMPLE.com', true],
    ['user*@example.com', 'xuser1', 'example.com', false],
    ['user*@example.com', 'user1', 'example.com.evil.net', false],
    ['*@*.ru', 'anyone', 'mail.ru', true],
    ['*@*.ru', 'anyone', 'mail.ru.com', false],
    ['*@*.ru', 'anyone', 'ru', false],
    ['bot??@x.com', 'bot12', 'x.com', true],
    ['bot??@x.com', 'bot1', 'x.com', false],
    ['bot??@x.com', 'bot123', 'x.com', false],
    ['ab*ba@x.com', 'aba', 'x.com', false],
    ['ab*ba@x.com', 'abba', 'x.com', true],
    ['*a*b*c*@x.com', 'zzaqqbqqc', 'x.com', true],
    ['*a*b*c*@x.com', 'zzcqqbqqa', 'x.com', false],
  ])('%s against %s@%s → %s', (pattern, emailLocal, emailDomain, expected) => {
    expect(matches(rule('email_pattern', pattern), { emailLocal, emailDomain })).toBe(expected);
  });

  it('treats regular-expression metacharacters literally', () => {
    const r = rule('email_pattern', 'a.b+c*@x.com');
    expect(matches(r, { emailLocal: 'a.b+c', emailDomain: 'x.com' })).toBe(true);
    expect(matches(r, { emailLocal: 'a.b+cdef', emailDomain: 'x.com' })).toBe(true);
    expect(matches(r, { emailLocal: 'aXb+c', emailDomain: 'x.com' })).toBe(false);
    expect(matches(r, { emailLocal: 'a.bbc', emailDomain: 'x.com' })).toBe(false);
    expect(matches(r, { emailLocal: 'a.b+c', emailDomain: 'xycom' })).toBe(false);
    for (const literal of ['(a)|[b]{2}^$\\/', 'x$', '^x']) {
      expect(compileGlob(literal).test(literal)).toBe(true);
      expect(compileGlob(literal).test(`${literal}z`)).toBe(false);
    }
  });

  it('matches patterns starting with p: or r: against the pattern key, not the address', () => {
    const r = rule('email_pattern', 'r:a2d4@*');
    expect(matches(r, { emailLocal: 'xk1234', emailDomain: 'x.com', emailPatternKey: 'r:a2d4@x.com' })).toBe(
      true,
    );
    expect(matches(r, { emailLocal: 'r:a2d4', emailDomain: 'x.com' })).toBe(false);
    const onAddress = rule('email_pattern', 'p*@example.com');
    expect(
      matches(onAddress, {
        emailLocal: 'alice',
        emailDomain: 'example.com',
        emailPatternKey: 'p:a:alice:0@example.com',
      }),
    ).toBe(false);
  });

  it('stays fast on patterns that make naive regular expressions backtrack', () => {
    const re = compileGlob(`${'*a'.repeat(40)}*b`);
    const started = performance.now();
    expect(re.test('a'.repeat(5000))).toBe(false);
    expect(performance.now() - started).toBeLessThan(200);
  });
});

describe('the index', () => {
  it('returns every matching rule across kinds, with id, kind, mode and value', () => {
    const rules = [
      rule('cidr', '198.51.100.0/24'),
      rule('asn', '64500'),
      { ...rule('email_domain', 'example.com'), mode: 'allow' as const },
      rule('email_pattern', '*@mail.example.com'),
      rule('email_domain', 'other.org'),
    ];
    const found = compileRules(rules).match(
      { ip: '198.51.100.4', asn: 64500, emailLocal: 'bob', emailDomain: 'mail.example.com' },
      AT,
    );
    expect(found).toEqual([
      { id: rules[0]!.id, kind: 'cidr', mode: 'block', value: '198.51.100.0/24' },
      { id: rules[1]!.id, kind: 'asn', mode: 'block', value: '64500' },
      { id: rules[2]!.id, kind: 'email_domain', mode: 'allow', value: 'example.com' },
      { id: rules[3]!.id, kind: 'email_pattern', mode: 'block', value: '*@mail.example.com' },
    ]);
  });

  it('ignores a rule from the instant it expires', () => {
    const r = rule('asn', '64500', new Date(AT));
    expect(matches(r, { asn: 64500 }, AT - 1)).toBe(true);
    expect(matches(r, { asn: 64500 }, AT)).toBe(false);
  });

  it('matches nothing for an empty subject', () => {
    expect(compileRules([rule('cidr', '0.0.0.0/0'), rule('email_pattern', '*@*')]).match({}, AT)).toEqual([]);
  });
});

describe('normaliseRuleValue', () => {
  it.each<[RuleKind, string | number, string]>([
    ['cidr', '203.0.113.0/24', '203.0.113.0/24'],
    ['cidr', ' 203.0.113.7 ', '203.0.113.7/32'],
    ['cidr', '2001:DB8::', '2001:db8::/128'],
    ['cidr', '2001:db8:0::/48', '2001:db8::/48'],
    ['asn', 'AS64500', '64500'],
    ['asn', 'as64500', '64500'],
    ['asn', '64500', '64500'],
    ['asn', 64500, '64500'],
    ['asn', 4294967295, '4294967295'],
    ['email_domain', 'Example.COM', 'example.com'],
    ['email_domain', 'example.com.', 'example.com'],
    ['email_domain', 'bücher.de', 'xn--bcher-kva.de'],
    ['email_pattern', 'User*@Example.com', 'user*@example.com'],
  ])('%s %s → %s', (kind, raw, value) => {
    expect(normaliseRuleValue(kind, raw)).toEqual({ ok: true, value });
  });

  it.each<[RuleKind, string | number, RegExp]>([
    ['cidr', '10.1.2.3/8', /did you mean 10\.0\.0\.0\/8/],
    ['cidr', '10.0.0.0/33', /IPv4 or IPv6/],
    ['cidr', 'example.com', /IPv4 or IPv6/],
    ['cidr', 64500, /string/],
    ['asn', 0, /AS number/],
    ['asn', 4294967296, /AS number/],
    ['asn', 1.5, /AS number/],
    ['asn', 'AS-1', /AS number/],
    ['asn', 'ASN12', /AS number/],
    ['email_domain', '*.example.com', /subdomains/],
    ['email_domain', 'bob@example.com', /not an address/],
    ['email_domain', 'exa_mple.com', /host name/],
    ['email_domain', 'a..b', /label/],
    ['email_domain', '-a.com', /label/],
    ['email_domain', '203.0.113.7', /cidr/],
    ['email_domain', '', /host name/],
    ['email_pattern', '', /empty/],
    ['email_pattern', '*?*', /literal/],
    ['email_pattern', 'a b@x.com', /printable ASCII/],
    ['email_pattern', 'é*@x.com', /printable ASCII/],
    ['email_pattern', `${'a'.repeat(201)}`, /at most 200/],
  ])('%s %s is refused', (kind, raw, message) => {
    const result = normaliseRuleValue(kind, raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(message);
  });
});
