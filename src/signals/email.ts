import { createHash } from 'node:crypto';
import { domainToASCII, domainToUnicode } from 'node:url';

export interface ParsedEmail {
  /** Local part as typed (ASCII only; case is kept, only the canonical form folds it). */
  local: string;
  /** Lowercase ASCII domain (punycode for IDNs): the form every list and rule matches on. */
  domain: string;
  /** The same domain in Unicode, for display. */
  domainUnicode: string;
  /** `local@domain` with the ASCII domain. */
  address: string;
}

export type ParseEmailResult =
  | { ok: true; value: ParsedEmail }
  | { ok: false; reason: 'invalid_email'; detail: string };

export interface EmailPattern {
  base: string;
  shape: string;
  key: string;
}

const MAX_LOCAL = 64;
const MAX_TOTAL = 254;
const MAX_DOMAIN = 253;
const MAX_LABEL = 63;
// Bounds the work done on hostile input before any real check: nothing this long can pass.
const MAX_INPUT = 1024;

const ATEXT = "[A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~]";
const DOT_ATOM = new RegExp(`^${ATEXT}+(?:\\.${ATEXT}+)*$`);
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
// domainToASCII percent-decodes and accepts `_`, `!`, `*`...; anything ASCII must already be LDH or a dot.
const ASCII_NON_LDH = /[^a-zA-Z0-9.\-\u{80}-\u{10ffff}]/u;
const NON_ASCII = /[\u{80}-\u{10ffff}]/u;

const CONTROL = /\p{Cc}/u;
// Format characters plus the invisible fillers and variation selectors that Unicode does not put in Cf
// but that render as nothing and so let two different strings look identical.
const INVISIBLE =
  /[\p{Cf}\u115f\u1160\u17b4\u17b5\u3164\uffa0]|\u034f|[\u180b-\u180f]|[\ufe00-\ufe0f]|[\u{e0100}-\u{e01ef}]/u;
const WHITESPACE = /\p{Z}/u;
const UNASSIGNED = /[\p{Cs}\p{Co}\p{Cn}]/u;

function unsafeCharacter(s: string): string | undefined {
  if (CONTROL.test(s)) return 'contains a control character';
  if (INVISIBLE.test(s)) return 'contains an invisible or bidirectional formatting character';
  if (WHITESPACE.test(s)) return 'contains whitespace';
  if (UNASSIGNED.test(s)) return 'contains an unassigned, private-use or unpaired surrogate character';
  return undefined;
}

const SCRIPTS: ReadonlyArray<readonly [string, RegExp]> = [
  ['Latin', /\p{Script=Latin}/u],
  ['Cyrillic', /\p{Script=Cyrillic}/u],
  ['Greek', /\p{Script=Greek}/u],
  ['Armenian', /\p{Script=Armenian}/u],
  ['Georgian', /\p{Script=Georgian}/u],
  ['Cherokee', /\p{Script=Cherokee}/u],
  ['Hebrew', /\p{Script=Hebrew}/u],
  ['Arabic', /\p{Script=Arabic}/u],
  ['Han', /\p{Script=Han}/u],
  ['Hiragana', /\p{Script=Hiragana}/u],
  ['Katakana', /\p{Script=Katakana}/u],
  ['Hangul', /\p{Script=Hangul}/u],
  ['Bopomofo', /\p{Script=Bopomofo}/u],
];
const NEUTRAL = /[\p{Script=Common}\p{Script=Inherited}]/u;
// UTS #39 "highly restrictive": one script, or Latin with the scripts CJK writing mixes anyway.
const ALLOWED_MIXES: ReadonlyArray<ReadonlySet<string>> = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];

function isMixedScript(s: string): boolean {
  const found = new Set<string>();
  for (const ch of s) {
    if (NEUTRAL.test(ch)) continue;
    found.add(SCRIPTS.find(([, re]) => re.test(ch))?.[0] ?? 'Other');
  }
  if (found.size <= 1) return false;
  return !ALLOWED_MIXES.some((mix) => [...found].every((script) => mix.has(script)));
}

function fail(detail: string): ParseEmailResult {
  return { ok: false, reason: 'invalid_email', detail };
}

/**
 * Non-ASCII local parts are refused outright: mainstream mailboxes do not issue them, delivering to
 * them needs SMTPUTF8 end to end, and there is no reliable way to fold look-alikes into one identity,
 * so accepting them would mostly open a door for duplicates that look like someone else.
 */
