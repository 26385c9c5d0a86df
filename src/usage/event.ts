// The usage event as it travels on the Redis stream: appended by the enforcement decision (in the
// same Lua call that counts it) and drained by the ingestion worker into PostgreSQL. This is
// written once per API call, so it is small: short field names, packed as one JSON object in the
// entry's field `e` (beside the `ok` field the limiter script adds).
//
// Why one field: Redis parses each argument of the script call and XADD stores each field of the
// entry, so ten field-value pairs cost a decision ~21k more Redis instructions than one (3% of the
// call under callgrind, `npm run bench:limiter -- --callgrind`). Entries written before, with each
// short name as a field of its own, are read as well.

export interface UsageEventRecord {
  accountId: string;
  keyId: string | null;
  /** Event time, ms since the epoch. */
  at: number;
  ip: string | null;
  asn: number | null;
  fingerprint: string | null;
  tlsFingerprint: string | null;
  userAgent: string | null;
  endpoint: string | null;
  cost: number;
  decision: 'allow' | 'throttle' | 'deny';
  reason: string | null;
  /** MinHash signature of the query text, or empty. */
  minhash: number[];
  /** Whether detection wants the full event (sampling); hourly aggregates count every event. */
  sampled: boolean;
}

export function encodeUsageEvent(e: UsageEventRecord): Record<string, string> {
  return { e: JSON.stringify(shortFields(e)) };
}

function shortFields(e: UsageEventRecord): Record<string, string> {
  const f: Record<string, string> = {
    a: e.accountId,
    t: String(e.at),
    c: String(e.cost),
    d: e.decision,
  };
  if (e.keyId) f.k = e.keyId;
  if (e.ip) f.ip = e.ip;
  if (e.asn !== null) f.as = String(e.asn);
  if (e.fingerprint) f.fp = e.fingerprint;
  if (e.tlsFingerprint) f.tls = e.tlsFingerprint;
  if (e.userAgent) f.ua = e.userAgent;
  if (e.endpoint) f.ep = e.endpoint;
  if (e.reason) f.r = e.reason;
  if (e.minhash.length > 0) f.mh = e.minhash.join(',');
  if (e.sampled) f.s = '1';
  return f;
}

/**
 * An entry's short-named fields: those packed in `e` with the entry's own `ok`, or the entry's
 * fields as they are when it has no `e` (written before packing). Null when `e` is not a JSON
 * object of strings.
 */
export function unpackUsageFields(entry: Readonly<Record<string, string>>): Record<string, string> | null {
  if (entry.e === undefined) return { ...entry };
  let packed: unknown;
  try {
    packed = JSON.parse(entry.e);
  } catch {
    return null;
  }
  if (typeof packed !== 'object' || packed === null || Array.isArray(packed)) return null;
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(packed)) {
    if (typeof value !== 'string') return null;
    fields[name] = value;
  }
  if (entry.ok !== undefined) fields.ok = entry.ok;
  return fields;
}

/** Null for a record that is not a usage event (a foreign writer, a truncated entry). */
export function decodeUsageEvent(entry: Readonly<Record<string, string>>): UsageEventRecord | null {
  const fields = unpackUsageFields(entry);
  if (!fields) return null;
  const at = Number(fields.t);
  const cost = Number(fields.c);
  // `ok` is written by the limiter script: a denial there overrides what the caller expected.
  const decision = fields.ok === '0' ? 'deny' : fields.d;
  if (!fields.a || !Number.isSafeInteger(at) || !Number.isSafeInteger(cost) || cost < 0) return null;
  if (decision !== 'allow' && decision !== 'throttle' && decision !== 'deny') return null;
  const asn = fields.as !== undefined ? Number(fields.as) : null;
  return {
    accountId: fields.a,
    keyId: fields.k ?? null,
    at,
    ip: fields.ip ?? null,
    asn: asn !== null && Number.isSafeInteger(asn) ? asn : null,
    fingerprint: fields.fp ?? null,
    tlsFingerprint: fields.tls ?? null,
    userAgent: fields.ua ?? null,
    endpoint: fields.ep ?? null,
    cost,
    decision,
    reason: fields.ok === '0' ? (fields.r ?? 'rate_limited') : (fields.r ?? null),
    minhash: fields.mh ? fields.mh.split(',').map(Number).filter(Number.isSafeInteger) : [],
    sampled: fields.s === '1',
  };
}

/** Array form for ioredis XADD / the Lua script's field list. */
export const flattenFields = (f: Record<string, string>): string[] => Object.entries(f).flat();
