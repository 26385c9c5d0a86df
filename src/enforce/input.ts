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

/** The body as the schema would give it, or null when only the schema can say what is wrong. */
export function readEnforceBody(body: unknown): EnforceInput | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const b = body as Record<string, unknown>;
  let known = 2;
  if (!text(b.key, 1, 512) || !text(b.ip, 0, 64) || !isIp(b.ip as string)) return null;
  const input: EnforceInput = { key: b.key as string, ip: b.ip as string };
  if (b.fingerprint !== undefined) {
    if (!text(b.fingerprint, 1, 256)) return null;
    input.fingerprint = b.fingerprint as string;
    known++;
  }
  if (b.tlsFingerprint !== undefined) {
    if (!text(b.tlsFingerprint, 1, 256)) return null;
    input.tlsFingerprint = b.tlsFingerprint as string;
    known++;
  }
  if (b.endpoint !== undefined) {
    if (!text(b.endpoint, 1, 2048)) return null;
    input.endpoint = b.endpoint as string;
    known++;
  }
  if (b.cost !== undefined) {
    const cost = b.cost;
    if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 0 || cost > 1_000_000) return null;
    input.cost = cost;
    known++;
  }
  if (b.query !== undefined) {
    if (!text(b.query, 0, 200_000)) return null;
    input.query = b.query as string;
    known++;
  }
  if (b.userAgent !== undefined) {
    if (!text(b.userAgent, 0, 1024)) return null;
    input.userAgent = b.userAgent as string;
    known++;
  }
  // Any other key is the schema's to report: the body has more keys than the fields read above.
  let keys = 0;
  for (const _key in b) keys++;
  return keys === known ? input : null;
}
