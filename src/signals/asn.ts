// IP → ASN lookups. Default data: the numeric CSVs of @ip-location-db/asn (CC BY 4.0, RouteViews,
// NRO and DB-IP: a product that shows these results must credit DB-IP), held in typed arrays and
// binary-searched. Alternatively an MMDB (GeoLite2-ASN, IPinfo) read with `maxmind`.
//
// Memory layout, chosen so the ~515k ranges cost a few MB and no per-row JS objects:
// - IPv4: starts/ends as Uint32Array, one entry index per range (Uint32Array).
// - IPv6: starts/ends as Uint32Array with four big-endian words per address (the ranges are not all
//   /64-aligned, so the low half matters), compared word by word: no bigint on the hot path.
// - An entry is one (asn, organisation) pair. Each ASN carries a single organisation name in this
//   data, so rows share entries; the names are kept as raw UTF-8 in one arena and decoded on first
//   use, so loading creates almost no strings.
import { open as fsOpen } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { open as openMmdb } from 'maxmind';
import type { Ipv6Words, ParsedIp } from './ip.ts';
import { parseIp } from './ip.ts';

export interface AsnRecord {
  readonly asn: number;
  readonly org: string;
}

/** Range and entry counts are 0 for an MMDB source, which is searched in place. */
export interface AsnDatabaseStats {
  readonly source: 'ip-location-db' | 'mmdb';
  readonly ipv4Ranges: number;
  readonly ipv6Ranges: number;
  /** Distinct (asn, org) pairs. */
  readonly entries: number;
  /** Rows that overlapped an earlier one; the later start wins inside the overlap. */
  readonly overlapsResolved: number;
  readonly loadMs: number;
}

export interface AsnDatabase {
  /** Unparseable, private and unrouted addresses give null. Records are shared and frozen. */
  lookup(ip: string): AsnRecord | null;
  /** For callers that already hold a parsed address (the request path). */
  lookupParsed(ip: ParsedIp): AsnRecord | null;
  readonly stats: AsnDatabaseStats;
}

export interface LoadAsnOptions {
  /** Read this MMDB (GeoLite2-ASN or IPinfo layout) instead of the bundled CSVs. */
  readonly mmdbPath?: string;
  /**
   * Use other copies of the numeric CSVs (same format), e.g. fresher ones from the project's
   * GitHub releases: its README says the npm package will stop being updated.
   */
  readonly ipv4CsvPath?: string;
  readonly ipv6CsvPath?: string;
}

const loaded = new Map<string, Promise<AsnDatabase>>();

/**
 * Loads once per process per source: concurrent and later callers share the same promise and
 * therefore the same instance. A failed load is forgotten so that a later call can retry.
 */
export function loadAsnDatabase(opts: LoadAsnOptions = {}): Promise<AsnDatabase> {
  const mmdbPath = opts.mmdbPath ? resolvePath(opts.mmdbPath) : null;
  const v4Path = resolvePath(opts.ipv4CsvPath ?? defaultCsvPath('asn-ipv4-num.csv'));
  const v6Path = resolvePath(opts.ipv6CsvPath ?? defaultCsvPath('asn-ipv6-num.csv'));
  const key = mmdbPath ? `mmdb:${mmdbPath}` : `csv:${v4Path}|${v6Path}`;
  let pending = loaded.get(key);
  if (!pending) {
    pending = mmdbPath ? loadMmdb(mmdbPath) : loadCsv(v4Path, v6Path);
    loaded.set(key, pending);
    pending.catch(() => loaded.delete(key));
  }
  return pending;
}

/**
 * AS numbers that are private, reserved or for documentation (RFC 6996, 5398, 7300, 4893). The
 * bundled data has a handful of rows with them (e.g. AS65002); treat such a record as "unknown".
 */
export function isReservedAsn(asn: number): boolean {
  return (
    !Number.isInteger(asn) ||
    asn <= 0 ||
    asn === 23456 ||
    (asn >= 64496 && asn <= 131071) ||
    asn >= 4200000000
  );
}

function defaultCsvPath(file: string): string {
  return createRequire(import.meta.url).resolve(`@ip-location-db/asn/${file}`);
}

