import {
  type MailboxRegistry,
  mobileNumber,
  PERSON_DOMAINS,
  type PersonName,
  personLocal,
  personName,
} from './identity.ts';
import { type ClientContext, DAY_MS, type SimAccount, type Source, type UsagePlan } from './model.ts';
import {
  BUSINESS,
  CLOUD,
  type Country,
  MOBILE_CARRIERS,
  type Networks,
  RESIDENTIAL,
  UNIVERSITY,
} from './networks.ts';
import type { Rng } from './rng.ts';
import { BROWSERS, MOBILE_BROWSERS, openersFor, SCRIPT_CLIENTS, vocabularyFor } from './traffic.ts';

// The people a farm hides among, with the habits that make a detector's life hard: shared
// addresses (families, a university and an office behind one NAT each, mobile carriers' CGNAT),
// travel, power users at their quota every day, developers whose scripts run from a cloud VM on a
// timer, and people who sign up twice by mistake.

export type Persona =
  | 'home'
  | 'mobile'
  | 'family'
  | 'university'
  | 'office'
  | 'traveller'
  | 'power-user'
  | 'developer'
  | 'signs-up-twice';

const PERSONA_SHARE: ReadonlyArray<readonly [Persona, number]> = [
  ['mobile', 0.18],
  ['family', 0.1],
  ['university', 0.06],
  ['office', 0.05],
  ['traveller', 0.05],
  ['power-user', 0.03],
  ['developer', 0.05],
  ['signs-up-twice', 0.02],
];

const COUNTRIES: ReadonlyArray<readonly [Country, number]> = [
  ['us', 40],
  ['gb', 15],
  ['de', 10],
  ['fr', 8],
  ['ca', 5],
  ['es', 4],
  ['nl', 3],
  ['au', 4],
  ['it', 4],
  ['br', 4],
  ['in', 3],
];

const TZ: Record<Country, number> = {
  us: -6,
  ca: -5,
  gb: 0,
  de: 1,
  fr: 1,
  es: 1,
  nl: 1,
  it: 1,
  au: 10,
  br: -3,
  in: 5,
};
const LANG: Record<Country, string> = {
  us: 'en-US,en;q=0.9',
  ca: 'en-CA,en;q=0.9,fr;q=0.7',
  gb: 'en-GB,en;q=0.9',
  de: 'de-DE,de;q=0.9,en;q=0.8',
  fr: 'fr-FR,fr;q=0.9,en;q=0.7',
  es: 'es-ES,es;q=0.9,en;q=0.6',
  nl: 'nl-NL,nl;q=0.9,en;q=0.8',
  au: 'en-AU,en;q=0.9',
  it: 'it-IT,it;q=0.9,en;q=0.6',
  br: 'pt-BR,pt;q=0.9,en;q=0.5',
  in: 'en-IN,en;q=0.9,hi;q=0.7',
};

/** Share of people already signed up before the simulated days start. */
const EXISTING_SHARE = 0.6;

/** Networks several people share: built once per population. */
interface SharedPlaces {
  university: { ip: string; domain: string };
  office: { ip: string; domain: string };
  carriers: Array<{ asn: number; country: Country; pool: string[] }>;
}

interface Person {
  rng: Rng;
  persona: Persona;
  country: Country;
  name: PersonName;
  device: { fingerprint: string; ua: string; tls: string };
  phoneDevice: { fingerprint: string; ua: string; tls: string };
  homeIp: string;
  carrier: { asn: number; pool: string[] };
}

export interface LegitOptions {
  count: number;
  days: number;
  quota: number;
}

