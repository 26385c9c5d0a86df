import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyseLinks, LINK_BATCH } from '../../src/detection/run.ts';
import { insertSignals } from '../../src/signals/store.ts';
import { insertAccounts } from '../support/accounts.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { seededRandom } from '../support/random.ts';

// The link stage of a full run queries its batches of accounts side by side (ANALYSIS_CONCURRENCY);
// the links it writes are the same as one batch at a time, whichever batch finishes first.

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ ownDatabase: true });
});
afterAll(async () => {
  await app.close();
});

const T0 = Date.parse('2026-05-01T00:00:00Z');

/** Accounts over several batches, sharing devices, addresses and e-mail patterns in small groups. */
async function population(count: number, seed: number): Promise<void> {
  const r = seededRandom(seed);
  const ids = Array.from({ length: count }, (_, i) => `acc_lc_${String(i).padStart(5, '0')}`);
  await insertAccounts(app, ids, T0);
  const rows: Array<{ kind: string; value: string; accountId: string; at: Date }> = [];
  ids.forEach((id, i) => {
    const at = new Date(T0 + i * 60_000);
    // Neighbours by id share more often than accounts far apart, so links cross batch borders.
    const group = Math.floor((i + Math.floor(r() * 6)) / 5);
    rows.push({ kind: 'fingerprint', value: `fp-${group}`, accountId: id, at });
    rows.push({ kind: 'ip', value: `10.0.${group % 250}.${Math.floor(r() * 3)}`, accountId: id, at });
    if (r() < 0.5)
      rows.push({ kind: 'email_pattern', value: `p-${Math.floor(r() * 40)}`, accountId: id, at });
    rows.push({ kind: 'user_agent', value: `ua-${Math.floor(r() * 3)}`, accountId: id, at });
  });
  await insertSignals(app.ctx.db, rows);
}

async function links(concurrency: number) {
  await analyseLinks({ ...app.ctx.detection, linkConcurrency: concurrency }, new Date(T0 + 30 * 86_400_000));
  return app.ctx.db.link.findMany({
    select: { accountA: true, accountB: true, weight: true, evidence: true },
    orderBy: [{ accountA: 'asc' }, { accountB: 'asc' }],
  });
}

describe('the link stage with batches side by side', () => {
  it('writes the same links as one batch at a time', async () => {
    const count = 2 * LINK_BATCH + 150;
    await population(count, 7);
    const one = await links(1);
    // Enough links, and some across a batch border, for the comparison to mean something.
    expect(one.length).toBeGreaterThan(count / 2);
    const crossing = one.filter(
      (l) =>
        Math.floor(Number(l.accountA.slice(7)) / LINK_BATCH) !==
        Math.floor(Number(l.accountB.slice(7)) / LINK_BATCH),
    );
    expect(crossing.length).toBeGreaterThan(0);
    for (const concurrency of [3, 8]) expect(await links(concurrency)).toEqual(one);
  }, 60_000);
});
