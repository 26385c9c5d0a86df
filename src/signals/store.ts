import type { Db } from '../db/client.ts';

/**
 * Adds rows to the inverted index, keeping rows already there (first seen wins). One statement
 * per chunk with the rows as one jsonb parameter: Prisma's createMany is an order of magnitude
 * slower for the tens of thousands of rows an analysis run writes.
 */
export async function insertSignals(
  db: Pick<Db, '$executeRaw'>,
  rows: ReadonlyArray<{ kind: string; value: string; accountId: string; at: Date }>,
): Promise<number> {
  let inserted = 0;
  for (let i = 0; i < rows.length; i += 10_000) {
    const payload = JSON.stringify(
      rows
        .slice(i, i + 10_000)
        .map((r) => ({ k: r.kind, v: r.value, a: r.accountId, t: r.at.toISOString() })),
    );
    inserted += await db.$executeRaw`
      INSERT INTO signals (kind, value, account_id, at)
      SELECT r.k, r.v, r.a, r.t FROM jsonb_to_recordset(${payload}::jsonb) AS r(k text, v text, a text, t timestamptz)
      ORDER BY r.k, r.v, r.a
      ON CONFLICT (kind, value, account_id) DO NOTHING`;
  }
  return inserted;
}