export function buildLegitPopulation(
  root: Rng,
  opts: LegitOptions,
  nets: Networks,
  mailboxes: MailboxRegistry,
): SimAccount[] {
  const rng = root.fork('legit');
  const places = sharedPlaces(rng.fork('places'), nets);
  const phones = new Set<string>();
  const accounts: SimAccount[] = [];
  let family: { homeIp: string; last: string; left: number; laptop: string | null } | null = null;

  for (let i = 0; i < opts.count; i++) {
    const r = rng.fork('person', i);
    const persona = personaFor(r, i, opts.count);
    const country = persona === 'university' ? 'gb' : r.weighted(COUNTRIES);
    const name = personName(r);
    if (persona === 'family') {
      if (!family || family.left <= 0) {
        family = {
          homeIp: nets.address(r, nets.residentialAsn(r, country)),
          last: name.last,
          left: r.int(2, 5),
          laptop: r.chance(0.3) ? r.hex(32) : null,
        };
      }
      name.last = family.last;
      family.left--;
    }
    const carrier = r.pick(places.carriers);
    const browser = r.pick(BROWSERS);
    const phone = r.pick(MOBILE_BROWSERS);
    const person: Person = {
      rng: r,
      persona,
      country,
      name,
      device: {
        fingerprint: persona === 'family' && family?.laptop ? family.laptop : r.hex(32),
        ua: browser.ua,
        tls: browser.tls,
      },
      phoneDevice: { fingerprint: r.hex(32), ua: phone.ua, tls: phone.tls },
      homeIp:
        persona === 'family' && family ? family.homeIp : nets.address(r, nets.residentialAsn(r, country)),
      carrier,
    };
    const domain =
      persona === 'university' && r.chance(0.5)
        ? places.university.domain
        : persona === 'office' && r.chance(0.7)
          ? places.office.domain
          : r.weighted(PERSON_DOMAINS);
    const email = mailboxes.claim(r, personLocal(r, name), domain);
    const signupAt = signupTime(r, opts.days, TZ[country]);
    const account: SimAccount = {
      index: i,
      externalId: `usr_${r.hex(20)}`,
      role: 'legit',
      group: persona,
      email,
      phone: mobileNumber(r, country, phones),
      phoneAtSignup: r.chance(0.1),
      signupAt:
        persona === 'signs-up-twice' ? (opts.days - 1) * DAY_MS + (Math.abs(signupAt) % DAY_MS) : signupAt,
      signup: signupClient(person, places, nets),
      usage: usagePlan(person, places, nets, opts),
    };
    account.signup.acceptLanguage = LANG[country];
    if (persona === 'signs-up-twice') {
      // The same address again, or as they remember it: capitals and dots change nothing for Gmail.
      account.repeatEmail = r.chance(0.5) ? email : email.replace(/^(\w)/, (c) => c.toUpperCase());
    }
    accounts.push(account);
  }
  spreadSharedSignups(rng.fork('spread'), accounts, opts.days);
  return accounts;
}

function personaFor(rng: Rng, i: number, count: number): Persona {
  // The first people of a small population cover every persona, so a 150-user test still meets them all.
  if (i < PERSONA_SHARE.length && count >= 50) return PERSONA_SHARE[i]![0];
  const r = rng.next();
  let acc = 0;
  for (const [persona, share] of PERSONA_SHARE) {
    acc += share;
    if (r < acc) return persona;
  }
  return 'home';
}

function sharedPlaces(rng: Rng, nets: Networks): SharedPlaces {
  return {
    university: { ip: nets.address(rng, rng.pick(UNIVERSITY)), domain: 'students.kingsbridge.ac.uk' },
    office: { ip: nets.address(rng, rng.pick(BUSINESS)), domain: 'northwind-analytics.com' },
    carriers: MOBILE_CARRIERS.map((c) => ({
      asn: c.asn,
      country: c.country,
      pool: nets.pool(rng, c.asn, 12),
    })),
  };
}

/** Existing users were made over the last year; new ones on the simulated days, many today. */
function signupTime(rng: Rng, days: number, tz: number): number {
  const hour =
    (rng.weightedIndex([0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 2, 3, 3, 3, 3, 3, 2, 3, 3, 3, 2, 1]) - tz + 48) %
    24;
  const withinDay = hour * 3_600_000 + rng.int(0, 3_599_999);
  if (rng.chance(EXISTING_SHARE)) return -rng.int(3, 400) * DAY_MS + withinDay;
  // The last day, played live, gets at least a tenth of the new signups (a launch-day bump).
  const day = rng.chance(Math.max(0.1, 1 / days)) || days <= 1 ? days - 1 : rng.int(0, days - 2);
  return day * DAY_MS + withinDay;
}

function signupClient(p: Person, places: SharedPlaces, nets: Networks): ClientContext {
  const { rng } = p;
  const web = { fingerprint: p.device.fingerprint, tlsFingerprint: p.device.tls, userAgent: p.device.ua };
  const onPhone = {
    fingerprint: p.phoneDevice.fingerprint,
    tlsFingerprint: p.phoneDevice.tls,
    userAgent: p.phoneDevice.ua,
  };
  switch (p.persona) {
    case 'mobile':
      return { ip: rng.pick(p.carrier.pool), ...onPhone };
    case 'university':
      return { ip: places.university.ip, ...web };
    case 'office':
      return { ip: places.office.ip, ...web };
    case 'developer':
      // Some sign up from the VM they work on: a cloud address, which earns the phone step-up.
      return rng.chance(0.3) ? { ip: nets.address(rng, rng.pick(CLOUD)), ...web } : { ip: p.homeIp, ...web };
    default:
      return rng.chance(0.15) ? { ip: rng.pick(p.carrier.pool), ...onPhone } : { ip: p.homeIp, ...web };
  }
}

const src = (ips: string[], dev: { fingerprint: string; ua: string; tls: string } | null, weight: number) =>
  ({
    ips,
    fingerprints: dev ? [dev.fingerprint] : [],
    ...(dev ? { tlsFingerprint: dev.tls } : {}),
    userAgents: dev ? [dev.ua] : [],
    weight,
  }) satisfies Source;

