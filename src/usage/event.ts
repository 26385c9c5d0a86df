// The usage event as it travels on the Redis stream: appended by the enforcement decision (in the
// same Lua call that counts it) and drained by the ingestion worker into PostgreSQL. Flat string
// fields, short names: this is written once per API call.
//
// Flat, not packed into one field: a stream node stores the field names of entries that repeat
// them once, and integer values as integers, so an entry of bench:enforce's shape takes 137 bytes
// of Redis memory. The same event as one JSON field took 220 (as a JSON array of values, 187):
// ~80 MB more at the stream's 1,000,000-entry cap, for ~3% fewer instructions in the script call
// that appends it (bench:limiter --callgrind, 637k -> 615k a decision).

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

/** Null for a record that is not a usage event (a foreign writer, a truncated entry). */
export function decodeUsageEvent(fields: Record<string, string>): UsageEventRecord | null {
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
