import { MailboxRegistry, personLocal, personName, sequentialNumber, voipNumber } from './identity.ts';
import {
  DAY_MS,
  type FarmKind,
  type Population,
  type ScenarioName,
  type SimAccount,
  type Source,
  type UsagePlan,
} from './model.ts';
import { CLOUD, type Country, MOBILE_CARRIERS, Networks, RESIDENTIAL, VPN } from './networks.ts';
import { buildLegitPopulation } from './population.ts';
import { Rng } from './rng.ts';
import { BROWSERS, MOBILE_BROWSERS, SCRIPT_CLIENTS, templatesFor } from './traffic.ts';

// The attacks of the threat model, each a generator of farm accounts and of how they use the API.
// A farm's accounts differ from people in the aggregate only: what they share (machines, devices,
// prompt templates, minutes of activity) and how close each runs to its quota.

export interface FarmOptions {
  days: number;
  quota: number;
}

type Generator = (
  rng: Rng,
  count: number,
  opts: FarmOptions,
  nets: Networks,
  mail: MailboxRegistry,
) => SimAccount[];

const HEADLESS =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36';
/** The automation framework's TLS hello: the same on every account, whatever user agent it claims. */
const FARM_TLS = 't13d1516h2_8daaf6152771_b1ff8ab2d16f';

const DISPOSABLE = [
  'mailinator.com',
  'guerrillamail.com',
  'yopmail.com',
  'sharklasers.com',
  'trashmail.com',
  'dispostable.com',
  'maildrop.cc',
  'getnada.com',
  '10minutemail.com',
  'temp-mail.org',
];
/** Throwaway domains registered last week: on no disposable list yet. */
const FRESH_DOMAINS = ['mailnest.shop', 'inboxkit.click', 'quickpost.top', 'zmailhub.site', 'fastinbox.lol'];
const FARM_MAIL = ['gmail.com', 'gmail.com', 'outlook.com', 'yahoo.com', 'hotmail.com', 'proton.me'];

const allResidential = (): number[] => Object.values(RESIDENTIAL).flat();
/** Start of the last simulated day: today, played live. */
const lastDay = (opts: FarmOptions) => (opts.days - 1) * DAY_MS;

/** A limit-hugger's plan: every day, a share of the quota, in the farm's shared minutes. */
function huggingPlan(
  opts: FarmOptions,
  share: [number, number],
  slots: number[],
  sources: Source[],
  templates: number[],
): UsagePlan {
  return {
    dailyCalls: [Math.round(opts.quota * share[0]), Math.round(opts.quota * share[1])],
    weekdayActive: 0.97,
    weekendActive: 0.95,
    timing: { kind: 'slots', slots, jitterSeconds: 40, skip: 0.1 },
    perMinute: [30, 55],
    sources,
    prompts: { kind: 'template', templates, fills: 12 },
    endpoints: ['/v1/chat/completions'],
  };
}

/** Minutes of the day a farm's scheduler fires in: enough slots for a day's quota at ~40 a minute. */
function farmSlots(rng: Rng, quota: number, fromMinute = 0, toMinute = 1439): number[] {
  const needed = Math.ceil((quota / 35) * 1.4);
  const span = toMinute - fromMinute + 1;
  const slots = rng.sample(
    Array.from({ length: span }, (_, i) => fromMinute + i),
    Math.min(span, needed),
  );
  return slots.sort((a, b) => a - b);
}

function account(
  rng: Rng,
  kind: FarmKind,
  i: number,
  fields: Omit<SimAccount, 'index' | 'externalId' | 'role' | 'group'>,
): SimAccount {
  return { index: i, externalId: `usr_${rng.hex(20)}`, role: 'farm', group: kind, ...fields };
}