// --- MMDB ---------------------------------------------------------------------------------------

async function loadMmdb(path: string): Promise<AsnDatabase> {
  const t0 = performance.now();
  const reader = await openMmdb(path);
  const stats: AsnDatabaseStats = {
    source: 'mmdb',
    ipv4Ranges: 0,
    ipv6Ranges: 0,
    entries: 0,
    overlapsResolved: 0,
    loadMs: performance.now() - t0,
  };
  const lookupParsed = (ip: ParsedIp): AsnRecord | null => {
    let record: unknown;
    try {
      record = reader.get(ip.address);
    } catch {
      // An IPv4-only MMDB cannot answer for IPv6 addresses; that is "unknown", not an error.
      return null;
    }
    return normaliseMmdbRecord(record);
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

/**
 * GeoLite2-ASN: { autonomous_system_number: 123, autonomous_system_organization }.
 * IPinfo Lite: { asn: "AS123", as_name }; IPinfo's ASN database: { asn: "AS123", name }.
 */
export function normaliseMmdbRecord(record: unknown): AsnRecord | null {
  if (typeof record !== 'object' || record === null) return null;
  const r = record as Record<string, unknown>;
  let asn: number | null = null;
  if (typeof r.autonomous_system_number === 'number') {
    asn = r.autonomous_system_number;
  } else if (typeof r.asn === 'number') {
    asn = r.asn;
  } else if (typeof r.asn === 'string') {
    const m = /^(?:AS)?(\d{1,10})$/i.exec(r.asn.trim());
    if (m?.[1]) asn = Number(m[1]);
  }
  if (asn === null || !Number.isInteger(asn) || asn <= 0 || asn > 0xffffffff) return null;
  const orgField = r.autonomous_system_organization ?? r.as_name ?? r.name;
  return { asn, org: typeof orgField === 'string' ? orgField : '' };
}

// --- CSV ----------------------------------------------------------------------------------------

/** (asn, org) pairs shared by both address families; org bytes live in one growable arena. */
class EntryTable {
  asn = new Uint32Array(1 << 16);
  orgOffset = new Uint32Array(1 << 16);
  orgLength = new Uint32Array(1 << 16);
  count = 0;
  arena: Buffer = Buffer.allocUnsafe(1 << 20);
  arenaUsed = 0;
  // Open-addressing map asn → entry index on typed arrays: a Map<number, number> was a visible
  // share of the load time at ~515k lookups.
  private slotsAsn = new Uint32Array(1 << 18);
  private slotsIdx = new Int32Array(1 << 18).fill(-1);
  private slotsUsed = 0;
  private lastAsn = -1;
  private lastIdx = 0;
  // Filled with nulls up front in seal(): writing random indices into an empty array would turn it
  // into a slow dictionary-backed one.
  private records: (AsnRecord | null)[] = [];

  /** Entry index for this asn and the raw (still CSV-quoted) org bytes buf[start, end). */
  intern(asn: number, buf: Buffer, start: number, end: number): number {
    const known = asn === this.lastAsn ? this.lastIdx : this.find(asn);
    let idx: number;
    if (known < 0) {
      idx = this.add(asn, buf, start, end);
      this.remember(asn, idx);
    } else if (this.sameOrg(known, buf, start, end)) {
      idx = known;
    } else {
      // Same ASN under a different name: keep both names rather than guess. Not seen in current data.
      idx = this.add(asn, buf, start, end);
    }
    this.lastAsn = asn;
    this.lastIdx = idx;
    return idx;
  }

  private slotOf(asn: number): number {
    const mask = this.slotsAsn.length - 1;
    let h = Math.imul(asn, 0x9e3779b1) >>> 0;
    while (true) {
      const slot = h & mask;
      if (this.slotsIdx[slot] === -1 || this.slotsAsn[slot] === asn) return slot;
      h = (h + 1) >>> 0;
    }
  }

  private find(asn: number): number {
    return this.slotsIdx[this.slotOf(asn)]!;
  }

  private remember(asn: number, idx: number): void {
    if ((this.slotsUsed + 1) * 2 > this.slotsAsn.length) {
      const oldAsn = this.slotsAsn;
      const oldIdx = this.slotsIdx;
      this.slotsAsn = new Uint32Array(oldAsn.length * 2);
      this.slotsIdx = new Int32Array(oldAsn.length * 2).fill(-1);
      for (let i = 0; i < oldAsn.length; i++) {
        if (oldIdx[i] !== -1) {
          const slot = this.slotOf(oldAsn[i]!);
          this.slotsAsn[slot] = oldAsn[i]!;
          this.slotsIdx[slot] = oldIdx[i]!;
        }
      }
    }
    const slot = this.slotOf(asn);
    this.slotsAsn[slot] = asn;
    this.slotsIdx[slot] = idx;
    this.slotsUsed++;
  }

  private sameOrg(idx: number, buf: Buffer, start: number, end: number): boolean {
    const len = this.orgLength[idx]!;
    if (len !== end - start) return false;
    const arena = this.arena;
    const off = this.orgOffset[idx]! - start;
    for (let k = start; k < end; k++) if (arena[off + k] !== buf[k]) return false;
    return true;
  }

  private add(asn: number, buf: Buffer, start: number, end: number): number {
    const len = end - start;
    if (this.count === this.asn.length) {
      this.asn = growU32(this.asn, this.count * 2);
      this.orgOffset = growU32(this.orgOffset, this.count * 2);
      this.orgLength = growU32(this.orgLength, this.count * 2);
    }
    if (this.arenaUsed + len > this.arena.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.arena.length * 2, this.arenaUsed + len));
      this.arena.copy(bigger, 0, 0, this.arenaUsed);
      this.arena = bigger;
    }
    buf.copy(this.arena, this.arenaUsed, start, end);
    const idx = this.count++;
    this.asn[idx] = asn;
    this.orgOffset[idx] = this.arenaUsed;
    this.orgLength[idx] = len;
    this.arenaUsed += len;
    return idx;
  }

  /** Drops spare capacity once loading is done and the lookup maps are no longer needed. */
  seal(): void {
    this.asn = this.asn.slice(0, this.count);
    this.orgOffset = this.orgOffset.slice(0, this.count);
    this.orgLength = this.orgLength.slice(0, this.count);
    this.arena = Buffer.from(this.arena.subarray(0, this.arenaUsed));
    this.records = new Array<AsnRecord | null>(this.count).fill(null);
    this.slotsAsn = new Uint32Array(0);
    this.slotsIdx = new Int32Array(0);
  }

  record(idx: number): AsnRecord {
    const cached = this.records[idx];
    if (cached) return cached;
    const off = this.orgOffset[idx]!;
    let org = this.arena.toString('utf8', off, off + this.orgLength[idx]!);
    if (org.charCodeAt(0) === 34) org = org.slice(1, -1).replaceAll('""', '"');
    const rec = Object.freeze({ asn: this.asn[idx]!, org });
    this.records[idx] = rec;
    return rec;
  }
}

