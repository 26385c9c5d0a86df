import { describe, expect, it } from 'vitest';
import { createDisposableChecker, disposableListStats } from '../../src/signals/disposable.ts';

describe('createDisposableChecker with the bundled lists', () => {
  const checker = createDisposableChecker();

  it.each([
    // In all three packages.
    ['mailinator.com', true],
    ['sub.mailinator.com', true],
    ['MAILINATOR.COM.', true],
    ['yopmail.com', true],
    ['guerrillamail.com', true],
    ['10minutemail.com', true],
    // acmetoy.com is only in disposable-email-domains' wildcard list.
    ['acmetoy.com', true],
    ['anything.acmetoy.com', true],
    // Only in mailchecker.
    ['0-attorney.com', true],
    // Only in disposable-email-domains-js.
    ['0-mailer.dynv6.net', true],
    // mailchecker lists it in Unicode ("gmaıl", dotless i); it must match in either form.
    ['gmaıl.net', true],
    ['xn--gmal-nza.net', true],
    // Privacy relays are listed by mailchecker but are persistent mailboxes.
    ['duck.com', false],
    ['simplelogin.com', false],
    ['anonaddy.com', false],
    ['someone.anonaddy.com', false],
    ['mozmail.com', false],
    ['relay.firefox.com', false],
    ['passmail.net', false],
    // keemail.me is Tuta's, listed by mailchecker.
    ['keemail.me', false],
    ['gmail.com', false],
    ['outlook.com', false],
    // edu.pl sits in disposable-email-domains; with parent matching it would flag Polish universities.
    ['student.uw.edu.pl', false],
    ['example.com', false],
    ['', false],
    ['not a domain', false],
  ])('%s → %s', (domain, expected) => {
    expect(checker.isDisposable(domain)).toBe(expected);
  });

  it('merges the lists into one set of roughly 150k domains', () => {
    const stats = disposableListStats();
    expect(checker.size).toBe(stats.size);
    expect(stats.size).toBeGreaterThan(150_000);
    expect(stats.sources['disposable-email-domains']).toBeGreaterThan(120_000);
    expect(stats.sources['disposable-email-domains/wildcard']).toBeGreaterThan(300);
    expect(stats.sources['disposable-email-domains-js']).toBeGreaterThan(8_000);
    expect(stats.sources.mailchecker).toBeGreaterThan(50_000);
    expect(stats.droppedSuffixLike).toEqual(expect.arrayContaining(['edu.pl', 'nom.za']));
  });
});

describe('operator rules', () => {
  it('extraAllow overrides the lists, for subdomains too', () => {
    const checker = createDisposableChecker({ extraAllow: ['mailinator.com'] });
    expect(checker.isDisposable('mailinator.com')).toBe(false);
    expect(checker.isDisposable('team.mailinator.com')).toBe(false);
    expect(checker.isDisposable('yopmail.com')).toBe(true);
  });

  it('extraBlock wins over everything, including allow, relays and public providers', () => {
    const checker = createDisposableChecker({
      extraBlock: ['example.com', 'duck.com', '@Gmail.com', 'mailinator.com'],
      extraAllow: ['mailinator.com'],
    });
    expect(checker.isDisposable('example.com')).toBe(true);
    expect(checker.isDisposable('mx.example.com')).toBe(true);
    expect(checker.isDisposable('duck.com')).toBe(true);
    expect(checker.isDisposable('gmail.com')).toBe(true);
    expect(checker.isDisposable('mailinator.com')).toBe(true);
    expect(checker.isDisposable('example.org')).toBe(false);
  });

  it('accepts IDN rules and a bare TLD, and counts new blocks in size', () => {
    const base = createDisposableChecker().size;
    const checker = createDisposableChecker({ extraBlock: ['bücher.de', 'zip'] });
    expect(checker.isDisposable('xn--bcher-kva.de')).toBe(true);
    expect(checker.isDisposable('files.zip')).toBe(true);
    expect(checker.size).toBe(base + 2);
  });

  it('refuses a rule that is not a domain', () => {
    expect(() => createDisposableChecker({ extraBlock: ['not a domain'] })).toThrow(TypeError);
    expect(() => createDisposableChecker({ extraAllow: ['https://example.com/'] })).toThrow(TypeError);
  });
});
