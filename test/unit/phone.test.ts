import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ALLOWED_PHONE_TYPES,
  type PhoneType,
  parsePhone,
  phonePrefix,
} from '../../src/signals/phone.ts';

const defaults = { allowedTypes: DEFAULT_ALLOWED_PHONE_TYPES };

describe('parsePhone with the default types', () => {
  it.each([
    ['+447400123456', '+447400123456', 'GB', 'MOBILE'],
    ['+44 7400 123456', '+447400123456', 'GB', 'MOBILE'],
    ['+44 (0) 7400-123456', '+447400123456', 'GB', 'MOBILE'],
    // Full-width digits and plus sign from an IME.
    ['＋４４７４００１２３４５６', '+447400123456', 'GB', 'MOBILE'],
    // US numbers are never split into mobile and fixed line.
    ['+1 415 555 2671', '+14155552671', 'US', 'FIXED_LINE_OR_MOBILE'],
    ['+33 6 12 34 56 78', '+33612345678', 'FR', 'MOBILE'],
    ['+49 170 1234567', '+491701234567', 'DE', 'MOBILE'],
    // +44 7624 is the Isle of Man, not GB.
    ['+447624123456', '+447624123456', 'IM', 'MOBILE'],
  ])('%s is accepted', (input, e164, country, type) => {
    expect(parsePhone(input, defaults)).toEqual({ ok: true, e164, country, type });
  });

  it.each([
    ['+445612345678', 'VOIP'],
    ['+33892123456', 'PREMIUM_RATE'],
    ['+33800123456', 'TOLL_FREE'],
    ['+33939123456', 'VOIP'],
    ['+33123456789', 'FIXED_LINE'],
    ['+18005550199', 'TOLL_FREE'],
    ['+80012345678', 'TOLL_FREE'],
    ['+88213400000', 'VOIP'],
  ])('%s is refused as %s', (input, type) => {
    expect(parsePhone(input, defaults)).toEqual({
      ok: false,
      reason: 'phone_type_not_allowed',
      detail: `${type} numbers are not accepted`,
      e164: input,
    });
  });

  it.each([
    ['', /empty/],
    ['07400123456', /international format/],
    ['00447400123456', /international format/],
    ['+44 7400 123456 ext. 12', /only digits/],
    ['+447400123456;ext=1', /only digits/],
    ['call +447400123456', /international format/],
    ['+4474001234567', /not a valid number/],
    ['+447700900123', /not a valid number/],
    ['+0123', /not a phone number/],
    [`+44${'1'.repeat(60)}`, /too long/],
  ])('%j is invalid', (input, detail) => {
    const result = parsePhone(input, defaults);
    expect(result).toMatchObject({ ok: false, reason: 'invalid_phone' });
    if (!result.ok) expect(result.detail).toMatch(detail);
  });

  it('defaults to MOBILE and FIXED_LINE_OR_MOBILE when no options are given', () => {
    expect(DEFAULT_ALLOWED_PHONE_TYPES).toEqual(['MOBILE', 'FIXED_LINE_OR_MOBILE']);
    expect(parsePhone('+447400123456')).toMatchObject({ ok: true, type: 'MOBILE' });
    expect(parsePhone('+445612345678')).toMatchObject({ ok: false, reason: 'phone_type_not_allowed' });
  });
});

describe('parsePhone options', () => {
  it('accepts a refused type once it is allowed explicitly', () => {
    const allowedTypes: PhoneType[] = [...DEFAULT_ALLOWED_PHONE_TYPES, 'VOIP'];
    expect(parsePhone('+445612345678', { allowedTypes })).toEqual({
      ok: true,
      e164: '+445612345678',
      country: 'GB',
      type: 'VOIP',
    });
    // Non-geographic: no country.
    expect(parsePhone('+88213400000', { allowedTypes })).toMatchObject({ ok: true, country: null });
  });

  it('applies allow and deny lists of countries', () => {
    const allowGb = { ...defaults, allowCountries: ['gb'] };
    expect(parsePhone('+447400123456', allowGb)).toMatchObject({ ok: true });
    expect(parsePhone('+33612345678', allowGb)).toEqual({
      ok: false,
      reason: 'phone_country_not_allowed',
      detail: 'country FR',
      e164: '+33612345678',
    });
    expect(parsePhone('+447624123456', allowGb)).toMatchObject({ reason: 'phone_country_not_allowed' });
    const voipAllowGb = { allowedTypes: ['VOIP'] as PhoneType[], allowCountries: ['GB'] };
    expect(parsePhone('+88213400000', voipAllowGb)).toMatchObject({
      reason: 'phone_country_not_allowed',
      detail: 'non-geographic number (+882)',
    });
    const denyFr = { ...defaults, denyCountries: ['FR'] };
    expect(parsePhone('+33612345678', denyFr)).toMatchObject({ reason: 'phone_country_not_allowed' });
    expect(parsePhone('+447400123456', denyFr)).toMatchObject({ ok: true });
  });

  it('refuses every type with an empty allow list', () => {
    expect(parsePhone('+447400123456', { allowedTypes: [] })).toMatchObject({
      reason: 'phone_type_not_allowed',
    });
  });
});

describe('phonePrefix', () => {
  it.each([
    ['+447400123456', 2, '+4474001234'],
    ['+447400123456', 0, '+447400123456'],
    ['+14155552671', 4, '+1415555'],
    ['+447400123456', 50, '+4'],
  ])('%s minus %i digits → %s', (e164, dropped, expected) => {
    expect(phonePrefix(e164, dropped)).toBe(expected);
  });

  it('links consecutive numbers with the default of two digits', () => {
    expect(phonePrefix('+447400123401')).toBe(phonePrefix('+447400123499'));
    expect(phonePrefix('+447400123401')).not.toBe(phonePrefix('+447400123501'));
  });

  it('rejects what is not E.164', () => {
    expect(() => phonePrefix('07400123456')).toThrow(RangeError);
    expect(() => phonePrefix('+447400123456', -1)).toThrow(RangeError);
  });
});
