import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AsnDatabase } from '../../src/signals/asn.ts';
import { isReservedAsn, loadAsnDatabase, normaliseMmdbRecord } from '../../src/signals/asn.ts';
import {
  BUNDLED_HOSTING_ASNS,
  createHostingClassifier,
  orgLooksLikeHosting,
} from '../../src/signals/hosting.ts';
import { ipToBytes, parseIp } from '../../src/signals/ip.ts';

// The bundled database is ~33 MB of CSV: load it once for the whole file.
let db: AsnDatabase;
let dir: string;

beforeAll(async () => {
  db = await loadAsnDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-asn-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('bundled ip-location-db data', () => {
  it.each([
    ['52.94.76.1', 16509, 'Amazon.com, Inc.'],
    ['3.5.140.1', 16509, 'Amazon.com, Inc.'],
    ['8.8.8.8', 15169, 'Google LLC'],
    ['1.1.1.1', 13335, 'Cloudflare, Inc.'],
    ['1.0.0.0', 13335, 'Cloudflare, Inc.'], // first address of the first row
    ['1.0.0.255', 13335, 'Cloudflare, Inc.'], // last address of that row
    ['1.0.4.0', 38803, 'Gtelecom Pty Ltd'],
    ['5.9.0.1', 24940, 'Hetzner Online GmbH'],
    ['139.59.1.1', 14061, 'DigitalOcean, LLC'],
    ['23.24.0.1', 7922, 'Comcast Cable Communications, LLC'],
    ['::ffff:8.8.8.8', 15169, 'Google LLC'],
    ['2600:1f18::1', 14618, 'Amazon.com, Inc.'], // AWS us-east-1 announces this from AS14618
    ['2001:4860:4860::8888', 15169, 'Google LLC'],
    ['2606:4700:4700::1111', 13335, 'Cloudflare, Inc.'],
    ['2a01:4f8::1', 24940, 'Hetzner Online GmbH'],
  ])('%s → AS%i %s', (ip, asn, org) => {
    expect(db.lookup(ip)).toEqual({ asn, org });
  });

  it.each([
    '10.0.0.1',
    '192.168.1.1',
    '172.16.0.1',
    '127.0.0.1',
    '100.64.0.1',
    '0.0.0.0',
    '1.0.1.0', // gap just after 1.0.0.0/24
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    '2001:db8::1',
    'ffff::1',
    'not an ip',
    '',
    '01.1.1.1',
  ])('%j → null', (ip) => {
    expect(db.lookup(ip)).toBeNull();
  });

  it('decodes quoted and non-ASCII organisation names', () => {
    // CSV: 35309568,35313663,201907,"LLC ""SPUTNIK"""
    expect(db.lookup('2.26.200.1')).toEqual({ asn: 201907, org: 'LLC "SPUTNIK"' });
    // The source has a soft hyphen (U+00AD) in this name.
    expect(db.lookup('38.226.206.1')?.org).toBe('WILLIAN MENDES DE OLIVEIRA \u00ad ME');
  });

  it('resolves the overlapping DoD rows in favour of the later, more specific one', () => {
    // 214.95.0.0-215.0.255.255 AS749 overlaps 215.0.0.0-215.1.3.255 AS721.
    expect(db.lookup('214.95.0.1')?.asn).toBe(749);
    expect(db.lookup('214.255.255.255')?.asn).toBe(749);
    expect(db.lookup('215.0.0.0')?.asn).toBe(721);
    expect(db.lookup('215.0.255.255')?.asn).toBe(721);
    expect(db.lookup('215.1.3.255')?.asn).toBe(721);
    expect(db.stats.overlapsResolved).toBeGreaterThanOrEqual(1);
  });

  it('agrees between lookup and lookupParsed and shares frozen records', () => {
    const parsed = parseIp('52.94.76.1');
    if (!parsed) throw new Error('parse failed');
    const a = db.lookup('52.94.76.1');
    expect(db.lookupParsed(parsed)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
  });

  it('reports its size', () => {
    expect(db.stats.source).toBe('ip-location-db');
    expect(db.stats.ipv4Ranges).toBeGreaterThan(300_000);
    expect(db.stats.ipv6Ranges).toBeGreaterThan(80_000);
    expect(db.stats.entries).toBeGreaterThan(50_000);
  });

  it('is loaded once per process', async () => {
    const [a, b] = await Promise.all([loadAsnDatabase(), loadAsnDatabase({})]);
    expect(a).toBe(db);
    expect(b).toBe(db);
  });
});

describe('CSV parsing edge cases', () => {
  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const n = (ip: string): string => {
    const p = parseIp(ip);
    if (!p) throw new Error(ip);
    let v = 0n;
    for (const b of ipToBytes(p)) v = (v << 8n) | BigInt(b);
    return v.toString();
  };

  it('handles CRLF, blank lines, quotes, a missing final newline and nested overlaps', async () => {
    const v4 = write(
      'v4.csv',
      [
        `${n('1.0.0.0')},${n('1.0.0.255')},13335,"Cloudflare, Inc."`,
        '',
        `${n('2.0.0.0')},${n('2.0.255.255')},100,Outer`,
        `${n('2.0.16.0')},${n('2.0.16.255')},200,"Inner ""quoted"""`,
        `${n('2.0.32.0')},${n('2.0.32.255')},300,Second inner`,
        `${n('3.0.0.0')},${n('3.0.0.255')},400,Ünïcödé`,
      ].join('\r\n'),
    );
    const v6 = write(
      'v6.csv',
      `${n('2001:db8::')},${n('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff')},64500,Doc\n`,
    );
    const t = await loadAsnDatabase({ ipv4CsvPath: v4, ipv6CsvPath: v6 });
    expect(t).not.toBe(db);
    expect(t.lookup('1.0.0.7')).toEqual({ asn: 13335, org: 'Cloudflare, Inc.' });
    expect(t.lookup('2.0.0.1')?.asn).toBe(100);
    expect(t.lookup('2.0.16.1')).toEqual({ asn: 200, org: 'Inner "quoted"' });
    expect(t.lookup('2.0.17.0')?.asn).toBe(100); // the outer row resumes after the inner one
    expect(t.lookup('2.0.32.255')?.asn).toBe(300);
    expect(t.lookup('2.0.255.255')?.asn).toBe(100);
    expect(t.lookup('2.1.0.0')).toBeNull();
    expect(t.lookup('3.0.0.9')?.org).toBe('Ünïcödé');
    expect(t.lookup('2001:db8:1234::1')).toEqual({ asn: 64500, org: 'Doc' });
    expect(isReservedAsn(64500)).toBe(true);
    expect(t.stats).toMatchObject({ ipv4Ranges: 7, ipv6Ranges: 1, overlapsResolved: 2 });
  });

  it.each([
    ['unsorted', `20,30,1,B\n10,15,2,A\n`],
    ['start-after-end', `30,20,1,A\n`],
    ['unterminated-quote', `10,20,1,"Open\n`],
    ['missing-field', `10,20\n`],
    ['dotted-address', `1.2.3.4,1.2.3.5,1,A\n`],
    ['past-32-bits', `4294967296,4294967297,1,A\n`],
  ])('rejects a file with %s rows, naming the line, and can retry after a fix', async (name, text) => {
    // A separate path per case: a successful load stays cached for its path.
    const v4 = write(`${name}.csv`, text);
    const v6 = write('empty.csv', '');
    await expect(loadAsnDatabase({ ipv4CsvPath: v4, ipv6CsvPath: v6 })).rejects.toThrow(/ASN CSV line \d+/);
    write(`${name}.csv`, '10,20,1,A\n');
    const fixed = await loadAsnDatabase({ ipv4CsvPath: v4, ipv6CsvPath: v6 });
    expect(fixed.lookup('0.0.0.15')).toEqual({ asn: 1, org: 'A' });
  });
});

describe('MMDB source', () => {
  it('reads GeoLite2-ASN and IPinfo layouts', async () => {
    const path = join(dir, 'test.mmdb');
    writeFileSync(
      path,
      buildMmdb([
        [
          '1.2.3.0',
          24,
          mmMap({
            autonomous_system_number: mmUint(6, 13335),
            autonomous_system_organization: mmStr('Cloudflare, Inc.'),
          }),
        ],
        ['5.6.0.0', 16, mmMap({ asn: mmStr('AS24940'), name: mmStr('Hetzner Online GmbH') })],
        ['2001:4860::', 32, mmMap({ asn: mmStr('AS15169'), as_name: mmStr('Google LLC') })],
        ['9.9.9.0', 24, mmMap({ country: mmStr('CH') })],
      ]),
    );
    const m = await loadAsnDatabase({ mmdbPath: path });
    expect(m.stats.source).toBe('mmdb');
    expect(m.lookup('1.2.3.4')).toEqual({ asn: 13335, org: 'Cloudflare, Inc.' });
    expect(m.lookup('::ffff:1.2.3.4')).toEqual({ asn: 13335, org: 'Cloudflare, Inc.' });
    expect(m.lookup('5.6.7.8')).toEqual({ asn: 24940, org: 'Hetzner Online GmbH' });
    expect(m.lookup('2001:4860:4860::8888')).toEqual({ asn: 15169, org: 'Google LLC' });
    expect(m.lookup('9.9.9.9')).toBeNull(); // a record without an ASN
    expect(m.lookup('1.2.4.0')).toBeNull();
    expect(m.lookup('garbage')).toBeNull();
    expect(await loadAsnDatabase({ mmdbPath: path })).toBe(m);
  });

  it.each([
    [
      { autonomous_system_number: 1, autonomous_system_organization: 'X' },
      { asn: 1, org: 'X' },
    ],
    [
      { asn: 'AS123', as_name: 'Y' },
      { asn: 123, org: 'Y' },
    ],
    [
      { asn: 'as7', name: 'Z' },
      { asn: 7, org: 'Z' },
    ],
    [{ asn: 42 }, { asn: 42, org: '' }],
    [{ asn: 'ASX' }, null],
    [{ asn: 'AS0' }, null],
    [{}, null],
    [null, null],
    ['AS1', null],
  ])('normalises %j', (record, expected) => {
    expect(normaliseMmdbRecord(record)).toEqual(expected);
  });
});

describe('hosting classification', () => {
  const hosting = createHostingClassifier();

  it.each([
    ['52.94.76.1', 'cloud'],
    ['2600:1f18::1', 'cloud'],
    ['8.8.8.8', 'cloud'], // AS15169 is listed: see the note in data/hosting-asns.json
    ['5.9.0.1', 'hosting'],
    ['2a01:4f8::1', 'hosting'],
    ['1.1.1.1', 'vpn'],
    ['23.24.0.1', null], // Comcast
  ])('%s → %s', (ip, kind) => {
    const rec = db.lookup(ip);
    expect(hosting.kindOf(rec?.asn)).toBe(kind);
    expect(hosting.isHosting(rec?.asn)).toBe(kind !== null);
  });

  it('has a curated list of 100-250 unique, valid entries', () => {
    expect(BUNDLED_HOSTING_ASNS.length).toBeGreaterThanOrEqual(100);
    expect(BUNDLED_HOSTING_ASNS.length).toBeLessThanOrEqual(250);
    expect(new Set(BUNDLED_HOSTING_ASNS.map((e) => e.asn)).size).toBe(BUNDLED_HOSTING_ASNS.length);
    for (const e of BUNDLED_HOSTING_ASNS) expect(isReservedAsn(e.asn)).toBe(false);
  });

  it('accepts operator additions and overrides, and rejects invalid ones', () => {
    const c = createHostingClassifier([7922, { asn: 13335, name: 'Cloudflare', kind: 'cloud' }]);
    expect(c.kindOf(7922)).toBe('hosting');
    expect(c.kindOf(13335)).toBe('cloud');
    expect(c.size).toBe(hosting.size + 1);
    expect(hosting.kindOf(7922)).toBeNull(); // classifiers are independent
    expect(hosting.isHosting(null)).toBe(false);
    expect(() => createHostingClassifier([0])).toThrow();
    expect(() => createHostingClassifier([1.5])).toThrow();
    expect(() => createHostingClassifier([2 ** 32])).toThrow();
  });

  it.each([
    ['Rackspace Hosting', true],
    ['SERVER.UA LLC', true],
    ['Micron21 Datacentre Pty Ltd', true],
    ['IBM Cloud', true],
    ['Colocation America Corporation', true],
    ['Hetzner Online GmbH', false], // why the curated list comes first
    ['Cloudflare, Inc.', false],
    ['Comcast Cable Communications, LLC', false],
    ['Dedicated Freight Corridor Corporation of India Limited', false],
    ['', false],
  ])('orgLooksLikeHosting(%j) = %s', (org, expected) => {
    expect(orgLooksLikeHosting(org)).toBe(expected);
  });
});

// --- a minimal MMDB writer (spec: https://maxmind.github.io/MaxMind-DB/), enough for the tests ---

function mmCtrl(type: number, size: number): Buffer {
  const first = type <= 7 ? type << 5 : 0;
  const ext = type > 7 ? [type - 7] : [];
  if (size < 29) return Buffer.from([first | size, ...ext]);
  if (size < 285) return Buffer.from([first | 29, ...ext, size - 29]);
  const s = size - 285;
  return Buffer.from([first | 30, ...ext, s >> 8, s & 0xff]);
}

function mmStr(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([mmCtrl(2, b.length), b]);
}

/** type 5 uint16, 6 uint32, 9 uint64 */
function mmUint(type: 5 | 6 | 9, n: number): Buffer {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.concat([mmCtrl(type, bytes.length), Buffer.from(bytes)]);
}

function mmMap(o: Record<string, Buffer>): Buffer {
  const parts = Object.entries(o).flatMap(([k, v]) => [mmStr(k), v]);
  return Buffer.concat([mmCtrl(7, Object.keys(o).length), ...parts]);
}

function mmArray(items: Buffer[]): Buffer {
  return Buffer.concat([mmCtrl(11, items.length), ...items]);
}

/** An IPv6 tree (IPv4 networks live under ::/96), 24-bit records. */
function buildMmdb(networks: [string, number, Buffer][]): Buffer {
  type Rec = number | { data: number };
  const nodes: [Rec, Rec][] = [[-1, -1]];
  const data: Buffer[] = [];
  let dataLen = 0;
  for (const [addr, len, value] of networks) {
    const ip = parseIp(addr);
    if (!ip) throw new Error(addr);
    const bytes = new Uint8Array(16);
    bytes.set(ipToBytes(ip), ip.version === 4 ? 12 : 0);
    const bits = ip.version === 4 ? len + 96 : len;
    const leaf = { data: dataLen };
    data.push(value);
    dataLen += value.length;
    let cur = 0;
    for (let d = 0; d < bits; d++) {
      const bit = ((bytes[d >> 3] ?? 0) >> (7 - (d & 7))) & 1;
      const node = nodes[cur]!;
      if (d === bits - 1) {
        node[bit] = leaf;
        break;
      }
      const next = node[bit]!;
      if (typeof next === 'number' && next >= 0) {
        cur = next;
      } else {
        nodes.push([-1, -1]);
        node[bit] = nodes.length - 1;
        cur = nodes.length - 1;
      }
    }
  }
  const count = nodes.length;
  const tree = Buffer.alloc(count * 6);
  const val = (r: Rec): number => (typeof r === 'number' ? (r < 0 ? count : r) : count + 16 + r.data);
  nodes.forEach(([l, r], i) => {
    tree.writeUIntBE(val(l), i * 6, 3);
    tree.writeUIntBE(val(r), i * 6 + 3, 3);
  });
  const metadata = mmMap({
    node_count: mmUint(6, count),
    record_size: mmUint(5, 24),
    ip_version: mmUint(5, 6),
    database_type: mmStr('Gatehouse-Test-ASN'),
    languages: mmArray([mmStr('en')]),
    binary_format_major_version: mmUint(5, 2),
    binary_format_minor_version: mmUint(5, 0),
    build_epoch: mmUint(9, 1_700_000_000),
    description: mmMap({ en: mmStr('test') }),
  });
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...data,
    Buffer.from('abcdef4d61784d696e642e636f6d', 'hex'),
    metadata,
  ]);
}
