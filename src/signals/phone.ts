// The `max` metadata is the only build that types numbers outside +1 and +44 (the default build
// answers undefined for FR or DE, and the `mobile` build calls everything but mobiles invalid).
import { type PhoneNumberType, parsePhoneNumberFromString } from 'libphonenumber-js/max';

/**
 * libphonenumber's number types, plus UNKNOWN for a valid number it cannot type. With the max metadata
 * every plan has types and validity means matching one, so UNKNOWN stays a guard for future metadata.
 */
export type PhoneType = PhoneNumberType | 'UNKNOWN';

/** Every type libphonenumber gives a valid number, in its own order. */
export const PHONE_TYPES = [
  'MOBILE',
  'FIXED_LINE',
  'FIXED_LINE_OR_MOBILE',
  'VOIP',
  'TOLL_FREE',
  'PREMIUM_RATE',
  'SHARED_COST',
  'PERSONAL_NUMBER',
  'PAGER',
  'UAN',
  'VOICEMAIL',
] as const satisfies readonly PhoneNumberType[];

/**
 * Only numbers a person keeps and can receive a code on. US/CA numbers are always
 * FIXED_LINE_OR_MOBILE (the plan does not separate them), so US VoIP needs a carrier lookup.
 */
export const DEFAULT_ALLOWED_PHONE_TYPES: readonly PhoneType[] = Object.freeze([
  'MOBILE',
  'FIXED_LINE_OR_MOBILE',
]);

export interface ParsePhoneOptions {
  allowedTypes: readonly PhoneType[];
  /** ISO 3166-1 alpha-2. When set, non-geographic numbers (+800, +882...) are refused too. */
  allowCountries?: readonly string[];
  denyCountries?: readonly string[];
}

export type ParsePhoneResult =
  | { ok: true; e164: string; country: string | null; type: PhoneType }
  | { ok: false; reason: 'invalid_phone'; detail: string }
  | {
      ok: false;
      reason: 'phone_type_not_allowed' | 'phone_country_not_allowed';
      detail: string;
      /** The number is valid, only refused: kept with the attempt, where farms' numbers show up. */
      e164: string;
    };

const MAX_INPUT = 40;
// Letters are refused so that extensions ("ext. 12", ";ext=1") and text around the number never pass.
const INTERNATIONAL = /^\+[0-9 ().-]+$/;

function invalid(detail: string): ParsePhoneResult {
  return { ok: false, reason: 'invalid_phone', detail };
}

export function parsePhone(
  input: string,
  opts: ParsePhoneOptions = { allowedTypes: DEFAULT_ALLOWED_PHONE_TYPES },
): ParsePhoneResult {
  if (typeof input !== 'string') return invalid('not a string');
  // NFKC folds full-width digits and plus signs that phone keyboards and IMEs produce.
  const s = input.normalize('NFKC').trim().replace(/\s+/g, ' ');
  if (s.length === 0) return invalid('empty');
  if (s.length > MAX_INPUT) return invalid('too long');
  if (!s.startsWith('+')) return invalid('must be in international format: + and the country code');
  if (!INTERNATIONAL.test(s))
    return invalid('only digits, spaces, dots, dashes and parentheses may follow the +');

  const parsed = parsePhoneNumberFromString(s, { extract: false });
  if (!parsed) return invalid('not a phone number');
  if (parsed.ext) return invalid('extensions are not accepted');
  if (!parsed.isValid()) return invalid(`${parsed.number} is not a valid number in its numbering plan`);

  const country = parsed.country ?? null;
  const allow = opts.allowCountries?.map((c) => c.trim().toUpperCase());
  const deny = opts.denyCountries?.map((c) => c.trim().toUpperCase());
  if (allow && allow.length > 0 && (country === null || !allow.includes(country))) {
    return {
      ok: false,
      reason: 'phone_country_not_allowed',
      detail:
        country === null ? `non-geographic number (+${parsed.countryCallingCode})` : `country ${country}`,
      e164: parsed.number,
    };
  }
  if (country !== null && deny?.includes(country)) {
    return {
      ok: false,
      reason: 'phone_country_not_allowed',
      detail: `country ${country}`,
      e164: parsed.number,
    };
  }

  const type: PhoneType = parsed.getType() ?? 'UNKNOWN';
  if (!opts.allowedTypes.includes(type)) {
    return {
      ok: false,
      reason: 'phone_type_not_allowed',
      detail: `${type} numbers are not accepted`,
      e164: parsed.number,
    };
  }
  return { ok: true, e164: parsed.number, country, type };
}

/**
 * The E.164 number without its last digits: numbers bought in bulk come in consecutive blocks, so
 * accounts sharing a prefix (100 numbers by default) are worth linking.
 */
export function phonePrefix(e164: string, digitsDropped = 2): string {
  if (!/^\+[1-9][0-9]{1,14}$/.test(e164)) throw new RangeError(`not an E.164 number: ${e164}`);
  if (!Number.isInteger(digitsDropped) || digitsDropped < 0) {
    throw new RangeError(`digitsDropped must be a non-negative integer, got ${digitsDropped}`);
  }
  const digits = e164.slice(1);
  return `+${digits.slice(0, Math.max(1, digits.length - digitsDropped))}`;
}
