import { canonicalEmail, parseEmail } from '../../src/signals/email.ts';
import { createRng, type Rng, weightedPicker, zipfPicker } from './linking-random.ts';

// A synthetic, seeded user base for the linking benchmark, shaped like a real one where it decides
// the cost of linking: most accounts share nothing rare; households, offices and farms share small
// or mid-sized buckets; browser user agents and TLS fingerprints form huge buckets; a carrier's
// CGNAT puts a large share of all accounts on three addresses. Accounts come out entity by entity
// (a household, an office, a farm whole), interleaved so that every prefix of the stream has the same
// mix: growing the database from 10k to 1M keeps the proportions, and the farms and CGNAT buckets
// exist at every size.

export type Role = 'solo' | 'household' | 'office' | 'cgnat' | 'farm';
export const ROLES: readonly Role[] = ['solo', 'household', 'office', 'cgnat', 'farm'];

/** One element of `accounts` in POST /v1/import/accounts. */
export interface ImportRecord {
  externalId: string;
  email: string;
  createdAt: string;
  ip: string;
  fingerprint?: string;
  tlsFingerprint?: string;
  userAgent?: string;
  phone?: string;
}

export interface Member {
  record: ImportRecord;
  role: Role;
}

export interface PopulationOptions {
  seed: string;
  /** Latest event time (ms since the epoch); accounts are spread over the year before it. */
  end: number;
}

