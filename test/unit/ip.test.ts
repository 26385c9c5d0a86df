import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cidrContains,
  formatIpv4,
  ipToBigInt,
  ipToBytes,
  parseCidr,
  parseIp,
  prefixOf,
  subnet48,
  subnetOf,
} from '../../src/signals/ip.ts';

function mustParse(text: string) {
  const ip = parseIp(text);
  if (!ip) throw new Error(`expected ${text} to parse`);
  return ip;
}

describe('parseIp: IPv4', () => {
  it.each([
    ['1.2.3.4', 0x01020304],
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['10.0.0.1', 0x0a000001],
    ['192.168.100.200', 0xc0a864c8],
  ])('%s', (text, value) => {
    expect(parseIp(text)).toEqual({ version: 4, address: text, value });
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '1.2.3.256',
    '01.2.3.4', // octal to inet_aton: ambiguous, rejected
    '1.2.3.04',
    '1.2.3.00',
    '0x7f.0.0.1',
    '127.1',
    '2130706433',
    '1..2.3',
    '1.2.3.',
    '.1.2.3',
    '1.2.3.-1',
    '+1.2.3.4',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1.2.3.4\n',
    '1.2.3.4/24',
    '1.2.3.4:80',
    'a.b.c.d',
    '１.2.3.4', // full-width digit
    '1.2.3.4%eth0',
  ])('rejects %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });
});

describe('parseIp: IPv6', () => {
  it.each([
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: the first run is compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run is compressed
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not
    ['2001:db8::0:1', '2001:db8::1'],
    ['FE80::A:b:C:d', 'fe80::a:b:c:d'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['::1.2.3.4', '::102:304'], // deprecated IPv4-compatible: stays IPv6
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'], // NAT64: stays IPv6
    ['2001:db8:1:2:3:4:1.2.3.4', '2001:db8:1:2:3:4:102:304'],
    ['2600:1f18::', '2600:1f18::'],
  ])('%s → %s', (text, canonical) => {
    const ip = mustParse(text);
    expect(ip.version).toBe(6);
    expect(ip.address).toBe(canonical);
    // Canonical text must itself be a fixed point.
    expect(mustParse(canonical).address).toBe(canonical);
  });

  it.each([
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:0102:0304', '1.2.3.4'],
    ['0:0:0:0:0:ffff:a01:203', '10.1.2.3'],
    ['::ffff:0.0.0.0', '0.0.0.0'],
    ['0000:0000:0000:0000:0000:FFFF:255.255.255.255', '255.255.255.255'],
  ])('IPv4-mapped %s is the IPv4 address %s', (text, v4) => {
    expect(parseIp(text)).toEqual(parseIp(v4));
  });

  it.each([
    'fe80::1%eth0',
    'fe80::1%1',
    '[::1]',
    '[::1]:80',
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    ':1::',
    ':1:2:3:4:5:6:7',
    '1::2:',
    '1:2:3:4:5:6:7:8:',
    '12345::',
    'g::1',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7::8',
    '::ffff:1.2.3',
    '::ffff:01.2.3.4',
    '::ffff:256.1.1.1',
    '::1.2.3.4:5',
    '1.2.3.4::',
    '1:2:3:4:5:6:7:1.2.3.4',
    '2001:db8::/32',
    ' ::1',
    '::1 ',
    '2001:db8::1\u0000',
  ])('rejects %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });
});

describe('subnets', () => {
  it.each([
    ['1.2.3.4', '1.2.3.0/24'],
    ['255.255.255.255', '255.255.255.0/24'],
    ['::ffff:10.1.2.3', '10.1.2.0/24'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8::/64'],
    ['::1', '::/64'],
  ])('subnetOf(%s) = %s', (text, subnet) => {
    expect(subnetOf(mustParse(text))).toBe(subnet);
  });

  it.each([
    ['2001:db8:abcd:12::1', '2001:db8:abcd::/48'],
    ['2a01:4f8:c17:1234::1', '2a01:4f8:c17::/48'],
  ])('subnet48(%s) = %s', (text, subnet) => {
    const ip = mustParse(text);
    if (ip.version !== 6) throw new Error('expected IPv6');
    expect(subnet48(ip)).toBe(subnet);
  });

  it('prefixOf covers the ends of the range and rejects impossible lengths', () => {
    expect(prefixOf(mustParse('1.2.3.4'), 0)).toBe('0.0.0.0/0');
    expect(prefixOf(mustParse('1.2.3.4'), 32)).toBe('1.2.3.4/32');
    expect(prefixOf(mustParse('1.2.3.4'), 9)).toBe('1.0.0.0/9');
    expect(prefixOf(mustParse('2001:db8::1'), 128)).toBe('2001:db8::1/128');
    expect(prefixOf(mustParse('2001:db8::1'), 0)).toBe('::/0');
    expect(prefixOf(mustParse('2001:db8:ffff::'), 33)).toBe('2001:db8:8000::/33');
    expect(() => prefixOf(mustParse('1.2.3.4'), 33)).toThrow(RangeError);
    expect(() => prefixOf(mustParse('::1'), 129)).toThrow(RangeError);
  });

  it('exposes bytes and an integer form', () => {
    expect([...ipToBytes(mustParse('1.2.3.4'))]).toEqual([1, 2, 3, 4]);
    expect([...ipToBytes(mustParse('2001:db8::ff'))]).toEqual([
      0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
    ]);
    expect(ipToBigInt(mustParse('255.255.255.255'))).toBe(0xffffffffn);
    expect(ipToBigInt(mustParse('2001:4860:4860::8888'))).toBe(0x20014860486000000000000000008888n);
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', 4, 8, '10.0.0.0/8'],
    ['0.0.0.0/0', 4, 0, '0.0.0.0/0'],
    ['1.2.3.4', 4, 32, '1.2.3.4/32'],
    ['1.2.3.4/32', 4, 32, '1.2.3.4/32'],
    ['2001:DB8::/32', 6, 32, '2001:db8::/32'],
    ['::/0', 6, 0, '::/0'],
    ['2001:db8::1', 6, 128, '2001:db8::1/128'],
    ['::ffff:10.0.0.0/104', 4, 8, '10.0.0.0/8'],
    ['::ffff:0:0/96', 4, 0, '0.0.0.0/0'],
  ])('%s', (text, version, bits, canonical) => {
    expect(parseCidr(text)).toMatchObject({ version, bits, text: canonical });
  });

  it.each([
    '10.0.0.1/8', // host bits set: rejected unless strict is off
    '10.0.0.0/33',
    '10.0.0.0/08',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '10.0.0.0/ 8',
    '/8',
    '2001:db8::/129',
    '2001:db8::1/32',
    'fe80::%eth0/64',
    'example.com/24',
    '',
  ])('rejects %j', (text) => {
    expect(parseCidr(text)).toBeNull();
  });

  it('clears host bits when strict is off', () => {
    expect(parseCidr('10.1.2.3/8', { strict: false })?.text).toBe('10.0.0.0/8');
    expect(parseCidr('2001:db8:1::1/32', { strict: false })?.text).toBe('2001:db8::/32');
  });
});

describe('cidrContains', () => {
  it.each([
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '10.0.0.0', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['10.0.0.0/8', '9.255.255.255', false],
    ['0.0.0.0/0', '1.2.3.4', true],
    ['1.2.3.4/32', '1.2.3.4', true],
    ['1.2.3.4/32', '1.2.3.5', false],
    ['192.168.0.0/23', '192.168.1.255', true],
    ['192.168.0.0/23', '192.168.2.0', false],
    ['10.0.0.0/8', '::ffff:10.1.1.1', true],
    ['::ffff:0:0/96', '1.2.3.4', true],
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:db9::', false],
    ['2001:db8::/33', '2001:db8:7fff:ffff::', true],
    ['2001:db8::/33', '2001:db8:8000::', false],
    ['2001:db8:1:2::/64', '2001:db8:1:2:ffff:ffff:ffff:ffff', true],
    ['2001:db8:1:2::/64', '2001:db8:1:3::', false],
    ['2001:db8::/127', '2001:db8::1', true],
    ['2001:db8::/127', '2001:db8::2', false],
    ['2001:db8::1/128', '2001:db8::1', true],
    ['::/0', '2600::1', true],
    ['::/0', '1.2.3.4', false], // families never cross
    ['0.0.0.0/0', '::1', false],
  ])('%s contains %s: %s', (cidr, ip, expected) => {
    const c = parseCidr(cidr);
    if (!c) throw new Error(`bad cidr ${cidr}`);
    expect(cidrContains(c, mustParse(ip))).toBe(expected);
  });
});

describe('properties', () => {
  const ipChars = fc.constantFrom(...'0123456789abcdefABCDEF:.%/[] x'.split(''));

  it('parseIp never throws, and whatever it accepts Node also calls an IP', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: ipChars, maxLength: 50 })), (s) => {
        const ip = parseIp(s);
        if (ip) expect(isIP(s)).not.toBe(0);
      }),
      { numRuns: 20_000 },
    );
  });

  it('accepts generated IPv4 text unchanged', () => {
    fc.assert(
      fc.property(fc.ipV4(), (s) => {
        expect(parseIp(s)?.address).toBe(s);
      }),
    );
  });

  it('canonicalises generated IPv6 like the WHATWG URL parser, idempotently', () => {
    fc.assert(
      fc.property(fc.ipV6(), (s) => {
        const ip = mustParse(s);
        expect(mustParse(ip.address)).toEqual(ip);
        if (ip.version === 6) expect(new URL(`http://[${s}]/`).hostname).toBe(`[${ip.address}]`);
      }),
      { numRuns: 5_000 },
    );
  });

  it('any IPv4 address in a /24 has that /24 as its subnet', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 0, max: 255 }), (net, host) => {
        const base = formatIpv4((net * 256) >>> 0);
        const ip = mustParse(formatIpv4((net * 256 + host) >>> 0));
        const subnet = `${base}/24`;
        expect(subnetOf(ip)).toBe(subnet);
        const cidr = parseCidr(subnet);
        expect(cidr && cidrContains(cidr, ip)).toBe(true);
      }),
    );
  });

  it('prefixOf(ip, n) is a CIDR that contains ip', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 128 }), (s, n) => {
        const ip = mustParse(s);
        const bits = ip.version === 4 ? n % 33 : n;
        const cidr = parseCidr(prefixOf(ip, bits));
        expect(cidr).not.toBeNull();
        expect(cidr && cidrContains(cidr, ip)).toBe(true);
      }),
    );
  });
});