const bulkDisposable: Generator = (rng, count, opts, nets, mail) => {
  const vms = Array.from({ length: rng.int(4, 6) }, () =>
    nets.pool(rng, rng.pick(CLOUD), rng.int(3, 8)),
  ).flat();
  const devices = Array.from({ length: 3 }, () => rng.hex(32));
  const fresh = rng.sample(FRESH_DOMAINS, 2);
  const slots = farmSlots(rng, opts.quota);
  const templates = templatesFor(rng, 2);
  // Two waves of hundreds in hours: one on the first day, before Gatehouse guarded signup (it
  // arrives through the import), and one today, against the live signup checks.
  const waves = [rng.int(1, 18) * 3_600_000, lastDay(opts) + rng.int(1, 18) * 3_600_000];
  const firstWave = Math.ceil(count / 2);
  return Array.from({ length: count }, (_, i) => {
    const r = rng.fork('account', i);
    const wave = i < firstWave ? 0 : 1;
    waves[wave] = (waves[wave] as number) + r.int(10, 60) * 1000;
    const at = waves[wave] as number;
    const local = r.weighted<() => string>([
      [() => `user${r.int(10_000, 99_999)}`, 3],
      [() => r.alnum(r.int(8, 11)), 3],
      [() => `${personName(r).first}${r.int(100, 9999)}`, 2],
      [() => `${r.pick(['test', 'acc', 'bot', 'dev', 'api'])}${r.alnum(5)}`, 1],
    ])();
    const domain = r.chance(0.85) ? r.pick(DISPOSABLE) : r.pick(fresh);
    const email = mail.claim(r, local, domain);
    const client = r.chance(0.5)
      ? { userAgent: HEADLESS, fingerprint: r.pick(devices) }
      : { userAgent: SCRIPT_CLIENTS[0].ua };
    const ip = r.pick(vms);
    return account(r, 'bulk-disposable', i, {
      email,
      phone: voipNumber(r, i),
      phoneAtSignup: false,
      signupAt: at,
      signup: { ip, tlsFingerprint: FARM_TLS, ...client },
      usage: huggingPlan(
        opts,
        [0.95, 1],
        slots,
        [{ ips: vms, fingerprints: devices, tlsFingerprint: FARM_TLS, userAgents: [HEADLESS], weight: 1 }],
        templates,
      ),
    });
  });
};

/** Where a dot may go in a Gmail local part: anywhere between two letters. */
function dotted(rng: Rng, local: string): string {
  let out = local[0] ?? '';
  for (let k = 1; k < local.length; k++) out += (rng.chance(0.3) ? '.' : '') + local[k];
  return out;
}

const aliasFarm: Generator = (rng, count, opts, nets, mail) => {
  const inboxes = Array.from({ length: Math.max(2, Math.round(count / 12)) }, (_, k) => {
    const name = personName(rng);
    const domain = k % 5 === 4 ? 'outlook.com' : 'gmail.com';
    const claimed = mail.claim(
      rng,
      `${name.first}${name.last.replaceAll('-', '')}${rng.int(70, 99)}`,
      domain,
    );
    return { local: claimed.slice(0, claimed.indexOf('@')), domain };
  });
  const home = nets.address(rng, nets.residentialAsn(rng, 'us'));
  const phoneIps = rng.pick(MOBILE_CARRIERS).asn;
  const ips = [home, ...nets.pool(rng, phoneIps, 2)];
  const devices = [rng.hex(32), rng.hex(32)];
  const slots = farmSlots(rng, opts.quota);
  const templates = templatesFor(rng, 3);
  let at = lastDay(opts) + rng.int(6, 16) * 3_600_000;
  const seen = new Set<string>();
  return Array.from({ length: count }, (_, i) => {
    const r = rng.fork('account', i);
    const inbox = inboxes[i % inboxes.length]!;
    let email: string;
    do {
      const tag = r.chance(0.6) ? `+${r.alnum(r.int(2, 6))}` : '';
      const local = inbox.domain === 'gmail.com' ? dotted(r, inbox.local) : inbox.local;
      const domain = inbox.domain === 'gmail.com' && r.chance(0.2) ? 'googlemail.com' : inbox.domain;
      email = `${local}${tag}@${domain}`;
    } while (seen.has(email));
    seen.add(email);
    at += r.int(1, 10) * 60_000;
    const browser = r.pick(BROWSERS);
    return account(r, 'alias-farm', i, {
      email,
      phone: voipNumber(r, 500 + i),
      phoneAtSignup: false,
      signupAt: at,
      signup: {
        ip: r.pick(ips),
        fingerprint: r.pick(devices),
        tlsFingerprint: browser.tls,
        userAgent: browser.ua,
      },
      usage: huggingPlan(
        opts,
        [0.9, 1],
        slots,
        [{ ips, fingerprints: devices, tlsFingerprint: browser.tls, userAgents: [browser.ua], weight: 1 }],
        templates,
      ),
    });
  });
};

/** A user agent as a rotation list writes them: real browsers, shuffled versions. */
function randomAgent(rng: Rng): string {
  const base = rng.pick([...BROWSERS, ...MOBILE_BROWSERS]).ua;
  return base.replace(
    /Chrome\/(\d+)\.0\.(\d+)\.(\d+)/,
    () => `Chrome/${rng.int(118, 131)}.0.${rng.int(5000, 6800)}.${rng.int(10, 200)}`,
  );
}

