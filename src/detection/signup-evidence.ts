import type { Db } from '../db/client.ts';
import { phonePrefix } from '../signals/phone.ts';
import { insertSignals } from '../signals/store.ts';

// Phones reach an account after its signup too (the phone step-up), while the signup signals are
// indexed once, at signup. An analysis run indexes every phone held by its event time that the
// index does not have yet, so a number verified at a step-up links accounts like one given at
// signup, and its prefix ties numbers bought as one consecutive block.

/**
 * Adds `phone` and `phone_prefix` signals for accounts whose current phone is not indexed yet,
 * stamped with when the account got it (its verification, else its creation). Returns rows added.
 */
export async function indexPhones(db: Db, asOf: Date): Promise<number> {
  const rows = await db.$queryRaw<Array<{ id: string; phone: string; at: Date }>>`
    SELECT a.id, a.phone, coalesce(a.phone_verified_at, a.created_at) AS at
    FROM accounts a
    WHERE a.phone IS NOT NULL AND coalesce(a.phone_verified_at, a.created_at) <= ${asOf}
      AND NOT EXISTS (
        SELECT 1 FROM signals s WHERE s.kind = 'phone' AND s.value = a.phone AND s.account_id = a.id
      )`;
  const signals: Array<{ kind: string; value: string; accountId: string; at: Date }> = [];
  for (const r of rows) {
    signals.push({ kind: 'phone', value: r.phone, accountId: r.id, at: r.at });
    if (/^\+\d{8,15}$/.test(r.phone))
      signals.push({ kind: 'phone_prefix', value: phonePrefix(r.phone, 2), accountId: r.id, at: r.at });
  }
  return signals.length === 0 ? 0 : insertSignals(db, signals);
}

/**
 * Refusal reasons that say an operator tried to make accounts it may not. A typo, an address
 * already in use, or the global and per-ASN windows that a launch-day crowd fills do not.
 */
export const FARM_REFUSALS: readonly string[] = [
  'velocity_ip',
  'velocity_subnet',
  'velocity_fingerprint',
  'velocity_email_pattern',
  'disposable_email',
  'blocked_ip',
  'blocked_asn',
  'blocked_email_domain',
  'blocked_email_pattern',
  'phone_type_not_allowed',
  'phone_in_use',
  'captcha_failed',
];

/**
 * Refused signup attempts (farm-like reasons, made by `asOf`) per device fingerprint, for the
 * fingerprints given: the accounts an operator could not make on the devices it did make some on.
 */
export async function refusalsByFingerprint(
  db: Db,
  fingerprints: readonly string[],
  asOf: Date,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (fingerprints.length === 0) return out;
  const rows = await db.$queryRaw<Array<{ fingerprint: string; n: bigint | number }>>`
    SELECT fingerprint, count(*) AS n FROM signup_attempts
    WHERE decision = 'deny' AND fingerprint = ANY(${[...fingerprints]}::text[]) AND created_at <= ${asOf}
      AND reasons && ${[...FARM_REFUSALS]}::text[]
    GROUP BY fingerprint`;
  for (const r of rows) out.set(r.fingerprint, Number(r.n));
  return out;
}
