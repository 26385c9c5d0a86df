// ASN database benchmark: `tsx bench/asn.ts [--mmdb path/to/file.mmdb]`.
// Reports load time, memory growth and lookup throughput for random IPv4 and IPv6 addresses.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadAsnDatabase } from '../src/signals/asn.ts';
import type { ParsedIp } from '../src/signals/ip.ts';
import { formatIpv4, formatIpv6Words, parseIp } from '../src/signals/ip.ts';

// tsx gives no way to pass --expose-gc, and memory figures without a full collection are noise.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function settle(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage();
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
const rate = (n: number): string => `${(n / 1e6).toFixed(2)} M/s`;

// A fixed-seed PRNG keeps runs comparable.
let seed = 0x2545f491;
function rand32(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

const mmdbIdx = process.argv.indexOf('--mmdb');
const mmdbPath = mmdbIdx > 0 ? process.argv[mmdbIdx + 1] : undefined;

const before = await settle();
const t0 = performance.now();
const db = await loadAsnDatabase(mmdbPath ? { mmdbPath } : {});
const loadMs = performance.now() - t0;
const peakRss = process.resourceUsage().maxRSS * 1024;
const after = await settle();

const N = 1_000_000;
// Uniform random IPv4 covers unrouted space too. IPv6 addresses are drawn from the /12s the RIRs
// allocate from (2001::/16 and 2400::/12 to 2c00::/12), so lookups run over real ranges instead of
// almost all missing, as uniform 128-bit values would.
const V6_BLOCKS = [0x2001, 0x2400, 0x2600, 0x2800, 0x2a00, 0x2c00];
// Strings are flattened as header values arrive flat; concatenated ones would measure V8's rope
// flattening instead of the parser.
const flat = (s: string): string => Buffer.from(s, 'latin1').toString('latin1');
const v4Text: string[] = [];
const v6Text: string[] = [];
for (let i = 0; i < N; i++) {
  v4Text.push(flat(formatIpv4(rand32())));
  const block = V6_BLOCKS[rand32() % V6_BLOCKS.length]!;
  const top16 = block === 0x2001 ? block : block | (rand32() & 0xf);
  const w = [((top16 << 16) | (rand32() & 0xffff)) >>> 0, rand32(), rand32(), rand32()];
  v6Text.push(flat(formatIpv6Words(w)));
}
const v4Parsed = v4Text.map((s) => parseIp(s)).filter((p): p is ParsedIp => p !== null);
const v6Parsed = v6Text.map((s) => parseIp(s)).filter((p): p is ParsedIp => p !== null);

function timeIt(label: string, fn: () => number): { label: string; opsPerSec: number; hits: number } {
  fn(); // warm-up pass so the JIT has compiled the path being measured
  const start = performance.now();
  const hits = fn();
  const secs = (performance.now() - start) / 1000;
  return { label, opsPerSec: N / secs, hits };
}

const results = [
  timeIt('IPv4 lookup(string)', () => {
    let hits = 0;
    for (const s of v4Text) if (db.lookup(s)) hits++;
    return hits;
  }),
  timeIt('IPv4 lookupParsed', () => {
    let hits = 0;
    for (const p of v4Parsed) if (db.lookupParsed(p)) hits++;
    return hits;
  }),
  timeIt('IPv6 lookup(string)', () => {
    let hits = 0;
    for (const s of v6Text) if (db.lookup(s)) hits++;
    return hits;
  }),
  timeIt('IPv6 lookupParsed', () => {
    let hits = 0;
    for (const p of v6Parsed) if (db.lookupParsed(p)) hits++;
    return hits;
  }),
  timeIt('parseIp IPv4', () => {
    let ok = 0;
    for (const s of v4Text) if (parseIp(s)) ok++;
    return ok;
  }),
  timeIt('parseIp IPv6', () => {
    let ok = 0;
    for (const s of v6Text) if (parseIp(s)) ok++;
    return ok;
  }),
];

console.log(`ASN database (${db.stats.source}${mmdbPath ? `: ${mmdbPath}` : ''}), Node ${process.version}`);
console.table({
  load: { value: `${loadMs.toFixed(0)} ms` },
  'heap growth': { value: mb(after.heapUsed - before.heapUsed) },
  'array buffers growth': { value: mb(after.arrayBuffers - before.arrayBuffers) },
  'RSS growth': { value: mb(after.rss - before.rss) },
  'peak RSS during load': { value: mb(peakRss - before.rss) },
  'IPv4 ranges': { value: db.stats.ipv4Ranges },
  'IPv6 ranges': { value: db.stats.ipv6Ranges },
  'distinct (asn, org)': { value: db.stats.entries },
  'overlaps resolved': { value: db.stats.overlapsResolved },
});
console.table(
  Object.fromEntries(
    results.map((r) => [
      r.label,
      { rate: rate(r.opsPerSec), 'hit rate': `${((100 * r.hits) / N).toFixed(1)}%` },
    ]),
  ),
);
