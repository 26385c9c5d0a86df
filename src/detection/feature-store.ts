import type { Db } from '../db/client.ts';
import type { DetectionPolicy } from '../policy/policy.ts';
import type { CountryDatabase } from '../signals/country.ts';
import { insertSignals } from '../signals/store.ts';
import {
  accountRisk,
  featureWindow,
  riskParts,
  type UsageEventInput,
  type UsageHourInput,
  usageFeatures,
  usageSignals,
} from './features.ts';

// The feature store: reads each account's usage in the window in bulk, computes its features and
// risk (features.ts), and writes them to account_features, with its usage signals added to the
// inverted index. The same rows and the same asOf write the same values.

const HOUR = 3_600_000;
/** Accounts per read: one query for their hours and one for their events, whatever their number. */
const ACCOUNT_CHUNK = 500;
/** Signal rows per insert, far below PostgreSQL's 65,535 bind parameters (4 per row). */

export interface ComputeFeaturesOptions {
  /** Default: every account with usage in the window. */
  accountIds?: readonly string[];
  /** Event time the run considers "now": usage at or after it is ignored. */
  asOf: Date;
  policy: Pick<DetectionPolicy, 'featureWindow'>;
  /** The tier's daily limit (cost) for `ceilingShare`; null when the tier has none. */
  dailyLimitOf: (tier: string) => number | null;
  country: CountryDatabase;
  /** Called before each chunk (an analysis run's progress, run-stages.ts). */
  progress?: () => Promise<void>;
}

export interface ComputeFeaturesResult {
  accounts: number;
  /** Usage signal values offered to the index. */
  signals: number;
  /** Of those, the ones it did not hold yet (a value already held keeps its first-seen time). */
  newSignals: number;
}

export async function computeFeatures(db: Db, opts: ComputeFeaturesOptions): Promise<ComputeFeaturesResult> {
  const asOf = opts.asOf.getTime();
  const windowMs = opts.policy.featureWindow;
  const w = featureWindow(asOf, windowMs);
  const from = new Date(w.from);
  // Whole hours only, as in features.ts: the hour holding asOf is still open.
  const lastHour = new Date(w.to - HOUR);
  const ids = opts.accountIds
    ? [...new Set(opts.accountIds)].sort()
    : await accountsWithUsage(db, from, lastHour, opts.asOf);
  const countryOf = (ip: string) => opts.country.lookup(ip);

  const result: ComputeFeaturesResult = { accounts: 0, signals: 0, newSignals: 0 };
  for (let i = 0; i < ids.length; i += ACCOUNT_CHUNK) {
    const chunk = ids.slice(i, i + ACCOUNT_CHUNK);
    await opts.progress?.();
    const [accounts, hourRows, eventRows] = await Promise.all([
      db.account.findMany({
        where: { id: { in: chunk } },
        select: { id: true, tier: true },
        orderBy: { id: 'asc' },
      }),
      db.usageHour.findMany({
        where: { accountId: { in: chunk }, hour: { gte: from, lte: lastHour } },
        select: {
          accountId: true,
          hour: true,
          requests: true,
          cost: true,
          denied: true,
          ips: true,
          fingerprints: true,
          asns: true,
        },
        orderBy: [{ accountId: 'asc' }, { hour: 'asc' }],
      }),
      db.usageEvent.findMany({
        where: { accountId: { in: chunk }, at: { gte: from, lt: opts.asOf } },
        select: {
          accountId: true,
          at: true,
          ip: true,
          asn: true,
          fingerprint: true,
          tlsFingerprint: true,
          decision: true,
          queryMinhash: true,
        },
        orderBy: [{ accountId: 'asc' }, { at: 'asc' }, { id: 'asc' }],
      }),
    ]);
    const hoursOf = groupBy(
      hourRows,
      (r): UsageHourInput => ({
        hour: r.hour.getTime(),
        requests: r.requests,
        cost: Number(r.cost),
        denied: r.denied,
        ips: r.ips,
        fingerprints: r.fingerprints,
        asns: r.asns,
      }),
    );
    const eventsOf = groupBy(
      eventRows,
      (r): UsageEventInput => ({
        at: r.at.getTime(),
        ip: r.ip,
        asn: r.asn,
        fingerprint: r.fingerprint,
        tlsFingerprint: r.tlsFingerprint,
        decision: r.decision,
        queryMinhash: r.queryMinhash,
      }),
    );

    const featureRows: Array<{ account_id: string; features: unknown; risk: number }> = [];
    const signalRows: Array<{ kind: string; value: string; accountId: string; at: Date }> = [];
    // Accounts deleted since their usage was recorded are skipped: nothing may point at them.
    for (const account of accounts) {
      const hours = hoursOf.get(account.id) ?? [];
      const events = eventsOf.get(account.id) ?? [];
      const features = usageFeatures({
        hours,
        events,
        asOf,
        windowMs,
        dailyLimit: opts.dailyLimitOf(account.tier),
        countryOf,
      });
      featureRows.push({
        account_id: account.id,
        features: { ...features, riskParts: riskParts(features) },
        risk: accountRisk(features),
      });
      for (const s of usageSignals(events, hours)) {
        signalRows.push({ kind: s.kind, value: s.value, accountId: account.id, at: new Date(s.at) });
      }
    }

    if (featureRows.length > 0) await upsertFeatures(db, featureRows, opts.asOf);
    result.newSignals += await insertSignals(db, signalRows);
    result.accounts += featureRows.length;
    result.signals += signalRows.length;
  }
  return result;
}

async function accountsWithUsage(db: Db, from: Date, lastHour: Date, asOf: Date): Promise<string[]> {
  const rows = await db.$queryRaw<Array<{ id: string }>>`
    SELECT account_id AS id FROM usage_hours WHERE hour >= ${from}::timestamptz AND hour <= ${lastHour}::timestamptz
    UNION
    SELECT account_id FROM usage_events WHERE at >= ${from}::timestamptz AND at < ${asOf}::timestamptz
    ORDER BY 1`;
  return rows.map((r) => r.id);
}

// One statement per chunk; the rows travel as one jsonb parameter (no bind-parameter limit).
async function upsertFeatures(
  db: Db,
  rows: ReadonlyArray<{ account_id: string; features: unknown; risk: number }>,
  asOf: Date,
): Promise<void> {
  await db.$executeRaw`
    INSERT INTO account_features AS f (account_id, as_of, features, risk, updated_at)
    SELECT r.account_id, ${asOf}::timestamptz, r.features, r.risk, now()
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(account_id text, features jsonb, risk float8)
    ORDER BY r.account_id
    ON CONFLICT (account_id) DO UPDATE SET
      as_of = EXCLUDED.as_of, features = EXCLUDED.features, risk = EXCLUDED.risk, updated_at = now()`;
}

function groupBy<R extends { accountId: string }, T>(rows: readonly R[], map: (r: R) => T): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const r of rows) {
    const list = out.get(r.accountId);
    if (list) list.push(map(r));
    else out.set(r.accountId, [map(r)]);
  }
  return out;
}