function growU32(a: Uint32Array, size: number): Uint32Array<ArrayBuffer> {
  const b = new Uint32Array(size);
  b.set(a.subarray(0, Math.min(a.length, size)));
  return b;
}

/** Growable range store for one family; `width` 32-bit words per address (1 for v4, 4 for v6). */
class RangeTable {
  starts: Uint32Array;
  ends: Uint32Array;
  entry: Uint32Array;
  count = 0;
  overlaps = 0;
  // Sortedness is checked against the input rows: after an overlap the last stored range can be
  // the tail of an older row, which legitimately starts after the next input row.
  private readonly lastInputStart: Uint32Array;
  private hasInput = false;

  constructor(
    readonly width: 1 | 4,
    capacity: number,
  ) {
    this.starts = new Uint32Array(capacity * width);
    this.ends = new Uint32Array(capacity * width);
    this.entry = new Uint32Array(capacity);
    this.lastInputStart = new Uint32Array(width);
  }

  private ensure(extra: number): void {
    if (this.count + extra <= this.entry.length) return;
    const cap = Math.max(this.entry.length * 2, this.count + extra, 1024);
    this.starts = growU32(this.starts, cap * this.width);
    this.ends = growU32(this.ends, cap * this.width);
    this.entry = growU32(this.entry, cap);
  }

