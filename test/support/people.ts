import { randomInt } from 'node:crypto';

// Human-looking, unique e-mail local parts for tests. Programmatic names (user1234, random
// letters) would share one velocity pattern and trip the limits the tests are not about.

const FIRST = [
  'olivia',
  'liam',
  'emma',
  'noah',
  'amelia',
  'oliver',
  'sofia',
  'elijah',
  'chloe',
  'lucas',
  'maya',
  'mateo',
  'zoe',
  'henry',
  'aria',
  'theo',
  'nora',
  'jack',
  'ivy',
  'leo',
  'ruby',
  'omar',
  'hana',
  'yusuf',
  'ines',
  'marta',
  'tomas',
  'priya',
  'kenji',
  'lena',
];
const LAST = [
  'smith',
  'garcia',
  'nguyen',
  'kowalski',
  'oconnor',
  'fischer',
  'rossi',
  'tanaka',
  'dubois',
  'silva',
  'ahmed',
  'novak',
  'jensen',
  'murphy',
  'lopez',
  'schmidt',
  'kim',
  'haddad',
  'berg',
  'moreau',
  'costa',
  'walsh',
  'ivanova',
  'mehta',
  'sato',
  'okafor',
  'lindqvist',
  'papadopoulos',
  'horvat',
  'yilmaz',
];

let next = randomInt(0, FIRST.length * LAST.length);

/** `first.last` plus a year-like suffix: a new (first, last) pair each call, unique across a run. */
export function personLocal(): string {
  next = (next + 1) % (FIRST.length * LAST.length);
  return `${FIRST[next % FIRST.length]}.${LAST[Math.floor(next / FIRST.length)]}${randomInt(1000, 100000)}`;
}
