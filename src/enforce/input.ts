import { z } from 'zod';
import { isIp } from '../signals/ip.ts';
import type { EnforceInput } from './service.ts';

// The body of POST /v1/enforce. The schema is the contract and the source of every error message;
// `readEnforceBody` is the same check written out by hand, for the bodies that pass it. A gateway
// sends a well-formed body on every call, and zod's general machinery (a walk over the schema, an
// issue list, a fresh output object) costs a few µs of each decision, several times what these few
// comparisons cost. A body the hand-written check refuses goes to zod, which accepts or explains it:
// the check may refuse more than the schema, never less (test/unit/enforce-input.property.test.ts).

export const enforceBody = z.strictObject({
  key: z.string().min(1).max(512),
  ip: z.string().max(64).refine(isIp, 'must be an IPv4 or IPv6 address'),
  fingerprint: z.string().min(1).max(256).optional(),
  tlsFingerprint: z.string().min(1).max(256).optional(),
  endpoint: z.string().min(1).max(2048).optional(),
  cost: z.number().int().min(0).max(1_000_000).optional(),
  query: z.string().max(200_000).optional(),
  userAgent: z.string().max(1024).optional(),
});

const text = (v: unknown, min: number, max: number): boolean =>
  typeof v === 'string' && v.length >= min && v.length <= max;
/** An optional field: absent, or within its bounds. */
const optionalText = (v: unknown, min: number, max: number): boolean => v === undefined || text(v, min, max);
const optionalCost = (v: unknown): boolean =>
  v === undefined || (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1_000_000);
const present = (v: unknown): number => (v === undefined ? 0 : 1);

/** The body as the schema would give it, or null when only the schema can say what is wrong. */
export function readEnforceBody(body: unknown): EnforceInput | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const { key, ip, fingerprint, tlsFingerprint, endpoint, cost, query, userAgent } = body as Record<
    string,
    unknown
  >;
  if (
    !text(key, 1, 512) ||
    !text(ip, 0, 64) ||
    !isIp(ip as string) ||
    !optionalText(fingerprint, 1, 256) ||
    !optionalText(tlsFingerprint, 1, 256) ||
    !optionalText(endpoint, 1, 2048) ||
    !optionalCost(cost) ||
    !optionalText(query, 0, 200_000) ||
    !optionalText(userAgent, 0, 1024)
  )
    return null;
  const known =
    2 +
    present(fingerprint) +
    present(tlsFingerprint) +
    present(endpoint) +
    present(cost) +
    present(query) +
    present(userAgent);
  // Any other key is the schema's to report: the body has more keys than the fields checked above.
  let keys = 0;
  for (const _key in body) keys++;
  // Every key is then one of the fields, valid: the body is its own output.
  return keys === known ? (body as EnforceInput) : null;
}