  /** Compares address `a` (at word index ai of arrA) with `b` (at bi of arrB). */
  private cmp(arrA: Uint32Array, ai: number, arrB: Uint32Array, bi: number): number {
    for (let k = 0; k < this.width; k++) {
      const x = arrA[ai + k]!;
      const y = arrB[bi + k]!;
      if (x !== y) return x < y ? -1 : 1;
    }
    return 0;
  }

  /** Appends a range given in scratch words; rows must come sorted by start. */
  push(start: Uint32Array, end: Uint32Array, entryIdx: number, line: number): void {
    const w = this.width;
    if (this.cmp(start, 0, end, 0) > 0) throw new Error(`ASN CSV line ${line}: range start after end`);
    if (this.hasInput && this.cmp(start, 0, this.lastInputStart, 0) < 0) {
      throw new Error(`ASN CSV line ${line}: rows are not sorted by range start`);
    }
    this.lastInputStart.set(start);
    this.hasInput = true;
    if (this.count > 0 && this.cmp(start, 0, this.ends, (this.count - 1) * w) <= 0) {
      this.resolveOverlap(start, end, entryIdx);
      return;
    }
    this.ensure(1);
    this.starts.set(start, this.count * w);
    this.ends.set(end, this.count * w);
    this.entry[this.count++] = entryIdx;
  }

  /**
   * The new row overlaps stored ones. Keep the ranges disjoint so the binary search stays correct:
   * the new row wins where they overlap (it starts later, so it is the more specific one, or equal),
   * and any part of an older row beyond the new row's end is kept after it.
   */
  private resolveOverlap(start: Uint32Array, end: Uint32Array, entryIdx: number): void {
    this.overlaps++;
    const w = this.width;
    type Piece = { s: Uint32Array; e: Uint32Array; entry: number };
    const popped: Piece[] = [];
    while (this.count > 0 && this.cmp(this.ends, (this.count - 1) * w, start, 0) >= 0) {
      const i = --this.count;
      popped.unshift({
        s: this.starts.slice(i * w, i * w + w),
        e: this.ends.slice(i * w, i * w + w),
        entry: this.entry[i]!,
      });
    }
    const pieces: Piece[] = [];
    const first = popped[0];
    if (first && this.cmp(first.s, 0, start, 0) < 0) {
      pieces.push({ s: first.s, e: addOne(start, w, -1), entry: first.entry });
    }
    pieces.push({ s: start.slice(), e: end.slice(), entry: entryIdx });
    for (const p of popped) {
      if (this.cmp(p.e, 0, end, 0) > 0) {
        const afterEnd = addOne(end, w, 1);
        const s = this.cmp(p.s, 0, afterEnd, 0) > 0 ? p.s : afterEnd;
        pieces.push({ s, e: p.e, entry: p.entry });
      }
    }
    this.ensure(pieces.length);
    for (const p of pieces) {
      this.starts.set(p.s, this.count * w);
      this.ends.set(p.e, this.count * w);
      this.entry[this.count++] = p.entry;
    }
  }

  // IPv4 only: bucket[k] = first range starting at or after k << 16. Narrows each search from ~19
  // steps over 1.6 MB to a few steps within one /16, for 256 KB.
  private bucket = new Uint32Array(0);

  seal(): void {
    this.starts = this.starts.slice(0, this.count * this.width);
    this.ends = this.ends.slice(0, this.count * this.width);
    this.entry = this.entry.slice(0, this.count);
    if (this.width === 1) {
      const bucket = new Uint32Array(65537);
      let i = 0;
      for (let k = 0; k < 65536; k++) {
        const floor = k * 65536;
        while (i < this.count && this.starts[i]! < floor) i++;
        bucket[k] = i;
      }
      bucket[65536] = this.count;
      this.bucket = bucket;
    }
  }