function usagePlan(p: Person, places: SharedPlaces, nets: Networks, opts: LegitOptions): UsagePlan {
  const { rng } = p;
  const home = src([p.homeIp], p.device, 1);
  const mobile = src(p.carrier.pool, p.phoneDevice, 0.25);
  const prompts = { kind: 'varied' as const, vocabulary: vocabularyFor(rng), openers: openersFor(rng) };
  const heavy = rng.pick([10, 20, 40, 80, 200]);
  const base: UsagePlan = {
    dailyCalls: [2, heavy],
    weekdayActive: rng.float(0.3, 0.7),
    weekendActive: rng.float(0.1, 0.4),
    timing: { kind: 'sessions', tzOffsetHours: TZ[p.country], sessions: [1, 3] },
    perMinute: [2, rng.int(6, 15)],
    sources: [home, mobile],
    prompts,
    endpoints: ['/v1/chat/completions', '/v1/chat/completions', '/v1/chat/completions', '/v1/embeddings'],
  };
  switch (p.persona) {
    case 'mobile':
      return { ...base, sources: [{ ...mobile, weight: 1 }], perMinute: [1, 6] };
    case 'university':
      return { ...base, sources: [src([places.university.ip], p.device, 0.7), mobile] };
    case 'office':
      return {
        ...base,
        weekdayActive: 0.8,
        weekendActive: 0.1,
        sources: [src([places.office.ip], p.device, 0.75), home],
      };
    case 'traveller': {
      const start = rng.int(0, Math.max(0, opts.days - 4));
      const abroad = rng.pick((Object.keys(RESIDENTIAL) as Country[]).filter((c) => c !== p.country));
      const hotel = nets.address(rng, nets.residentialAsn(rng, abroad));
      const roaming = rng.pick(places.carriers).pool;
      return {
        ...base,
        weekdayActive: 0.7,
        travelDays: Array.from({ length: rng.int(3, 8) }, (_, k) => start + k),
        travelSource: src([hotel, ...roaming.slice(0, 3)], p.device, 1),
      };
    }
    case 'power-user': {
      const client = rng.pick(SCRIPT_CLIENTS);
      return {
        ...base,
        dailyCalls: [Math.round(opts.quota * 0.85), Math.round(opts.quota * 0.99)],
        weekdayActive: 0.97,
        weekendActive: 0.75,
        timing: { kind: 'sessions', tzOffsetHours: TZ[p.country], sessions: [3, 7] },
        perMinute: [15, 45],
        sources: [home, src([p.homeIp], { ...p.device, ua: client.ua, tls: client.tls }, 1)],
      };
    }
    case 'developer': {
      const client = rng.pick(SCRIPT_CLIENTS);
      const vm = nets.address(rng, rng.pick(CLOUD));
      return {
        ...base,
        dailyCalls: [40, rng.pick([200, 400, 600])],
        weekdayActive: 0.9,
        weekendActive: 0.6,
        timing: { kind: 'cron', startMinute: rng.int(0, 59), everyMinutes: rng.pick([15, 30, 60, 120]) },
        perMinute: [5, 25],
        sources: [
          { ips: [vm], fingerprints: [], tlsFingerprint: client.tls, userAgents: [client.ua], weight: 1 },
        ],
        prompts: { ...prompts, vocabulary: prompts.vocabulary.slice(0, 8) },
      };
    }
    default:
      return base;
  }
}

/**
 * The live phase plays the last day's signups in about a minute, so Gatehouse's hourly signup
 * windows see a whole day at once. No network may bring more of them than an hour of a real day
 * would (a few per address, a dozen per /24); the rest of those people signed up on an earlier day.
 */
function spreadSharedSignups(rng: Rng, accounts: SimAccount[], days: number): void {
  if (days <= 1) return;
  const live = (days - 1) * DAY_MS;
  const perIp = new Map<string, number>();
  const perSubnet = new Map<string, number>();
  const perDevice = new Map<string, number>();
  const count = (a: SimAccount, attempts: number, check: boolean): boolean => {
    const subnet = a.signup.ip.split('.').slice(0, 3).join('.');
    const device = a.signup.fingerprint ?? '';
    const ip = (perIp.get(a.signup.ip) ?? 0) + attempts;
    const sub = (perSubnet.get(subnet) ?? 0) + attempts;
    const dev = (perDevice.get(device) ?? 0) + attempts;
    if (check && (ip > 4 || sub > 12 || dev > 2)) return false;
    perIp.set(a.signup.ip, ip);
    perSubnet.set(subnet, sub);
    perDevice.set(device, dev);
    return true;
  };
  // People who sign up twice stay on the live day (that is their story), and each counts twice.
  for (const a of accounts) if (a.signupAt >= live && a.repeatEmail) count(a, 2, false);
  for (const a of accounts) {
    if (a.signupAt < live || a.repeatEmail) continue;
    if (!count(a, 1, true)) a.signupAt -= rng.int(1, days - 1) * DAY_MS;
  }
}
