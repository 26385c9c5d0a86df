import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import type { Country } from './networks.ts';
import type { Rng } from './rng.ts';

// Names, addresses and phone numbers as people and farms make them.

// biome-ignore format: packed lists read better than one name a line
const FIRST = [
  'olivia', 'liam', 'emma', 'noah', 'amelia', 'oliver', 'sofia', 'elijah', 'chloe', 'lucas', 'maya', 'mateo',
  'zoe', 'henry', 'aria', 'theo', 'nora', 'jack', 'ivy', 'leo', 'ruby', 'omar', 'hana', 'yusuf', 'ines',
  'marta', 'tomas', 'priya', 'kenji', 'lena', 'arjun', 'fatima', 'wei', 'mei', 'sven', 'ingrid', 'pierre',
  'camille', 'giulia', 'marco', 'joao', 'beatriz', 'dmitri', 'anya', 'kwame', 'amara', 'diego', 'lucia',
  'hiro', 'yuki', 'sean', 'aoife', 'rhys', 'cerys', 'finn', 'freya', 'max', 'lea', 'jonas', 'mia', 'ali',
  'sara', 'david', 'rachel', 'samuel', 'grace', 'daniel', 'hannah', 'james', 'emily', 'michael', 'laura',
  'chris', 'anna', 'tom', 'kate', 'ben', 'lucy', 'raj', 'nisha', 'jo', 'al', 'ed', 'bea',
];
// biome-ignore format: packed lists read better than one name a line
const LAST = [
  'smith', 'garcia', 'nguyen', 'kowalski', 'oconnor', 'fischer', 'rossi', 'tanaka', 'dubois', 'silva',
  'ahmed', 'novak', 'jensen', 'murphy', 'lopez', 'schmidt', 'kim', 'haddad', 'berg', 'moreau', 'costa',
  'walsh', 'ivanova', 'mehta', 'sato', 'okafor', 'lindqvist', 'papadopoulos', 'horvat', 'yilmaz', 'brown',
  'taylor', 'wilson', 'davies', 'evans', 'thomas', 'roberts', 'johnson', 'williams', 'martin', 'bernard',
  'muller', 'weber', 'wagner', 'becker', 'hoffmann', 'schulz', 'romano', 'ricci', 'fernandez', 'martinez',
  'sanchez', 'perez', 'gomez', 'pereira', 'santos', 'oliveira', 'chen', 'wang', 'li', 'zhang', 'liu',
  'patel', 'shah', 'singh', 'kumar', 'khan', 'ali', 'hussain', 'obi', 'mensah', 'van-dijk', 'de-vries',
  'bakker', 'janssen', 'peeters', 'nielsen', 'hansen', 'larsen', 'andersen', 'johansson', 'karlsson',
];

export interface PersonName {
  first: string;
  last: string;
}

export function personName(rng: Rng): PersonName {
  return { first: rng.pick(FIRST), last: rng.pick(LAST) };
}

/** How a person spells their own mailbox: dots, initials, years, and sometimes a +tag of their own. */
export function personLocal(rng: Rng, name: PersonName): string {
  const last = name.last.replaceAll('-', '');
  const yy = String(rng.int(60, 105) % 100).padStart(2, '0');
  const local = rng.weighted<() => string>([
    [() => `${name.first}.${last}`, 30],
    [() => `${name.first}${last}`, 14],
    [() => `${name.first}_${last}`, 4],
    [() => `${name.first[0]}${last}`, 10],
    [() => `${name.first}.${last}${yy}`, 9],
    [() => `${name.first}${rng.int(1960, 2006)}`, 8],
    [() => `${name.first}.${rng.pick('abcdehjklmnprstw'.split(''))}.${last}`, 5],
    [() => `${last}.${name.first}`, 5],
    [() => `${name.first}${last.slice(0, 3)}${rng.int(1, 99)}`, 5],
  ])();
  return rng.chance(0.07)
    ? `${local}+${rng.pick(['api', 'work', 'dev', 'signup', 'news', 'ai', 'tools'])}`
    : local;
}

/** Mailbox providers people use, with the share of people on each. */
export const PERSON_DOMAINS: ReadonlyArray<readonly [string, number]> = [
  ['gmail.com', 34],
  ['outlook.com', 7],
  ['hotmail.com', 5],
  ['yahoo.com', 6],
  ['icloud.com', 6],
  ['proton.me', 3],
  ['gmx.de', 2],
  ['web.de', 2],
  ['orange.fr', 2],
  ['btinternet.com', 2],
  ['comcast.net', 2],
  ['live.co.uk', 2],
  ['googlemail.com', 1],
  ['fastmail.com', 1],
  ['hey.com', 1],
  ['duck.com', 1],
];