const distributedSlow: Generator = (rng, count, opts, nets, mail) => {
  const asns = allResidential();
  const proxies = Array.from({ length: Math.max(40, count * 2) }, () => nets.address(rng, rng.pick(asns)));
  const profiles = Array.from({ length: Math.max(3, Math.round(count / 8)) }, () => rng.hex(32));
  const slots = farmSlots(rng, opts.quota, 6 * 60, 23 * 60);
  const templates = templatesFor(rng, 3);
  return Array.from({ length: count }, (_, i) => {
    const r = rng.fork('account', i);
    const name = personName(r);
    // One generator, one format: name, dot, surname, two digits.
    const email = mail.claim(
      r,
      `${name.first}.${name.last.replaceAll('-', '')}${r.int(10, 99)}`,
      r.pick(FARM_MAIL),
    );
    const day = r.int(0, opts.days - 1);
    const signupAt = day * DAY_MS + r.int(8, 22) * 3_600_000 + r.int(0, 3_599_999);
    const profile = r.pick(profiles);
    const agents = Array.from({ length: 3 }, () => randomAgent(r));
    return account(r, 'distributed-slow', i, {
      email,
      phone: voipNumber(r, 1000 + i),
      phoneAtSignup: false,
      signupAt,
      signup: {
        ip: nets.address(r, r.pick(asns)),
        fingerprint: profile,
        tlsFingerprint: FARM_TLS,
        userAgent: r.pick(agents),
        acceptLanguage: 'en-US,en;q=0.9',
      },
      usage: huggingPlan(
        opts,
        [0.9, 0.98],
        slots,
        [
          {
            ips: r.sample(proxies, 20),
            fingerprints: [profile],
            tlsFingerprint: FARM_TLS,
            userAgents: agents,
            weight: 1,
          },
        ],
        templates,
      ),
    });
  });
};

const resetBurst: Generator = (rng, count, opts, nets, mail) => {
  // A rack of 4G modems: the farm's own CGNAT addresses, with real-looking devices.
  const modems = MOBILE_CARRIERS.slice(0, 3).flatMap((c) => nets.pool(rng, c.asn, 6));
  const slots = Array.from({ length: 25 }, (_, m) => m);
  const templates = templatesFor(rng, 2);
  // Most accounts were made on the first day and have burst every night since; a few more today.
  const waves = [rng.int(4, 10) * 3_600_000, lastDay(opts) + rng.int(4, 10) * 3_600_000];
  const firstWave = Math.ceil(count * 0.8);
  return Array.from({ length: count }, (_, i) => {
    const r = rng.fork('account', i);
    const name = personName(r);
    const email = mail.claim(r, personLocal(r, name), r.pick(FARM_MAIL));
    const device = r.pick(MOBILE_BROWSERS);
    const fingerprint = r.hex(32);
    const wave = i < firstWave ? 0 : 1;
    waves[wave] = (waves[wave] as number) + r.int(2, 12) * 60_000;
    const at = waves[wave] as number;
    return account(r, 'reset-burst', i, {
      email,
      phone: voipNumber(r, 2000 + i),
      phoneAtSignup: false,
      signupAt: at,
      signup: { ip: r.pick(modems), fingerprint, tlsFingerprint: device.tls, userAgent: device.ua },
      usage: {
        ...huggingPlan(
          opts,
          [0.95, 1],
          slots,
          [
            {
              ips: modems,
              fingerprints: [fingerprint],
              tlsFingerprint: device.tls,
              userAgents: [device.ua],
              weight: 1,
            },
          ],
          templates,
        ),
        // Right after 00:00 UTC, when a quota that resets daily would be full again.
        timing: { kind: 'slots', slots, jitterSeconds: 20, skip: 0 },
        perMinute: [40, 55],
      },
    });
  });
};

