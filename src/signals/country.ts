// IP → country (ISO 3166-1 alpha-2), for the detection workers (an account used from three countries
// in one hour). Default data: the numeric CSVs of @ip-location-db/geo-whois-asn-country — RIR WHOIS
// (CC BY 4.0, NRO: a product that shows these results must credit the NRO) refined by published
// geofeeds; the npm metadata says CC0-1.0, the README and NRO_LICENSE are the stricter reading.
//
// Same approach as asn.ts (loaded once, sorted typed arrays, binary search, no per-row objects),
// with a simpler layout because a country is two letters: the rows are flattened at load time into
// disjoint runs, so each family is one sorted array of run starts plus one Uint16 country index per
// run (0 = no country). IPv6 starts are four big-endian words, compared word by word.
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import type { Ipv6Words, ParsedIp } from './ip.ts';
import { parseIp } from './ip.ts';

export interface CountryDatabaseStats {
  readonly ipv4Rows: number;
  readonly ipv6Rows: number;
  /** Disjoint runs after flattening nested rows. */
  readonly runs: number;
  readonly countries: number;
  readonly loadMs: number;
}

export interface CountryDatabase {
  /** ISO 3166-1 alpha-2, or null for unparseable, private and unlisted addresses. */
  lookup(ip: string): string | null;
  lookupParsed(ip: ParsedIp): string | null;
  readonly stats: CountryDatabaseStats;
}

export interface LoadCountryOptions {
  /** Other copies of the numeric CSVs (e.g. the project's GitHub releases: npm updates are ending). */
  readonly ipv4CsvPath?: string;
  readonly ipv6CsvPath?: string;
}

const loaded = new Map<string, Promise<CountryDatabase>>();

/** Loads once per process per source; a failed load is forgotten so that a later call can retry. */
export function loadCountryDatabase(opts: LoadCountryOptions = {}): Promise<CountryDatabase> {
  const v4Path = resolvePath(opts.ipv4CsvPath ?? defaultCsvPath('geo-whois-asn-country-ipv4-num.csv'));
  const v6Path = resolvePath(opts.ipv6CsvPath ?? defaultCsvPath('geo-whois-asn-country-ipv6-num.csv'));
  const key = `${v4Path}|${v6Path}`;
  let pending = loaded.get(key);
  if (!pending) {
    pending = load(v4Path, v6Path);
    loaded.set(key, pending);
    pending.catch(() => loaded.delete(key));
  }
  return pending;
}

function defaultCsvPath(file: string): string {
  return createRequire(import.meta.url).resolve(`@ip-location-db/geo-whois-asn-country/${file}`);
}

async function load(v4Path: string, v6Path: string): Promise<CountryDatabase> {
  const t0 = performance.now();
  const names: string[] = [''];
  const indexOf = new Map<string, number>();
  const intern = (code: string): number => {
    let i = indexOf.get(code);
    if (i === undefined) {
      i = names.length;
      names.push(code);
      indexOf.set(code, i);
    }
    return i;
  };
  const v4 = await readRuns(v4Path, V4, intern);
  const v6 = await readRuns(v6Path, V6, intern);
  const v4Starts = Uint32Array.from(v4.starts);
  const v6Starts = toWords(v6.starts);
  const v4Codes = v4.codes;
  const v6Codes = v6.codes;
  const stats: CountryDatabaseStats = {
    ipv4Rows: v4.rows,
    ipv6Rows: v6.rows,
    runs: v4.starts.length + v6.starts.length,
    countries: names.length - 1,
    loadMs: performance.now() - t0,
  };
  // The lookup holds the typed arrays only. The loader's arrays of starts (a JS number or BigInt
  // per run: ~15 MB, and ~275k BigInt objects) would otherwise live as long as the process, and
  // every mark-compact would trace them again.
  const lookupParsed = (ip: ParsedIp): string | null => {
    const run = ip.version === 4 ? findV4(v4Starts, ip.value) : findV6(v6Starts, ip.words);
    const code = run < 0 ? 0 : (ip.version === 4 ? v4Codes : v6Codes)[run]!;
    return code === 0 ? null : names[code]!;
  };
  return {
    stats,
    lookupParsed,
    lookup(ip: string) {
      const parsed = parseIp(ip);
      return parsed ? lookupParsed(parsed) : null;
    },
  };
}

interface Runs<T> {
  rows: number;
  starts: T[];
  codes: Uint16Array;
}