/**
 * The form the big providers deliver to: Gmail ignores dots, most providers a +tag. Two people
 * must never share it, or the simulation would be testing a signup it made impossible itself.
 */
export function mailbox(email: string): string {
  const at = email.lastIndexOf('@');
  let local = email.slice(0, at).toLowerCase();
  let domain = email.slice(at + 1).toLowerCase();
  if (domain === 'googlemail.com') domain = 'gmail.com';
  const plus = local.indexOf('+');
  if (plus >= 0) local = local.slice(0, plus);
  if (domain === 'gmail.com') local = local.replaceAll('.', '');
  return `${local}@${domain}`;
}

/** Keeps e-mail addresses unique by mailbox across a whole population. */
export class MailboxRegistry {
  private readonly taken = new Set<string>();

  /** The address, or a variant with digits when that mailbox is someone else's. */
  claim(rng: Rng, local: string, domain: string): string {
    let candidate = `${local}@${domain}`;
    for (let i = 0; this.taken.has(mailbox(candidate)); i++) {
      const plus = local.indexOf('+');
      const base = plus >= 0 ? local.slice(0, plus) : local;
      const tag = plus >= 0 ? local.slice(plus) : '';
      candidate = `${base}${rng.int(2, 99 + i * 100)}${tag}@${domain}`;
    }
    this.taken.add(mailbox(candidate));
    return candidate;
  }

  has(email: string): boolean {
    return this.taken.has(mailbox(email));
  }
}

const MOBILE_PLANS: Record<Country, (rng: Rng) => string> = {
  us: (r) =>
    `+1${r.pick([201, 206, 212, 303, 312, 404, 415, 512, 617, 646, 702, 718])}${r.int(200, 989)}${digits(r, 4)}`,
  ca: (r) => `+1${r.pick([416, 514, 604, 613, 780])}${r.int(200, 989)}${digits(r, 4)}`,
  gb: (r) => `+447${r.pick([4, 5, 7, 8, 9])}${digits(r, 8)}`,
  de: (r) => `+49${r.pick([151, 152, 160, 170, 176])}${digits(r, 8)}`,
  fr: (r) => `+33${r.pick([6, 7])}${digits(r, 8)}`,
  es: (r) => `+346${digits(r, 8)}`,
  nl: (r) => `+316${digits(r, 8)}`,
  au: (r) => `+614${digits(r, 8)}`,
  it: (r) => `+393${digits(r, 9)}`,
  br: (r) => `+55${r.pick([11, 21, 31])}9${digits(r, 8)}`,
  in: (r) => `+91${r.pick([9, 8, 7])}${digits(r, 9)}`,
};

function digits(rng: Rng, n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += String(rng.int(0, 9));
  return out;
}

const ACCEPTED = new Set(['MOBILE', 'FIXED_LINE_OR_MOBILE']);

/** A number of a mobile plan in the country that the numbering plan confirms is a mobile. */
export function mobileNumber(rng: Rng, country: Country, taken: Set<string>): string {
  const plan = MOBILE_PLANS[country];
  for (let attempt = 0; attempt < 50; attempt++) {
    const candidate = plan(rng);
    const parsed = parsePhoneNumberFromString(candidate);
    if (!parsed?.isValid() || !ACCEPTED.has(parsed.getType() ?? '') || taken.has(parsed.number)) continue;
    taken.add(parsed.number);
    return parsed.number;
  }
  // +44 7400 is an allocated UK mobile range: a safe fallback when a plan keeps missing.
  for (;;) {
    const candidate = `+447400${digits(rng, 6)}`;
    if (!taken.has(candidate)) {
      taken.add(candidate);
      return candidate;
    }
  }
}

/** Numbers from VoIP ranges (UK 056, French 09): cheap, disposable, and typed VOIP by the plan. */
export function voipNumber(rng: Rng, sequence: number): string {
  return rng.chance(0.6)
    ? `+4456${String(12_340_000 + sequence).padStart(8, '0')}`
    : `+33948${String(120_000 + sequence).padStart(6, '0')}`;
}

/** A block of consecutive US numbers bought together. */
export function sequentialNumber(base: number, sequence: number): string {
  return `+1206710${String(base + sequence).padStart(4, '0')}`;
}