const voipPhones: Generator = (rng, count, opts, nets, mail) => {
  const exits = VPN.flatMap((asn) => nets.pool(rng, asn, 4));
  const homes = Array.from({ length: 6 }, () =>
    nets.address(rng, nets.residentialAsn(rng, rng.pick<Country>(['us', 'gb']))),
  );
  const profiles = Array.from({ length: 4 }, () => rng.hex(32));
  const slots = farmSlots(rng, opts.quota);
  const templates = templatesFor(rng, 2);
  const block = rng.int(1000, 8000);
  const numbers: string[] = [];
  let at = lastDay(opts) + rng.int(2, 14) * 3_600_000;
  return Array.from({ length: count }, (_, i) => {
    const r = rng.fork('account', i);
    const name = personName(r);
    const email = mail.claim(r, personLocal(r, name), r.pick(FARM_MAIL));
    // Half VoIP numbers, half a block of consecutive US numbers; some numbers serve twice.
    const phone =
      numbers.length > 0 && r.chance(0.15)
        ? r.pick(numbers)
        : r.chance(0.5)
          ? voipNumber(r, 3000 + i)
          : sequentialNumber(block, i);
    numbers.push(phone);
    const viaVpn = r.chance(0.6);
    const browser = r.pick(BROWSERS);
    at += r.int(1, 6) * 60_000;
    return account(r, 'voip-phones', i, {
      email,
      phone,
      phoneAtSignup: !viaVpn,
      signupAt: at,
      signup: {
        ip: viaVpn ? r.pick(exits) : r.pick(homes),
        fingerprint: r.pick(profiles),
        tlsFingerprint: browser.tls,
        userAgent: browser.ua,
      },
      usage: huggingPlan(
        opts,
        [0.9, 1],
        slots,
        [
          {
            ips: [...exits, ...homes],
            fingerprints: profiles,
            tlsFingerprint: browser.tls,
            userAgents: [browser.ua],
            weight: 1,
          },
        ],
        templates,
      ),
    });
  });
};

const GENERATORS: Record<FarmKind, Generator> = {
  'bulk-disposable': bulkDisposable,
  'alias-farm': aliasFarm,
  'distributed-slow': distributedSlow,
  'reset-burst': resetBurst,
  'voip-phones': voipPhones,
};

/** How `mixed` splits its farm between the attacks. */
export const MIXED_SHARES: ReadonlyArray<readonly [FarmKind, number]> = [
  ['bulk-disposable', 0.3],
  ['alias-farm', 0.1],
  ['distributed-slow', 0.3],
  ['reset-burst', 0.15],
  ['voip-phones', 0.15],
];

export const DEFAULT_FARM: Record<FarmKind | 'mixed', number> = {
  'bulk-disposable': 300,
  'alias-farm': 60,
  'distributed-slow': 200,
  'reset-burst': 100,
  'voip-phones': 80,
  mixed: 500,
};

/** The farm accounts of one attack; `mail` keeps their addresses apart from everyone else's. */
export function buildFarm(
  root: Rng,
  kind: FarmKind,
  count: number,
  opts: FarmOptions,
  nets: Networks,
  mail: MailboxRegistry,
): SimAccount[] {
  return GENERATORS[kind](root.fork('farm', kind), count, opts, nets, mail);
}

export interface PopulationOptions {
  scenario: ScenarioName;
  seed: number;
  legit: number;
  /** Farm accounts in all; the scenario's default when absent. */
  farm?: number;
  days: number;
  quota: number;
}

/** How many accounts each attack of a scenario gets. */
export function farmSizes(scenario: ScenarioName, total: number): Array<[FarmKind, number]> {
  if (scenario !== 'mixed') return [[scenario, total]];
  // Largest remainder, so the parts add up to the total asked for.
  const parts = MIXED_SHARES.map(([kind, share]) => ({
    kind,
    exact: total * share,
    n: Math.floor(total * share),
  }));
  let left = total - parts.reduce((s, p) => s + p.n, 0);
  for (const p of [...parts].sort((a, b) => b.exact - b.n - (a.exact - a.n))) {
    if (left <= 0) break;
    p.n++;
    left--;
  }
  return parts.map((p) => [p.kind, p.n]);
}

/** Everyone in a run: a pure function of the options. */
export function generatePopulation(opts: PopulationOptions): Population {
  const root = Rng.seeded(opts.seed);
  const nets = new Networks();
  const mail = new MailboxRegistry();
  const legit = buildLegitPopulation(
    root,
    { count: opts.legit, days: opts.days, quota: opts.quota },
    nets,
    mail,
  );
  const farm = farmSizes(opts.scenario, opts.farm ?? DEFAULT_FARM[opts.scenario]).flatMap(([kind, n]) =>
    buildFarm(root, kind, n, { days: opts.days, quota: opts.quota }, nets, mail),
  );
  return {
    seed: opts.seed,
    scenario: opts.scenario,
    accounts: [...legit, ...farm],
    days: opts.days,
    quota: opts.quota,
  };
}