interface Family<T extends number | bigint> {
  readonly max: T;
  /** The row's address, or null when the text is not one. */
  parse(text: string): T | null;
  next(v: T): T;
}

// IPv4 stays in plain numbers (exact up to 2^53); only IPv6 needs BigInt, once per process.
const V4: Family<number> = {
  max: 0xffffffff,
  parse: (t) => {
    const v = t.length > 0 && t.length <= 10 ? Number(t) : Number.NaN;
    return Number.isInteger(v) && v >= 0 && v <= 0xffffffff && isDigits(t) ? v : null;
  },
  next: (v) => v + 1,
};

const V6: Family<bigint> = {
  max: (1n << 128n) - 1n,
  parse: (t) => {
    if (t.length === 0 || t.length > 39 || !isDigits(t)) return null;
    const v = BigInt(t);
    return v <= V6.max ? v : null;
  },
  next: (v) => v + 1n,
};

function isDigits(t: string): boolean {
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

const isCountryCode = (t: string): boolean =>
  t.length === 2 &&
  t.charCodeAt(0) >= 65 &&
  t.charCodeAt(0) <= 90 &&
  t.charCodeAt(1) >= 65 &&
  t.charCodeAt(1) <= 90;

/**
 * Reads `start,end,CC` rows sorted by start and flattens them into disjoint runs. Rows nest (a
 * geofeed's /29 inside a WHOIS /22): as in asn.ts, the later row wins where it overlaps and the
 * earlier row resumes after it.
 */
async function readRuns<T extends number | bigint>(
  path: string,
  family: Family<T>,
  intern: (code: string) => number,
): Promise<Runs<T>> {
  const starts: T[] = [];
  const codes: number[] = [];
  const emit = (at: T, code: number): void => {
    const n = starts.length;
    if (n > 0 && starts[n - 1] === at) {
      codes[n - 1] = code;
      if (n > 1 && codes[n - 2] === code) {
        starts.pop();
        codes.pop();
      }
    } else if (n > 0 ? codes[n - 1] !== code : code !== 0) {
      starts.push(at);
      codes.push(code);
    }
  };
  // Rows still open, innermost last.
  const open: Array<{ end: T; code: number }> = [];
  const closeBefore = (at: T | null): void => {
    while (open.length > 0 && (at === null || open[open.length - 1]!.end < at)) {
      const end = open.pop()!.end;
      if (end === family.max) continue;
      const resume = family.next(end);
      while (open.length > 0 && open[open.length - 1]!.end < resume) open.pop();
      emit(resume, open[open.length - 1]?.code ?? 0);
    }
  };

  let line = 0;
  let lastStart: T | null = null;
  const fail = (why: string): never => {
    throw new Error(`country CSV ${path} line ${line}: ${why}`);
  };
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const text of lines) {
    line++;
    if (text === '') continue;
    const c1 = text.indexOf(',');
    const c2 = text.indexOf(',', c1 + 1);
    if (c1 < 0 || c2 < 0) fail('expected start,end,country');
    const start = family.parse(text.slice(0, c1));
    const end = family.parse(text.slice(c1 + 1, c2));
    const cc = text.slice(c2 + 1);
    if (start === null || end === null) return fail('bad address number');
    if (!isCountryCode(cc)) fail('bad country code');
    if (start > end) fail('range start after end');
    if (lastStart !== null && start < lastStart) fail('rows are not sorted by range start');
    lastStart = start;
    closeBefore(start);
    const code = intern(cc);
    emit(start, code);
    open.push({ end, code });
  }
  closeBefore(null);
  return { rows: line, starts, codes: Uint16Array.from(codes) };
}

function toWords(values: readonly bigint[]): Uint32Array {
  const out = new Uint32Array(values.length * 4);
  values.forEach((v, i) => {
    for (let k = 0; k < 4; k++) out[i * 4 + k] = Number((v >> BigInt(96 - 32 * k)) & 0xffffffffn);
  });
  return out;
}

/** Index of the last run starting at or before v, or -1. */
function findV4(starts: Uint32Array, v: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= v) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

function findV6(starts: Uint32Array, w: Ipv6Words): number {
  let lo = 0;
  let hi = starts.length / 4 - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (compareWords(starts, mid * 4, w) <= 0) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

function compareWords(a: Uint32Array, at: number, w: Ipv6Words): number {
  for (let k = 0; k < 4; k++) {
    const x = a[at + k]!;
    const y = w[k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