  /** Index of the range holding the IPv4 value, or -1. */
  findV4(v: number): number {
    const starts = this.starts;
    const k = v >>> 16;
    // The answer is the last range starting at or before v: at most one before this /16's first.
    let lo = Math.max(this.bucket[k]! - 1, 0);
    let hi = this.bucket[k + 1]! - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= v) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && this.ends[found]! >= v ? found : -1;
  }

  /** Index of the range holding the IPv6 words, or -1. */
  findV6(w: Ipv6Words): number {
    const s = this.starts;
    const w0 = w[0]!;
    const w1 = w[1]!;
    const w2 = w[2]!;
    const w3 = w[3]!;
    let lo = 0;
    let hi = this.count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const o = mid * 4;
      // start <= ip, word by word
      const a = s[o]!;
      let le: boolean;
      if (a !== w0) le = a < w0;
      else {
        const b = s[o + 1]!;
        if (b !== w1) le = b < w1;
        else {
          const c = s[o + 2]!;
          le = c !== w2 ? c < w2 : s[o + 3]! <= w3;
        }
      }
      if (le) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return -1;
    const e = this.ends;
    const o = found * 4;
    for (let k = 0; k < 4; k++) {
      const x = e[o + k]!;
      const y = w[k]!;
      if (x !== y) return x > y ? found : -1;
    }
    return found;
  }
}

/** a ± 1 as a multi-word unsigned integer (callers guarantee no wrap). */
function addOne(a: Uint32Array, width: number, delta: 1 | -1): Uint32Array {
  const out = a.slice(0, width);
  for (let k = width - 1; k >= 0; k--) {
    const v = out[k]!;
    if (delta === 1) {
      if (v === 0xffffffff) out[k] = 0;
      else {
        out[k] = v + 1;
        break;
      }
    } else if (v === 0) out[k] = 0xffffffff;
    else {
      out[k] = v - 1;
      break;
    }
  }
  return out;
}