export interface Population {
  next(): Member;
  /** Accounts and entities (households, offices, farms...) generated so far, by role. */
  readonly accounts: Readonly<Record<Role, number>>;
  readonly entities: Readonly<Record<Role, number>>;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

/** Share of all accounts per role; the scheduler keeps every prefix of the stream close to it. */
export const ROLE_SHARES: Readonly<Record<Role, number>> = {
  solo: 0.72,
  household: 0.11,
  office: 0.06,
  // One carrier, three public addresses: 8% of all accounts, i.e. ~270 per address at 10k and
  // ~27,000 at 1M, above the default bucket cap (200) at every size.
  cgnat: 0.08,
  farm: 0.03,
};

// ---------------------------------------------------------------------------------------------
// Names, domains, devices

// biome-ignore format: packed lists read better than one name a line
const FIRST = [
  'james', 'mary', 'robert', 'patricia', 'john', 'jennifer', 'michael', 'linda', 'david', 'elizabeth',
  'william', 'barbara', 'richard', 'susan', 'joseph', 'jessica', 'thomas', 'sarah', 'chris', 'karen',
  'daniel', 'nancy', 'matthew', 'lisa', 'anthony', 'betty', 'mark', 'sandra', 'paul', 'ashley',
  'steven', 'emily', 'andrew', 'michelle', 'joshua', 'amanda', 'kevin', 'melissa', 'brian', 'stephanie',
  'oliver', 'amelia', 'harry', 'isla', 'jack', 'ava', 'george', 'olivia', 'noah', 'emma',
  'liam', 'sophie', 'ethan', 'grace', 'lucas', 'chloe', 'priya', 'arjun', 'wei', 'mei',
  'carlos', 'sofia', 'diego', 'lucia', 'omar', 'fatima', 'hiroshi', 'yuki', 'lars', 'ingrid',
  'ryan', 'laura', 'jason', 'rachel', 'eric', 'megan', 'adam', 'hannah', 'nathan', 'julia',
  'samuel', 'anna', 'tyler', 'natalie', 'aaron', 'victoria', 'kyle', 'zoe', 'felix', 'clara',
  'mateo', 'valentina', 'ahmed', 'aisha', 'ivan', 'olga', 'pierre', 'camille', 'jonas', 'lena',
  'marco', 'giulia', 'pedro', 'ana', 'kenji', 'sakura', 'raj', 'ananya', 'tomasz', 'katarzyna',
  'erik', 'freya', 'sean', 'niamh', 'hugo', 'ines', 'max', 'mia', 'leon', 'lea',
];
// biome-ignore format: packed lists read better than one name a line
const LAST = [
  'smith', 'johnson', 'williams', 'brown', 'jones', 'garcia', 'miller', 'davis', 'rodriguez', 'martinez',
  'hernandez', 'lopez', 'wilson', 'anderson', 'thomas', 'taylor', 'moore', 'jackson', 'martin', 'lee',
  'thompson', 'white', 'harris', 'clark', 'lewis', 'robinson', 'walker', 'young', 'allen', 'king',
  'wright', 'scott', 'hill', 'green', 'adams', 'baker', 'nelson', 'carter', 'mitchell', 'roberts',
  'evans', 'turner', 'phillips', 'campbell', 'parker', 'collins', 'edwards', 'stewart', 'morris', 'murphy',
  'patel', 'shah', 'nguyen', 'chen', 'wang', 'kim', 'singh', 'khan', 'okafor', 'mensah',
  'schmidt', 'muller', 'rossi', 'dubois', 'silva', 'santos', 'tanaka', 'sato', 'johansson', 'novak',
  'cook', 'rogers', 'morgan', 'bell', 'murray', 'bailey', 'cooper', 'richardson', 'cox', 'howard',
  'ward', 'torres', 'peterson', 'gray', 'ramirez', 'james', 'watson', 'brooks', 'kelly', 'sanders',
  'price', 'bennett', 'wood', 'barnes', 'ross', 'henderson', 'coleman', 'jenkins', 'perry', 'powell',
  'weber', 'schneider', 'fischer', 'meyer', 'wagner', 'becker', 'hoffmann', 'kowalski', 'nowak', 'wojcik',
  'bernard', 'petit', 'moreau', 'laurent', 'ferrari', 'russo', 'esposito', 'romano', 'ivanov', 'petrov',
];
// biome-ignore format: packed lists read better than one word a line
const WORDS = [
  'blue', 'river', 'stone', 'north', 'bright', 'maple', 'harbor', 'summit', 'cedar', 'falcon',
  'green', 'silver', 'oak', 'pine', 'lake', 'iron', 'golden', 'swift', 'clear', 'red',
  'forge', 'peak', 'bridge', 'field', 'hollow', 'ridge', 'meadow', 'crest', 'grove', 'brook',
  'atlas', 'nova', 'orbit', 'pixel', 'vector', 'quartz', 'ember', 'lumen', 'zenith', 'vertex',
  'acme', 'apex', 'core', 'prime', 'true', 'bold', 'keen', 'wise', 'fair', 'grand',
  'works', 'labs', 'studio', 'group', 'partners', 'systems', 'design', 'craft', 'trade', 'legal',
];

const MAILBOX_PROVIDERS = weightedPicker<string>([
  ['gmail.com', 38],
  ['outlook.com', 9],
  ['hotmail.com', 7],
  ['yahoo.com', 8],
  ['icloud.com', 7],
  ['live.com', 2],
  ['aol.com', 1],
  ['comcast.net', 2],
  ['btinternet.com', 2],
  ['gmx.de', 2],
  ['web.de', 2],
  ['t-online.de', 1],
  ['proton.me', 1],
  ['orange.fr', 1],
]);

const DISPOSABLE_DOMAINS = [
  'yopmail.com',
  'guerrillamail.com',
  'sharklasers.com',
  '10minutemail.com',
  'mailinator.com',
  'temp-mail.org',
  'maildrop.cc',
  'dispostable.com',
  'getnada.com',
  'trashmail.com',
  'mail.tm',
  'emailondeck.com',
];

// Checked against the bundled ASN data: every address in these maps to the ISP, none to hosting.
const RESIDENTIAL_V4: ReadonlyArray<readonly [base: string, bits: number]> = [
  ['73.0.0.0', 8], // Comcast
  ['67.160.0.0', 11], // Comcast
  ['76.80.0.0', 12], // Charter
  ['174.96.0.0', 12], // Charter
  ['86.128.0.0', 10], // BT
  ['31.48.0.0', 13], // BT
  ['90.192.0.0', 11], // Sky UK
  ['79.192.0.0', 10], // Deutsche Telekom
  ['84.128.0.0', 10], // Deutsche Telekom
  ['91.0.0.0', 10], // Deutsche Telekom
  ['93.192.0.0', 10], // Deutsche Telekom
];
// Leading hextets and how many bits of the next one are the ISP's (the rest is the customer's).
const RESIDENTIAL_V6: ReadonlyArray<readonly [h0: number, h1: number, fixedBits: number]> = [
  [0x2601, 0x0000, 4], // Comcast 2601::/20
  [0x2600, 0x1700, 12], // AT&T 2600:1700::/28
  [0x2a00, 0x23c0, 13], // BT 2a00:23c0::/29
];
// Cloud networks (all on the hosting list): DigitalOcean, Hetzner, AWS, Vultr, Google Cloud.
const CLOUD_V4: ReadonlyArray<readonly [base: string, bits: number]> = [
  ['159.89.0.0', 16],
  ['167.99.0.0', 16],
  ['134.209.0.0', 16],
  ['188.166.0.0', 16],
  ['139.59.0.0', 16],
  ['95.216.0.0', 16],
  ['65.21.0.0', 16],
  ['54.160.0.0', 12],
  ['3.80.0.0', 12],
  ['45.77.0.0', 16],
  ['35.190.0.0', 16],
];
/** T-Mobile USA (AS21928): one NAT pool, three public addresses in one /24. */
const CGNAT_IPS = ['172.56.17.23', '172.56.17.88', '172.56.17.141'];

// US area codes libphonenumber accepts with any exchange 200-999 (checked), and German mobile prefixes.
// biome-ignore format: packed lists read better than one code a line
const US_AREA = [
  201, 202, 206, 212, 213, 214, 215, 216, 301, 303, 305, 310, 312, 313, 314, 404, 407, 408, 410, 412,
  415, 503, 504, 512, 602, 614, 617, 619, 646, 702, 704, 713, 718, 720, 773, 801, 813, 818, 904, 917,
];
const DE_MOBILE = [1512, 1515, 1517, 1520, 1522, 1570, 1573, 1575, 1577, 1590, 1601, 1609, 1701, 1712];

const TLS = {
  chrome: 't13d1516h2_8daaf6152771_02713d6af862',
  chromeMobile: 't13d1516h2_8daaf6152771_e5627efa2ab1',
  firefox: 't13d1715h2_5b57614c22b0_3d5424432f57',
  safari: 't13d2014h2_a09f3c656075_14788d8d241b',
  okhttp: 't13d1713h2_5b57614c22b0_eca864cca44a',
  go: 't13d1311h2_f57a46bbacb6_e7c285222651',
  python: 't13i1810h1_85036bcba153_b26ce05bbdd6',
} as const;

interface Browser {
  ua: string;
  tls: string;
  mobile: boolean;
}

/**
 * The user agents people arrive with: a few reduced Chrome strings shared by a large share of all
 * accounts, and a long tail (Samsung models, in-app browsers) whose buckets grow with the user base.
 */
function browserCatalog(): { desktop: (rng: Rng) => Browser; mobile: (rng: Rng) => Browser } {
  const desktop: Array<readonly [Browser, number]> = [];
  const mobile: Array<readonly [Browser, number]> = [];
  const recency = (v: number, newest: number) => 0.6 ** (newest - v);
  for (let v = 124; v <= 131; v++) {
    const platforms: ReadonlyArray<readonly [string, number]> = [
      ['Windows NT 10.0; Win64; x64', 60],
      ['Macintosh; Intel Mac OS X 10_15_7', 28],
      ['X11; Linux x86_64', 5],
      ['X11; CrOS x86_64 14541.0.0', 4],
    ];
    for (const [os, w] of platforms) {
      const ua = `Mozilla/5.0 (${os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${v}.0.0.0 Safari/537.36`;
      desktop.push([{ ua, tls: TLS.chrome, mobile: false }, 0.35 * w * recency(v, 131)]);
      if (os.startsWith('Windows')) {
        desktop.push([
          { ua: `${ua} Edg/${v}.0.0.0`, tls: TLS.chrome, mobile: false },
          0.06 * w * recency(v, 131),
        ]);
      }
    }
    const android = `Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${v}.0.0.0 Mobile Safari/537.36`;
    mobile.push([{ ua: android, tls: TLS.chromeMobile, mobile: true }, 14 * recency(v, 131)]);
  }
  for (const v of [128, 131, 132, 133]) {
    for (const [os, w] of [
      ['Windows NT 10.0; Win64; x64', 3],
      ['Macintosh; Intel Mac OS X 10.15', 1],
      ['X11; Ubuntu; Linux x86_64', 1],
    ] as const) {
      const ua = `Mozilla/5.0 (${os}; rv:${v}.0) Gecko/20100101 Firefox/${v}.0`;
      desktop.push([{ ua, tls: TLS.firefox, mobile: false }, w * (v === 133 ? 1 : 0.4)]);
    }
  }
  for (const [v, w] of [
    ['17.4', 1],
    ['17.5', 1],
    ['17.6', 2],
    ['18.0', 3],
    ['18.1', 4],
  ] as const) {
    const ua = `Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/${v} Safari/605.1.15`;
    desktop.push([{ ua, tls: TLS.safari, mobile: false }, w * 0.8]);
  }
  const ios = ['16_7_10', '17_5_1', '17_6_1', '18_0', '18_0_1', '18_1', '18_1_1'];
  ios.forEach((os, i) => {
    const version = os.split('_').slice(0, 2).join('.');
    for (const device of ['iPhone', 'iPad']) {
      const ua = `Mozilla/5.0 (${device}; CPU ${device === 'iPad' ? 'OS' : 'iPhone OS'} ${os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/${version} Mobile/15E148 Safari/604.1`;
      mobile.push([{ ua, tls: TLS.safari, mobile: true }, (device === 'iPad' ? 0.6 : 4) * (i + 1)]);
    }
  });
  // biome-ignore format: packed lists read better than one model a line
  const models = [
    'SM-S918B', 'SM-S911B', 'SM-S921B', 'SM-S928B', 'SM-A546B', 'SM-A346B', 'SM-A155F', 'SM-A256B', 'SM-G991B',
    'SM-G998B', 'SM-A536B', 'SM-A525F', 'SM-M336B', 'SM-F946B', 'SM-F731B', 'SM-X210', 'SM-A057F', 'SM-A145R',
  ];
  models.forEach((model, m) => {
    for (const [sb, chrome] of [
      ['24.0', 117],
      ['25.0', 121],
      ['26.0', 122],
    ] as const) {
      const ua = `Mozilla/5.0 (Linux; Android 14; ${model}) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/${sb} Chrome/${chrome}.0.0.0 Mobile Safari/537.36`;
      mobile.push([{ ua, tls: TLS.chromeMobile, mobile: true }, 0.3 / (1 + m * 0.3)]);
    }
  });
  // In-app browsers carry the app build and the device: thousands of distinct strings, each rare.
  const apps = [
    'Instagram 356.0.0.25.109',
    'Instagram 357.1.0.52.100',
    'FBAV/489.0.0.40.109',
    'FBAV/490.0.0.27.108',
  ];
  const iphones = [
    'iPhone14,2',
    'iPhone14,5',
    'iPhone15,2',
    'iPhone15,3',
    'iPhone15,4',
    'iPhone16,1',
    'iPhone16,2',
  ];
  for (const app of apps) {
    for (const model of iphones) {
      for (const os of ios.slice(2)) {
        const ua = `Mozilla/5.0 (iPhone; CPU iPhone OS ${os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 ${app} (${model}; iOS ${os}; en_US)`;
        mobile.push([{ ua, tls: TLS.safari, mobile: true }, 0.05]);
      }
    }
  }
  return { desktop: weightedPicker(desktop), mobile: weightedPicker(mobile) };
}

// ---------------------------------------------------------------------------------------------
// Addresses

const ipv4ToInt = (text: string): number =>
  text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
const intToIpv4 = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

interface V4Pool {
  base: number;
  subnets: number;
}
const pools = (list: ReadonlyArray<readonly [string, number]>): Array<readonly [V4Pool, number]> =>
  list.map(
    ([base, bits]) => [{ base: ipv4ToInt(base), subnets: 2 ** (24 - bits) }, 2 ** (32 - bits)] as const,
  );

const residentialPool = weightedPicker(pools(RESIDENTIAL_V4));
const cloudPool = weightedPicker(pools(CLOUD_V4));

/** A /24 (as its first address) drawn from a pool. */
function subnet24(rng: Rng, pick: (rng: Rng) => V4Pool): number {
  const pool = pick(rng);
  return (pool.base + rng.int(pool.subnets) * 256) >>> 0;
}
const hostIn = (rng: Rng, net24: number): string => intToIpv4((net24 + 1 + rng.int(254)) >>> 0);
const residentialV4 = (rng: Rng): string => hostIn(rng, subnet24(rng, residentialPool));

/** The first four hextets of a residential /64. */
function residentialPrefix64(rng: Rng): string {
  const [h0, h1, fixedBits] = rng.pick(RESIDENTIAL_V6);
  const free = 16 - fixedBits;
  const second = (h1 | rng.int(2 ** free)) & 0xffff;
  return [h0, second, rng.int(0x10000), rng.int(0x10000)].map((h) => h.toString(16)).join(':');
}
// Privacy addresses: every device in a home picks its own interface id inside the one /64.
const inPrefix64 = (rng: Rng, prefix: string): string =>
  `${prefix}:${[0, 0, 0, 0].map(() => rng.int(0x10000).toString(16)).join(':')}`;

// ---------------------------------------------------------------------------------------------
// The generator

export function createPopulation(opts: PopulationOptions): Population {
  const rng = createRng(opts.seed);
  const start = opts.end - YEAR;
  const browsers = browserCatalog();
  const firstName = zipfPicker(FIRST.length, 0.5);
  const lastName = zipfPicker(LAST.length, 0.5);
  const ownDomainIndex = zipfPicker(WORDS.length * WORDS.length * 3, 0.6);
  const taken = new Set<string>();
  const usedDomains = new Set<string>();
  const accounts: Record<Role, number> = { solo: 0, household: 0, office: 0, cgnat: 0, farm: 0 };
  const entities: Record<Role, number> = { solo: 0, household: 0, office: 0, cgnat: 0, farm: 0 };
  const queue: Member[] = [];
  let serial = 0;

  const iso = (ms: number): string =>
    new Date(Math.min(opts.end, Math.max(start, Math.round(ms)))).toISOString();
  const anyTime = (): number => start + rng.next() * YEAR;

  /** Takes the mailbox if no account has it yet (after the provider's folding of dots and tags). */
  function claim(address: string): boolean {
    const parsed = parseEmail(address);
    if (!parsed.ok) throw new Error(`population: generated an invalid address ${address}: ${parsed.detail}`);
    const key = canonicalEmail(parsed.value);
    if (taken.has(key)) return false;
    taken.add(key);
    return true;
  }

  /** Like people whose name is taken: the same name with other digits until it is free. */
  function uniqueAddress(local: string, domain: string, retry: (attempt: number) => string): string {
    let address = `${local}@${domain}`;
    for (let attempt = 1; !claim(address); attempt++) address = `${retry(attempt)}@${domain}`;
    return address;
  }

  function personalLocal(first: string, last: string, domain: string): string {
    const style = rng.int(7);
    const underscoreOk = domain !== 'gmail.com';
    const name =
      style === 0
        ? `${first}.${last}`
        : style === 1
          ? `${first}${last}`
          : style === 2
            ? `${first.charAt(0)}${last}`
            : style === 3
              ? `${first}.${last.charAt(0)}`
              : style === 4
                ? `${last}.${first}`
                : style === 5 && underscoreOk
                  ? `${first}_${last}`
                  : `${first}${last.charAt(0)}`;
    const d = rng.next();
    const digits =
      d < 0.4
        ? ''
        : d < 0.7
          ? String(rng.range(1, 99))
          : d < 0.9
            ? String(rng.range(1960, 2008))
            : String(rng.range(100, 999));
    return `${name}${digits && rng.chance(0.15) ? '.' : ''}${digits}`;
  }

  function personalEmail(last = LAST[lastName(rng)]!): string {
    const first = FIRST[firstName(rng)]!;
    let domain: string;
    if (rng.chance(0.05)) {
      // Small businesses and family domains: mostly a handful of accounts each, a few larger.
      const k = ownDomainIndex(rng);
      const a = WORDS[k % WORDS.length]!;
      const b = WORDS[Math.floor(k / WORDS.length) % WORDS.length]!;
      domain = `${a}${b}.${['com', 'net', 'co.uk'][Math.floor(k / WORDS.length ** 2)]}`;
    } else {
      domain = MAILBOX_PROVIDERS(rng);
    }
    const local = personalLocal(first, last, domain);
    return uniqueAddress(
      local,
      domain,
      (attempt) => `${local.replace(/[0-9.]+$/, '')}${rng.range(10, 99) * attempt}${rng.digits(2)}`,
    );
  }

  function phone(): string {
    if (rng.chance(0.8)) return `+1${rng.pick(US_AREA)}${rng.range(200, 999)}${rng.digits(4)}`;
    return `+49${rng.pick(DE_MOBILE)}${rng.digits(7)}`;
  }

  function browser(mobile: boolean): Browser {
    return mobile ? browsers.mobile(rng) : browsers.desktop(rng);
  }

  function push(role: Role, createdAt: number, fields: Omit<ImportRecord, 'externalId' | 'createdAt'>): void {
    serial++;
    queue.push({ role, record: { externalId: `bl-${serial}`, createdAt: iso(createdAt), ...fields } });
  }

  /** The device-level fields of a person on their own device and browser. */
  function person(
    mobile: boolean,
    phoneShare: number,
  ): Omit<ImportRecord, 'externalId' | 'createdAt' | 'ip'> {
    const b = browser(mobile);
    return {
      email: personalEmail(),
      ...(rng.chance(0.95) ? { fingerprint: rng.hex(20) } : {}),
      ...(rng.chance(0.9) ? { tlsFingerprint: b.tls } : {}),
      userAgent: b.ua,
      ...(rng.chance(phoneShare) ? { phone: phone() } : {}),
    };
  }

  const solo = (): void => {
    const mobile = rng.chance(0.45);
    const ip = rng.chance(0.3) ? inPrefix64(rng, residentialPrefix64(rng)) : residentialV4(rng);
    push('solo', anyTime(), { ...person(mobile, 0.3), ip });
  };

  const household = (): void => {
    const size = rng.pick([2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5, 5]);
    const v6 = rng.chance(0.3) ? residentialPrefix64(rng) : null;
    const sharedIp = v6 ? null : residentialV4(rng);
    const family = LAST[lastName(rng)]!;
    // The first member joins at some point in the year, the others over the following months.
    const first = start + rng.next() * (YEAR - 30 * DAY);
    const familyDevice = rng.chance(0.25) ? rng.hex(20) : null;
    for (let i = 0; i < size; i++) {
      const at = i === 0 ? first : first + rng.next() * Math.min(120 * DAY, opts.end - first);
      const fields = person(rng.chance(0.5), 0.3);
      const email = rng.chance(0.5) ? personalEmail(family) : fields.email;
      push('household', at, {
        ...fields,
        email,
        ...(familyDevice && i < 2 ? { fingerprint: familyDevice } : {}),
        ip: v6 ? inPrefix64(rng, v6) : sharedIp!,
      });
    }
  };

  function freshDomain(make: () => string): string {
    let domain = make();
    for (let n = 2; usedDomains.has(domain); n++) domain = make().replace('.', `${n}.`);
    usedDomains.add(domain);
    return domain;
  }

  const office = (): void => {
    const university = rng.chance(0.4);
    const size = university ? rng.logUniform(150, 400) : rng.logUniform(8, 150);
    const nat = residentialV4(rng);
    const a = rng.pick(WORDS);
    const b = rng.pick(WORDS);
    const domain = freshDomain(() => (university ? `${a}${b}-university.edu` : `${a}${b}.com`));
    // Students arrive around the two semester starts; staff at any time.
    const terms = [start + 60 * DAY, start + 240 * DAY];
    for (let i = 0; i < size; i++) {
      const fields = person(rng.chance(university ? 0.5 : 0.25), 0.1);
      let email = fields.email;
      let at = anyTime();
      if (university && rng.chance(0.85)) {
        email = uniqueAddress(
          `s${rng.range(2000000, 2999999)}`,
          `student.${domain}`,
          () => `s${rng.range(2000000, 2999999)}`,
        );
        at = rng.pick(terms) + (rng.next() + rng.next() + rng.next() - 1.5) * 14 * DAY;
      } else if (rng.chance(0.7)) {
        const first = FIRST[firstName(rng)]!;
        const last = LAST[lastName(rng)]!;
        const local = rng.chance(0.6) ? `${first}.${last}` : `${first.charAt(0)}${last}`;
        email = uniqueAddress(local, domain, (attempt) => `${local}${attempt + 1}`);
      }
      push('office', at, { ...fields, email, ip: nat });
    }
  };

  const cgnat = (): void => {
    push('cgnat', anyTime(), { ...person(true, 0.4), ip: rng.pick(CGNAT_IPS) });
  };

  /** Farms work in bursts: a few sessions of minutes to hours, days apart. */
  function burstTimes(size: number): number[] {
    const bursts = rng.range(1, 5);
    let at = start + rng.next() * (YEAR - 50 * DAY);
    const windows: Array<readonly [number, number]> = [];
    for (let i = 0; i < bursts; i++) {
      windows.push([at, rng.logUniform(10, 360) * MINUTE]);
      at += rng.range(1, 10) * DAY;
    }
    return Array.from({ length: size }, (_, i) => {
      const [from, length] = windows[i % windows.length]!;
      return from + rng.next() * length;
    });
  }

  /** Addresses a farm reuses inside the few cloud /24s it rents. */
  function cloudAddresses(size: number): string[] {
    const nets = Array.from({ length: rng.range(1, 4) }, () => subnet24(rng, cloudPool));
    return Array.from({ length: Math.max(2, Math.ceil(size / 5)) }, () => hostIn(rng, rng.pick(nets)));
  }

  // Random-looking locals with the run lengths of one generator template, e.g. a3d2a2d2 -> kqz48fj91.
  const TEMPLATES = ['a3d2a2d2', 'a2d2a2d1a1', 'a4d3a2d1', 'a1d3a3d2', 'a2d1a3d3'];
  const fromTemplate = (template: string): string =>
    (template.match(/[ad]\d/g) ?? [])
      .map((run) => (run[0] === 'a' ? rng.letters(Number(run[1])) : rng.digits(Number(run[1]))))
      .join('');

  const farm = (): void => {
    const size = rng.logUniform(20, 500);
    const times = burstTimes(size);
    const kind = rng.int(3);
    if (kind === 0) {
      // Emulator farm: a couple of device images, disposable mailboxes, rented cloud addresses.
      const devices = Array.from({ length: rng.range(1, 3) }, () => rng.hex(20));
      const domains = Array.from({ length: rng.range(1, 2) }, () => rng.pick(DISPOSABLE_DOMAINS));
      const template = rng.pick(TEMPLATES);
      const ips = cloudAddresses(size);
      const ua = `Mozilla/5.0 (Linux; Android 11; sdk_gphone_x86) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${rng.range(118, 131)}.0.0.0 Mobile Safari/537.36`;
      const tls = rng.chance(0.5) ? TLS.okhttp : TLS.chromeMobile;
      for (const at of times) {
        const domain = rng.pick(domains);
        push('farm', at, {
          email: uniqueAddress(fromTemplate(template), domain, () => fromTemplate(template)),
          ip: rng.pick(ips),
          fingerprint: rng.pick(devices),
          tlsFingerprint: tls,
          userAgent: ua,
        });
      }
    } else if (kind === 1) {
      // Freemail farm: one human-looking name with a counter, residential proxies, an anti-detect
      // browser (a new fingerprint each time), numbers bought in consecutive blocks.
      const first = rng.pick(FIRST);
      const last = rng.pick(LAST);
      const base = rng.chance(0.5) ? `${first}${last}` : `${first}.${last}.`;
      const domain = rng.pick(['gmail.com', 'gmail.com', 'outlook.com', 'yahoo.com']);
      const uas = Array.from({ length: rng.range(1, 2) }, () => browsers.desktop(rng));
      let counter = rng.range(1000, 8000);
      const bump = (by: number): number => {
        counter += by;
        return counter;
      };
      let number = Number(
        `${rng.pick(US_AREA)}${rng.range(200, 999)}${String(rng.range(0, 98)).padStart(2, '0')}00`,
      );
      const phones = rng.chance(0.6);
      for (const at of times) {
        const b = rng.pick(uas);
        const phone = phones && rng.chance(0.8) ? `+1${number}` : null;
        number += rng.range(1, 2);
        push('farm', at, {
          email: uniqueAddress(`${base}${bump(rng.range(1, 3))}`, domain, () => `${base}${bump(1)}`),
          ip: residentialV4(rng),
          fingerprint: rng.hex(20),
          tlsFingerprint: b.tls,
          userAgent: b.ua,
          ...(phone ? { phone } : {}),
        });
      }
    } else {
      // Cloud farm: its own catch-all domain, a headless browser or a script, rented addresses.
      const domain = freshDomain(
        () => `${rng.pick(WORDS)}${rng.range(10, 99)}.${rng.pick(['xyz', 'top', 'online', 'site', 'shop'])}`,
      );
      const word = rng.pick(WORDS);
      const template = rng.chance(0.5) ? rng.pick(TEMPLATES) : null;
      const ips = cloudAddresses(size);
      const headless = rng.chance(0.6);
      const device = rng.hex(20);
      const v = rng.range(118, 131);
      const ua = headless
        ? `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/${v}.0.0.0 Safari/537.36`
        : rng.pick(['python-requests/2.31.0', 'Go-http-client/2.0', 'axios/1.6.8']);
      const tls = headless ? TLS.chrome : ua.startsWith('python') ? TLS.python : TLS.go;
      let counter = rng.range(1, 300);
      const nextLocal = (): string => {
        if (template) return fromTemplate(template);
        counter++;
        return `${word}${counter}`;
      };
      for (const at of times) {
        push('farm', at, {
          email: uniqueAddress(nextLocal(), domain, nextLocal),
          ip: rng.pick(ips),
          ...(headless ? { fingerprint: device } : {}),
          tlsFingerprint: tls,
          userAgent: ua,
        });
      }
    }
  };

  const makers: Record<Role, () => void> = { solo, household, office, cgnat, farm };
  // Rarest first on ties, so that even the first thousand accounts hold a farm.
  const order: readonly Role[] = ['farm', 'cgnat', 'office', 'household', 'solo'];

  return {
    next(): Member {
      while (queue.length === 0) {
        // The role furthest behind its share makes the next entity.
        let role: Role = 'solo';
        let lag = Number.POSITIVE_INFINITY;
        for (const r of order) {
          const ratio = accounts[r] / ROLE_SHARES[r];
          if (ratio < lag) {
            lag = ratio;
            role = r;
          }
        }
        const before = queue.length;
        makers[role]();
        accounts[role] += queue.length - before;
        entities[role]++;
      }
      return queue.shift()!;
    },
    accounts,
    entities,
  };
}