export function parseEmail(input: string): ParseEmailResult {
  if (typeof input !== 'string') return fail('not a string');
  const s = input.trim();
  if (s.length === 0) return fail('empty');
  if (s.length > MAX_INPUT) return fail(`longer than ${MAX_TOTAL} octets`);
  const unsafe = unsafeCharacter(s);
  if (unsafe) return fail(unsafe);

  const at = s.indexOf('@');
  if (at < 0) return fail('missing @');
  if (s.indexOf('@', at + 1) >= 0) return fail('more than one @ (quoted local parts are not accepted)');
  const local = s.slice(0, at);
  const rawDomain = s.slice(at + 1);

  if (local.length === 0) return fail('empty local part');
  if (NON_ASCII.test(local)) {
    return fail(
      isMixedScript(local)
        ? 'local part mixes scripts (look-alike characters)'
        : 'non-ASCII local part is not accepted',
    );
  }
  if (local.length > MAX_LOCAL) return fail(`local part longer than ${MAX_LOCAL} octets`);
  if (local.startsWith('"')) return fail('quoted local parts are not accepted');
  if (local.includes('(') || local.includes(')')) return fail('comments are not accepted');
  if (!DOT_ATOM.test(local)) return fail('local part is not a valid dot-atom');

  if (rawDomain.length === 0) return fail('empty domain');
  if (rawDomain.startsWith('[')) return fail('IP-literal domains are not accepted');
  if (ASCII_NON_LDH.test(rawDomain)) return fail('domain has characters other than letters, digits, - and .');
  const domain = domainToASCII(rawDomain);
  if (domain === '') return fail('domain is not a valid (internationalised) domain name');
  if (domain.length > MAX_DOMAIN) return fail(`domain longer than ${MAX_DOMAIN} octets`);
  const labels = domain.split('.');
  if (labels.length < 2) return fail('domain has no dot');
  for (const label of labels) {
    if (label.length === 0) return fail('domain has an empty label');
    if (label.length > MAX_LABEL) return fail(`domain label longer than ${MAX_LABEL} octets`);
    if (!LDH_LABEL.test(label)) return fail('domain label is not letters, digits and inner hyphens');
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return fail('top-level domain is all digits');

  const domainUnicode = domainToUnicode(domain);
  if (domainUnicode.split('.').some(isMixedScript)) {
    return fail('domain label mixes scripts (look-alike characters)');
  }

  const address = `${local}@${domain}`;
  if (address.length > MAX_TOTAL) return fail(`longer than ${MAX_TOTAL} octets`);
  return { ok: true, value: { local, domain, domainUnicode, address } };
}

interface ProviderRule {
  domain: string;
  dropDots: boolean;
  /** What starts a sub-address that still reaches the same mailbox. */
  tagSeparator: '+' | '-';
  /** `anything@user.<domain>` reaches `user@<domain>` (Fastmail's subdomain addressing). */
  subdomainAddressing?: boolean;
}

const GMAIL: ProviderRule = { domain: 'gmail.com', dropDots: true, tagSeparator: '+' };
const ICLOUD: ProviderRule = { domain: 'icloud.com', dropDots: false, tagSeparator: '+' };
// Proton documents +aliases only. Reports that it also ignores `.`, `-` and `_` are undocumented, and
// folding them wrongly would merge two real people, so dots are kept.
const PROTON: ProviderRule = { domain: 'proton.me', dropDots: false, tagSeparator: '+' };

// biome-ignore format: packed lists read better than one domain a line
const FASTMAIL_DOMAINS = new Set([
  'fastmail.com', 'fastmail.fm', 'fastmail.cn', 'fastmail.co.uk', 'fastmail.com.au', 'fastmail.de',
  'fastmail.es', 'fastmail.in', 'fastmail.jp', 'fastmail.net', 'fastmail.nl', 'fastmail.org',
  'fastmail.se', 'fastmail.to', 'fastmail.tw', 'fastmail.us', 'sent.com', 'ftml.net', 'mm.st', 'eml.cc',
  'imap.cc', 'fmail.co.uk', 'fastem.com',
]);

// Families match any country variant for canonicalisation only: over-applying the rule to a look-alike
// domain merely links more addresses, whereas isPublicProvider below must stay exact.
const MICROSOFT_FAMILY = /^(?:outlook|hotmail|live|windowslive)\.(?:(?:co|com)\.)?[a-z]{2,3}$/;
const YAHOO_FAMILY = /^yahoo\.(?:(?:co|com)\.)?[a-z]{2,3}$/;

const PROTON_DOMAINS = new Set(['proton.me', 'protonmail.com', 'protonmail.ch', 'pm.me']);
const APPLE_DOMAINS = new Set(['icloud.com', 'me.com', 'mac.com']);

function providerRule(domain: string): ProviderRule | undefined {
  if (domain === 'gmail.com' || domain === 'googlemail.com') return GMAIL;
  if (APPLE_DOMAINS.has(domain)) return ICLOUD;
  if (PROTON_DOMAINS.has(domain)) return PROTON;
  if (domain === 'msn.com' || MICROSOFT_FAMILY.test(domain)) {
    return { domain, dropDots: false, tagSeparator: '+' };
  }
  if (YAHOO_FAMILY.test(domain)) return { domain, dropDots: false, tagSeparator: '-' };
  if (FASTMAIL_DOMAINS.has(domain)) {
    return { domain, dropDots: false, tagSeparator: '+', subdomainAddressing: true };
  }
  return undefined;
}

/** Local part without its sub-address tag, and the provider's canonical domain. Dots are kept. */
function untagged(parsed: ParsedEmail): { local: string; domain: string; rule: ProviderRule | undefined } {
  let local = parsed.local.toLowerCase();
  let domain = parsed.domain;
  let rule = providerRule(domain);
  if (!rule) {
    const dot = domain.indexOf('.');
    const parentRule = providerRule(domain.slice(dot + 1));
    if (parentRule?.subdomainAddressing) {
      local = domain.slice(0, dot);
      domain = domain.slice(dot + 1);
      rule = parentRule;
    }
  }
  domain = rule?.domain ?? domain;
  // Unknown domains: +tags are widespread (Postfix, Exchange, most hosts), dropping them is the usual
  // anti-abuse choice; a literal `+` in a real mailbox name is rare enough to accept the merge.
  const separator = rule?.tagSeparator ?? '+';
  const cut = local.indexOf(separator);
  if (cut > 0) local = local.slice(0, cut).replace(/\.+$/, '');
  return { local, domain, rule };
}

/** The identity behind an address: every variant that reaches the same mailbox maps to one string. */
export function canonicalEmail(parsed: ParsedEmail): string {
  const { local, domain, rule } = untagged(parsed);
  const folded = rule?.dropDots ? local.replaceAll('.', '') : local;
  return `${folded}@${domain}`;
}

export function canonicalEmailHash(canonical: string): string {
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

const VOWEL = /[aeiouy]/;

function looksGenerated(core: string, runs: number): boolean {
  if (core.length >= 6 && runs >= 4) return true;
  let streak = 0;
  for (const ch of core) {
    streak = /[a-z]/.test(ch) && !VOWEL.test(ch) ? streak + 1 : 0;
    if (streak >= 6) return true;
  }
  return false;
}

/**
 * `base` is the local part without tag, trailing digits and separators (`john.smith1987` → `johnsmith`);
 * `shape` maps letter runs to `a` and digit runs to `9` (`a.a9`).
 *
 * `key` groups addresses a script mints in a row, for velocity per pattern and later for linking
 * accounts: `user8812` and `user8813` share `p:<shape>:<first 8 of base>:<trailing digit count>@<domain>`.
 * Random-looking names (`xk29fj3`) have no meaningful base, so they key on their run lengths instead
 * (`r:a2d2a2d1@<domain>`), which is what one generator template keeps constant. A key is not an
 * identity: unrelated people share one on big providers, so only its rate over time means something.
 */
export function emailPattern(parsed: ParsedEmail): EmailPattern {
  const tagless = untagged(parsed);
  const { domain } = tagless;
  // Where dots are free to add (Gmail) they would only scatter one name over many shapes.
  const local = tagless.rule?.dropDots ? tagless.local.replaceAll('.', '') : tagless.local;
  const stripped = local.replace(/[0-9._-]+$/, '');
  const base = stripped.replace(/[^a-z0-9]/g, '');
  const shape = local.replace(/[a-z]+/g, 'a').replace(/[0-9]+/g, '9');
  const core = local.replace(/[^a-z0-9]/g, '');
  const runs = core.match(/[a-z]+|[0-9]+/g) ?? [];
  if (looksGenerated(core, runs.length)) {
    const lengths = local.replace(/[a-z]+|[0-9]+/g, (run) => `${/[a-z]/.test(run) ? 'a' : 'd'}${run.length}`);
    return { base, shape, key: `r:${lengths}@${domain}` };
  }
  const trailingDigits = /[0-9]+$/.exec(local.replace(/[._-]+$/, ''))?.[0].length ?? 0;
  return { base, shape, key: `p:${shape}:${base.slice(0, 8)}:${trailingDigits}@${domain}` };
}

// biome-ignore format: packed lists read better than one domain a line
const PUBLIC_PROVIDERS = new Set([
  'gmail.com', 'googlemail.com',
  'outlook.com', 'hotmail.com', 'live.com', 'msn.com', 'windowslive.com', 'passport.com',
  'outlook.fr', 'outlook.de', 'outlook.es', 'outlook.it', 'outlook.jp', 'outlook.com.br', 'outlook.com.au',
  'hotmail.co.uk', 'hotmail.fr', 'hotmail.de', 'hotmail.it', 'hotmail.es', 'hotmail.ca', 'hotmail.be',
  'hotmail.nl', 'hotmail.com.br', 'hotmail.com.ar', 'hotmail.com.mx', 'hotmail.co.jp', 'hotmail.se',
  'live.co.uk', 'live.fr', 'live.de', 'live.it', 'live.nl', 'live.ca', 'live.com.au', 'live.com.mx', 'live.be',
  'yahoo.com', 'yahoo.co.uk', 'yahoo.fr', 'yahoo.de', 'yahoo.it', 'yahoo.es', 'yahoo.ca', 'yahoo.com.au',
  'yahoo.com.br', 'yahoo.com.mx', 'yahoo.com.ar', 'yahoo.co.in', 'yahoo.in', 'yahoo.co.jp', 'yahoo.com.sg',
  'yahoo.com.ph', 'yahoo.com.hk', 'yahoo.com.tw', 'yahoo.co.id', 'yahoo.gr', 'yahoo.ie', 'yahoo.se',
  'ymail.com', 'rocketmail.com', 'aol.com', 'aim.com',
  'icloud.com', 'me.com', 'mac.com',
  'proton.me', 'protonmail.com', 'protonmail.ch', 'pm.me',
  'tutanota.com', 'tutanota.de', 'tutamail.com', 'tuta.io', 'tuta.com', 'keemail.me',
  'gmx.com', 'gmx.net', 'gmx.de', 'gmx.at', 'gmx.ch', 'gmx.fr', 'gmx.us', 'gmx.co.uk', 'web.de', 'mail.com',
  'mail.ru', 'inbox.ru', 'list.ru', 'bk.ru', 'internet.ru', 'rambler.ru',
  'yandex.ru', 'yandex.com', 'yandex.by', 'yandex.kz', 'yandex.ua', 'ya.ru',
  'qq.com', 'foxmail.com', '163.com', '126.com', 'yeah.net', '139.com', 'sina.com', 'sina.cn', 'sohu.com',
  'aliyun.com', 'naver.com', 'daum.net', 'hanmail.net', 'rediffmail.com',
  'zoho.com', 'zohomail.com', 'zohomail.eu', 'fastmail.com', 'fastmail.fm', 'hey.com',
  'mailbox.org', 'posteo.de', 'mailfence.com', 'hushmail.com',
  't-online.de', 'freenet.de', 'orange.fr', 'wanadoo.fr', 'free.fr', 'sfr.fr', 'laposte.net',
  'libero.it', 'virgilio.it', 'seznam.cz', 'wp.pl', 'o2.pl', 'onet.pl', 'interia.pl', 'ukr.net', 'abv.bg',
  'uol.com.br', 'bol.com.br', 'terra.com.br',
  'comcast.net', 'att.net', 'sbcglobal.net', 'verizon.net', 'cox.net', 'btinternet.com', 'sky.com',
  'virginmedia.com', 'bigpond.com', 'shaw.ca',
]);

/** Mailbox providers too big for a per-domain signup count to mean anything. Exact domains only. */
export function isPublicProvider(domain: string): boolean {
  return PUBLIC_PROVIDERS.has(domain.trim().toLowerCase());
}

// biome-ignore format: packed lists read better than one domain a line
const PRIVACY_RELAYS = new Set([
  'duck.com',
  'simplelogin.com', 'simplelogin.co', 'simplelogin.fr', 'simplelogin.io', 'slmail.me', 'slmails.com',
  'aleeas.com', '8alias.com', '8shield.net', 'dralias.com', 'silomails.com',
  'anonaddy.com', 'anonaddy.me', 'addy.io', 'addymail.com',
  'mozmail.com', 'relay.firefox.com',
  'privaterelay.appleid.com',
  'passmail.net', 'passmail.com', 'passinbox.com', 'passfwd.com',
  '33mail.com',
]);

/**
 * Forwarding aliases in front of a real, persistent mailbox: not disposable, but one person can mint
 * many. Subdomains count because several relays give each user one (`alias@user.anonaddy.com`).
 */
export function isPrivacyRelay(domain: string): boolean {
  let d = domain.trim().toLowerCase();
  for (;;) {
    if (PRIVACY_RELAYS.has(d)) return true;
    const dot = d.indexOf('.');
    if (dot < 0) return false;
    d = d.slice(dot + 1);
  }
}