async function loadCsv(v4Path: string, v6Path: string): Promise<AsnDatabase> {
  const t0 = performance.now();
  const entries = new EntryTable();
  const v4 = new RangeTable(1, 1 << 16);
  const v6 = new RangeTable(4, 1 << 14);
  // Sequential on purpose: the parse is CPU-bound and both share the entry table.
  await parseCsvFile(v4Path, v4, entries);
  await parseCsvFile(v6Path, v6, entries);
  v4.seal();
  v6.seal();
  entries.seal();

  const stats: AsnDatabaseStats = {
    source: 'ip-location-db',
    ipv4Ranges: v4.count,
    ipv6Ranges: v6.count,
    entries: entries.count,
    overlapsResolved: v4.overlaps + v6.overlaps,
    loadMs: performance.now() - t0,
  };
  const lookupParsed = (ip: ParsedIp): AsnRecord | null => {
    const i = ip.version === 4 ? v4.findV4(ip.value) : v6.findV6(ip.words);
    if (i < 0) return null;
    const table = ip.version === 4 ? v4 : v6;
    return entries.record(table.entry[i]!);
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

const CHUNK = 1 << 20;

/**
 * Streams the file in 1 MiB chunks and scans bytes directly: no line strings, no CSV library, and a
 * peak footprint of the chunk plus the output arrays.
 */
async function parseCsvFile(path: string, table: RangeTable, entries: EntryTable): Promise<void> {
  const fh = await fsOpen(path, 'r');
  try {
    const size = (await fh.stat()).size;
    // Typical rows are ~50 (IPv4) and ~110 (IPv6) bytes; a close first guess avoids regrowing.
    const guess = Math.ceil(size / (table.width === 1 ? 48 : 100)) + 1024;
    if (guess > table.entry.length) {
      table.starts = growU32(table.starts, guess * table.width);
      table.ends = growU32(table.ends, guess * table.width);
      table.entry = growU32(table.entry, guess);
    }
    const parser = new RowParser(table, entries);
    let buf = Buffer.allocUnsafe(CHUNK);
    let filled = 0;
    while (true) {
      if (filled === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, null);
      filled += bytesRead;
      const eof = bytesRead === 0;
      const lastNl = eof ? filled : buf.lastIndexOf(10, filled - 1);
      if (lastNl >= 0 || eof) {
        const upto = Math.max(lastNl, 0);
        parser.parse(buf, 0, upto);
        const rest = eof ? 0 : filled - (upto + 1);
        if (rest > 0) buf.copy(buf, 0, upto + 1, filled);
        filled = rest;
      }
      if (eof) break;
    }
  } finally {
    await fh.close();
  }
}

class RowParser {
  private line = 0;
  private readonly start: Uint32Array;
  private readonly end: Uint32Array;

  constructor(
    private readonly table: RangeTable,
    private readonly entries: EntryTable,
  ) {
    this.start = new Uint32Array(table.width);
    this.end = new Uint32Array(table.width);
  }

  private fail(why: string): never {
    throw new Error(`ASN CSV line ${this.line}: ${why}`);
  }

  /**
   * Parses the lines in buf[from, to), where `to` is a newline or the end of the data. One forward
   * pass in JS: per-line native calls (indexOf, compare) cost more than they save at this row size.
   */
  parse(buf: Buffer, from: number, to: number): void {
    let p = from;
    while (p < to) {
      this.line++;
      const c0 = buf[p]!;
      if (c0 === 10 || c0 === 13) {
        // Blank line (or a stray CR): nothing to record.
        while (p < to && buf[p] !== 10) p++;
        p++;
        continue;
      }
      p = this.readAddress(buf, p, to, this.start);
      p = this.readAddress(buf, p, to, this.end);
      let asn = 0;
      const asnStart = p;
      while (p < to) {
        const d = buf[p]! - 48;
        if (d < 0 || d > 9) break;
        asn = asn * 10 + d;
        p++;
      }
      if (p === asnStart || p >= to || buf[p] !== 44 || asn > 0xffffffff) this.fail('bad AS number');
      p++;
      // The organisation is the rest of the line; a quoted one must close right at the line end.
      const orgStart = p;
      let orgEnd: number;
      if (p < to && buf[p] === 34) {
        let q = p + 1;
        while (true) {
          if (q >= to || buf[q] === 10) this.fail('unterminated quoted organisation');
          if (buf[q] === 34) {
            if (q + 1 < to && buf[q + 1] === 34) q += 2;
            else break;
          } else q++;
        }
        orgEnd = q + 1;
        p = orgEnd;
        if (p < to && buf[p] === 13) p++;
        if (p < to && buf[p] !== 10) this.fail('text after quoted organisation');
      } else {
        while (p < to && buf[p] !== 10) p++;
        orgEnd = p > orgStart && buf[p - 1] === 13 ? p - 1 : p;
      }
      p++;
      const entry = this.entries.intern(asn, buf, orgStart, orgEnd);
      this.table.push(this.start, this.end, entry, this.line);
    }
  }

  /** Reads an unsigned decimal (up to 2^32-1 or 2^128-1) and its comma into `out`. */
  private readAddress(buf: Buffer, p: number, end: number, out: Uint32Array): number {
    const digitsStart = p;
    if (this.table.width === 1) {
      let v = 0;
      while (p < end) {
        const d = buf[p]! - 48;
        if (d < 0 || d > 9) break;
        v = v * 10 + d;
        p++;
      }
      if (p === digitsStart || v > 0xffffffff) this.fail('bad IPv4 number');
      out[0] = v;
    } else {
      // 128-bit decimal in four 32-bit words, five digits at a time: word * 1e5 + carry stays below
      // 2^53, so plain doubles are exact.
      out.fill(0);
      let acc = 0;
      let mul = 1;
      while (p < end) {
        const d = buf[p]! - 48;
        if (d < 0 || d > 9) break;
        acc = acc * 10 + d;
        mul *= 10;
        if (mul === 100000) {
          if (!mulAdd(out, mul, acc)) this.fail('IPv6 number out of range');
          acc = 0;
          mul = 1;
        }
        p++;
      }
      if (p === digitsStart || (mul > 1 && !mulAdd(out, mul, acc))) this.fail('bad IPv6 number');
    }
    if (p >= end || buf[p] !== 44) this.fail('expected a comma');
    return p + 1;
  }
}

/** words = words * mul + add; false on overflow past 128 bits. */
function mulAdd(words: Uint32Array, mul: number, add: number): boolean {
  let carry = add;
  for (let k = words.length - 1; k >= 0; k--) {
    const x = words[k]! * mul + carry;
    words[k] = x >>> 0;
    carry = Math.floor(x / 4294967296);
  }
  return carry === 0;
}
