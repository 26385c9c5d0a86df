import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Rng } from './rng.ts';

// Addresses come from the real routing data Gatehouse itself reads (@ip-location-db/asn), so an
// address meant to be a Comcast home line resolves to Comcast inside Gatehouse too. Ranges that
// overlap another row are skipped: which ASN wins inside an overlap is the reader's choice, and the
// simulator must not guess it.

export const RESIDENTIAL = {
  us: [7922, 20115, 11351, 11427, 10796, 22773, 7018, 701, 209, 5650],
  gb: [2856, 5607, 5089, 13285],
  de: [3320, 3209],
  fr: [3215, 12322, 15557],
  es: [3352],
  nl: [1136],
  ca: [812, 577, 852],
  au: [1221, 7545],
  it: [3269],
  br: [26599, 28573],
  in: [45609, 55836],
} as const;

export type Country = keyof typeof RESIDENTIAL;

/** Mobile carriers: their subscribers reach the internet through a few shared CGNAT addresses. */
export const MOBILE_CARRIERS: ReadonlyArray<{ asn: number; country: Country; name: string }> = [
  { asn: 21928, country: 'us', name: 'T-Mobile US' },
  { asn: 22394, country: 'us', name: 'Verizon Wireless' },
  { asn: 20057, country: 'us', name: 'AT&T Mobility' },
  { asn: 25135, country: 'gb', name: 'Vodafone UK' },
  { asn: 35228, country: 'gb', name: 'O2 UK' },
  { asn: 3320, country: 'de', name: 'Telekom' },
  { asn: 3215, country: 'fr', name: 'Orange' },
];

export const CLOUD = [16509, 14061, 16276, 24940, 396982, 20473, 8075, 63949] as const;
/** Exit networks of commercial VPNs. */
export const VPN = [9009, 60068, 212238] as const;
export const UNIVERSITY = [786, 680] as const;
export const BUSINESS = [701, 2856, 3320, 7018] as const;

interface Range {
  start: number;
  end: number;
}

const ALL_ASNS = new Set<number>([
  ...Object.values(RESIDENTIAL).flat(),
  ...MOBILE_CARRIERS.map((c) => c.asn),
  ...CLOUD,
  ...VPN,
  ...UNIVERSITY,
  ...BUSINESS,
]);

let cached: Map<number, Range[]> | undefined;

function csvPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@ip-location-db/asn/package.json')), 'asn-ipv4-num.csv');
}

/** Usable IPv4 ranges (at least a /24, no overlap with another row) of every ASN above. */
export function loadRanges(): Map<number, Range[]> {
  if (cached) return cached;
  const text = readFileSync(csvPath(), 'utf8');
  const byAsn = new Map<number, Range[]>();
  let maxEnd = -1;
  let holder: Range | undefined;
  const overlapped = new Set<Range>();
  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    const c1 = text.indexOf(',', pos);
    const c2 = text.indexOf(',', c1 + 1);
    const c3 = text.indexOf(',', c2 + 1);
    if (c1 > 0 && c3 > 0 && c3 < nl) {
      const start = Number(text.slice(pos, c1));
      const end = Number(text.slice(c1 + 1, c2));
      const asn = Number(text.slice(c2 + 1, c3));
      const range = { start, end };
      if (start <= maxEnd) {
        overlapped.add(range);
        if (holder) overlapped.add(holder);
      }
      if (end > maxEnd) {
        maxEnd = end;
        holder = range;
      }
      if (ALL_ASNS.has(asn) && end - start >= 255) {
        const list = byAsn.get(asn) ?? [];
        list.push(range);
        byAsn.set(asn, list);
      }
    }
    pos = nl + 1;
  }
  for (const [asn, list] of byAsn) {
    const clean = list.filter((r) => !overlapped.has(r));
    byAsn.set(asn, clean.length > 0 ? clean : list);
  }
  cached = byAsn;
  return byAsn;
}

const dotted = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

/** Picks addresses inside the real ranges of an ASN. */
export class Networks {
  private readonly ranges = loadRanges();
  private readonly weights = new Map<number, number[]>();

  /** The first address of a random /24 of the ASN. */
  subnet(rng: Rng, asn: number): number {
    const list = this.ranges.get(asn);
    if (!list || list.length === 0) throw new Error(`no address ranges for AS${asn}`);
    // Larger ranges hold more customers; the square root lets small ones appear too.
    let weights = this.weights.get(asn);
    if (!weights) {
      weights = list.map((r) => Math.sqrt(r.end - r.start + 1));
      this.weights.set(asn, weights);
    }
    const range = list[rng.weightedIndex(weights)] as Range;
    const first = Math.ceil(range.start / 256) * 256;
    const last = Math.floor((range.end + 1) / 256) * 256 - 256;
    if (last < first) return range.start;
    const blocks = (last - first) / 256;
    return first + rng.int(0, blocks) * 256;
  }

  /** A host address (never .0 or .255) in a random /24 of the ASN. */
  address(rng: Rng, asn: number): string {
    return dotted(this.subnet(rng, asn) + rng.int(2, 254));
  }

  /** `count` distinct host addresses inside one /24 of the ASN: a carrier's CGNAT pool, a NAT block. */
  pool(rng: Rng, asn: number, count: number): string[] {
    const base = this.subnet(rng, asn);
    const hosts = rng.sample(
      Array.from({ length: 252 }, (_, i) => i + 2),
      Math.min(count, 252),
    );
    return hosts.map((h) => dotted(base + h));
  }

  residentialAsn(rng: Rng, country: Country): number {
    return rng.pick(RESIDENTIAL[country]);
  }
}
