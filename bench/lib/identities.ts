// Signup bodies that look like people signing up from home: a name-based e-mail on a big provider
// or an employer's domain, a residential IP, a browser user agent. Benchmarks need every request to
// pass, so each body is also unique where Gatehouse looks for reuse: the canonical e-mail (no
// email_in_use), the captcha token (single-use) and the IP (a fresh /24 most of the time).

export interface SignupBody {
  email: string;
  captchaToken: string;
  ip: string;
  fingerprint: string;
  userAgent: string;
  acceptLanguage: string;
}

// biome-ignore format: packed lists read better than one name a line
const FIRST = [
  'james', 'mary', 'robert', 'patricia', 'john', 'jennifer', 'michael', 'linda', 'david', 'elizabeth',
  'william', 'barbara', 'richard', 'susan', 'joseph', 'jessica', 'thomas', 'sarah', 'chris', 'karen',
  'daniel', 'nancy', 'matthew', 'lisa', 'anthony', 'betty', 'mark', 'sandra', 'paul', 'ashley',
  'steven', 'emily', 'andrew', 'michelle', 'josh', 'amanda', 'kevin', 'melissa', 'brian', 'stephanie',
  'oliver', 'amelia', 'harry', 'isla', 'jack', 'ava', 'george', 'olivia', 'noah', 'emma',
  'liam', 'sophie', 'ethan', 'grace', 'lucas', 'chloe', 'priya', 'arjun', 'wei', 'mei',
  'carlos', 'sofia', 'diego', 'lucia', 'omar', 'fatima', 'hiroshi', 'yuki', 'lars', 'ingrid',
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
];

// Weights roughly follow the providers' share of consumer signups; company domains are fictional
// but absent from every disposable list Gatehouse loads (checked), and not public providers, so
// they also exercise the per-domain velocity dimension that freemail skips.
const DOMAINS: ReadonlyArray<readonly [string, number]> = [
  ['gmail.com', 38],
  ['outlook.com', 9],
  ['hotmail.com', 7],
  ['live.com', 2],
  ['yahoo.com', 9],
  ['icloud.com', 6],
  ['aol.com', 1],
  ['comcast.net', 2],
  ['btinternet.com', 2],
  ['contoso.com', 3],
  ['fabrikam.com', 3],
  ['northwindtraders.com', 3],
  ['initech.com', 2],
  ['globex.com', 2],
  ['hooli.com', 2],
  ['piedpiper.com', 2],
  ['dundermifflin.com', 2],
  ['massivedynamic.com', 2],
  ['aperturescience.com', 2],
  ['wayneenterprises.com', 2],
];

// Each pool was checked against the bundled ASN data: every address maps to the ISP named, none to
// a hosting ASN. (98.0.0.0/8 was not used for Charter: parts of it are Amazon.)
const IP_POOLS: ReadonlyArray<{ isp: string; base: string; bits: number; weight: number }> = [
  { isp: 'Comcast AS7922', base: '73.0.0.0', bits: 8, weight: 4 },
  { isp: 'Comcast AS7922', base: '67.160.0.0', bits: 11, weight: 1 },
  { isp: 'Charter AS20001', base: '76.80.0.0', bits: 12, weight: 2 },
  { isp: 'Charter AS10796', base: '174.96.0.0', bits: 12, weight: 1 },
  { isp: 'BT AS2856', base: '86.128.0.0', bits: 10, weight: 2 },
  { isp: 'BT AS2856', base: '31.48.0.0', bits: 13, weight: 1 },
  { isp: 'Sky UK AS5607', base: '90.192.0.0', bits: 11, weight: 1 },
];

// biome-ignore format: one user agent a line is already the most readable
const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
];

const LANGUAGES = [
  'en-US,en;q=0.9',
  'en-GB,en;q=0.9',
  'en-US,en;q=0.9,es;q=0.8',
  'en-GB,en-US;q=0.9,en;q=0.8',
];

const ipv4ToInt = (text: string): number =>
  text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
const intToIpv4 = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

function weightedPicker<T>(items: ReadonlyArray<readonly [T, number]>): (r: number) => T {
  const total = items.reduce((sum, [, w]) => sum + w, 0);
  return (r) => {
    let x = r % total;
    for (const [item, w] of items) {
      if (x < w) return item;
      x -= w;
    }
    return items[0]![0];
  };
}

export interface IdentityFactory {
  next(): SignupBody;
  /** How many bodies were made so far. */
  readonly count: number;
}

/**
 * `runId` makes captcha tokens unique across runs against one siteverify server; `seed` fixes the
 * mix of names, domains and networks so runs with the same seed send comparable traffic.
 */
export function createIdentityFactory(runId: string, seed = 0x9e3779b9): IdentityFactory {
  // xorshift32: deterministic, and far cheaper per request than crypto randomness.
  let state = seed >>> 0 || 1;
  const rand = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const pick = <T>(list: readonly T[]): T => list[rand() % list.length]!;
  const pickDomain = weightedPicker(DOMAINS);
  const pools = IP_POOLS.map((p) => ({
    base: ipv4ToInt(p.base),
    // Number of /24s in the pool: a power of two, so an odd multiplier permutes it.
    subnets: 2 ** (24 - p.bits),
    used: 0,
  }));
  const pickPool = weightedPicker(pools.map((p, i) => [p, IP_POOLS[i]!.weight] as const));

  let n = 0;

  function nextIp(): string {
    const pool = pickPool(rand());
    const k = pool.used++;
    // Consecutive addresses from one pool land in scattered /24s rather than filling one /24 first,
    // as real signups do. Unique until a pool has handed out 254 per /24 (over half a million for
    // the smallest pool); past that addresses repeat, which the raised IP limits tolerate.
    const subnet = Math.imul(k % pool.subnets, 0x9e3779b1) & (pool.subnets - 1);
    const host = 1 + (Math.floor(k / pool.subnets) % 254);
    return intToIpv4((pool.base + subnet * 256 + host) >>> 0);
  }

  function nextEmail(serial: number): string {
    const first = pick(FIRST);
    const last = pick(LAST);
    const domain = pickDomain(rand());
    const style = rand() % 6;
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
                : // Gmail refuses underscores in addresses, so Gmail users never have them.
                  domain === 'gmail.com'
                  ? `${first}${last.charAt(0)}`
                  : `${first}_${last}`;
    // The serial is the address's whole trailing digit run (names hold no digits, no `+` or `-` tag
    // separators), so two addresses share a canonical form only if they share a serial: unique
    // even after Gmail's dot folding.
    const separator = rand() % 3 === 0 ? '.' : '';
    return `${name}${separator}${serial}@${domain}`;
  }

  return {
    get count() {
      return n;
    },
    next() {
      n++;
      return {
        email: nextEmail(n),
        captchaToken: `pass-${runId}-${n}`,
        ip: nextIp(),
        // A device fingerprint as client SDKs send it (20 hex digits), so that dimension is counted too.
        fingerprint: `${rand().toString(16).padStart(8, '0')}${rand().toString(16).padStart(8, '0')}${(n & 0xffff).toString(16).padStart(4, '0')}`,
        userAgent: pick(USER_AGENTS),
        acceptLanguage: pick(LANGUAGES),
      };
    },
  };
}
