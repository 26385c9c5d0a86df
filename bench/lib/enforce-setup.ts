import { randomBytes } from 'node:crypto';
import { createDb } from '../../src/db/client.ts';
import { newId } from '../../src/lib/ids.ts';
import { loadAsnDatabase } from '../../src/signals/asn.ts';
import { formatIpv4, formatIpv6Words } from '../../src/signals/ip.ts';

// What bench/enforce.ts needs before it can measure: the policy, the accounts, their keys, the
// service tokens and the request bodies.

export const BENCH_TIER = 'bench';
/** key, user, device, ip and asn: every dimension a single request can be charged in. */
export const DIMENSIONS = ['key', 'user', 'device', 'ip', 'asn'] as const;
export const WINDOWS_PER_DIMENSION = 2;

/**
 * One tier, five dimensions, each with a 1-minute burst window and a 24-hour budget, every limit
 * so high that the benchmark measures the allow path; every allowed call appends an event.
 */
export function benchPolicyYaml(limit: number): string {
  const windows = `[{ window: 1m, limit: ${limit}, buckets: 12 }, { window: 24h, limit: ${limit}, buckets: 96 }]`;
  return [
    'version: 1',
    'enforcement:',
    `  defaultTier: ${BENCH_TIER}`,
    '  eventSampleRate: 1',
    '  failMode: closed',
    '  tiers:',
    `    ${BENCH_TIER}:`,
    '      maxKeys: 3',
    '      limits:',
    ...DIMENSIONS.map((d) => `        ${d}: ${windows}`),
    '',
  ].join('\n');
}

/** Active, verified accounts written straight to PostgreSQL, as signup and verification leave them. */
export async function insertAccounts(databaseUrl: string, count: number): Promise<string[]> {
  const db = createDb(databaseUrl, 5_000);
  try {
    const rows = Array.from({ length: count }, (_, i) => {
      const email = `bench${i}.${randomBytes(4).toString('hex')}@example.org`;
      return {
        id: newId('acc'),
        email,
        emailCanonicalHash: randomBytes(32).toString('hex'),
        emailDomain: 'example.org',
        emailVerifiedAt: new Date(),
        status: 'active' as const,
        tier: BENCH_TIER,
      };
    });
    for (let i = 0; i < rows.length; i += 500) await db.account.createMany({ data: rows.slice(i, i + 500) });
    return rows.map((r) => r.id);
  } finally {
    await db.$disconnect();
  }
}

async function post(
  base: string,
  path: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // left as text for the error message
  }
  return { status: res.status, json };
}

export async function createServiceToken(
  base: string,
  adminToken: string,
  scopes: Array<'keys' | 'enforce'>,
): Promise<string> {
  const res = await post(base, '/v1/tokens', adminToken, { name: `bench ${scopes.join(',')}`, scopes });
  const token = (res.json as { token?: unknown }).token;
  if (res.status !== 201 || typeof token !== 'string') {
    throw new Error(`token creation failed: ${res.status} ${JSON.stringify(res.json)}`);
  }
  return token;
}

/** One key per account through the public API, `concurrency` requests at a time. */
export async function createKeys(
  base: string,
  keysToken: string,
  accountIds: readonly string[],
  concurrency = 8,
): Promise<string[]> {
  const keys: string[] = new Array(accountIds.length);
  let next = 0;
  const worker = async () => {
    while (next < accountIds.length) {
      const i = next++;
      const res = await post(base, `/v1/accounts/${accountIds[i]}/keys`, keysToken, { name: 'bench' });
      const key = (res.json as { key?: unknown }).key;
      if (res.status !== 201 || typeof key !== 'string') {
        throw new Error(`key creation failed: ${res.status} ${JSON.stringify(res.json)}`);
      }
      keys[i] = key;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return keys;
}

// A fixed-seed PRNG keeps the request mix the same from run to run.
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/**
 * Client addresses that the bundled ASN data resolves, so that every request is charged in the asn
 * dimension too (an address without an ASN skips it). One in ten is IPv6.
 */
export async function routableAddresses(count: number, seed = 0x5eed): Promise<string[]> {
  const asn = await loadAsnDatabase();
  const rand = prng(seed);
  const out: string[] = [];
  const V6_BLOCKS = [0x2001, 0x2400, 0x2600, 0x2800, 0x2a00];
  for (let tries = 0; out.length < count && tries < count * 200; tries++) {
    let ip: string;
    if (out.length % 10 === 9) {
      const block = V6_BLOCKS[rand() % V6_BLOCKS.length]!;
      const top = block === 0x2001 ? block : block | (rand() & 0xf);
      ip = formatIpv6Words([((top << 16) | (rand() & 0xffff)) >>> 0, rand(), rand(), rand()]);
    } else {
      ip = formatIpv4(rand());
    }
    if (asn.lookup(ip)) out.push(ip);
  }
  if (out.length < count) throw new Error(`only ${out.length} of ${count} addresses resolved to an ASN`);
  return out;
}

const ENDPOINTS = [
  '/v1/chat/completions',
  '/v1/embeddings',
  '/v1/images/generations',
  '/v1/search?q=weather',
  '/v1/models',
  '/v2/documents/1234/summary',
  '/v1/audio/transcriptions',
  '/v1/moderations',
];
const USER_AGENTS = [
  'python-requests/2.32.3',
  'node-fetch/3.3.2',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  'curl/8.8.0',
  'okhttp/4.12.0',
];

export interface BodyMix {
  keys: readonly string[];
  ips: readonly string[];
  fingerprints: number;
  count: number;
}

/**
 * Serialised POST /v1/enforce bodies: keys in turn, addresses, device fingerprints, endpoints and
 * user agents each on their own cycle, so that neighbouring requests share little.
 */
export function buildBodies(mix: BodyMix): string[] {
  const rand = prng(0xb0d1e5);
  const fps = Array.from(
    { length: mix.fingerprints },
    (_, i) => `fp_${i.toString(36)}_${rand().toString(16)}`,
  );
  return Array.from({ length: mix.count }, (_, i) =>
    JSON.stringify({
      key: mix.keys[i % mix.keys.length]!,
      ip: mix.ips[(i * 7) % mix.ips.length]!,
      fingerprint: fps[(i * 13) % fps.length]!,
      endpoint: ENDPOINTS[i % ENDPOINTS.length]!,
      userAgent: USER_AGENTS[i % USER_AGENTS.length]!,
    }),
  );
}
