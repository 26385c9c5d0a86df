import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tierSurges } from '../../src/detection/run.ts';
import { createAccount } from '../support/accounts.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

// The farm no single account reveals still moves its tier's total: alert when it jumps.

const DAY = 86_400_000;
const asOf = new Date('2024-03-20T00:00:00Z');
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app.close();
});

async function usage(accountId: string, dayOffset: number, cost: number) {
  await app.ctx.db.usageHour.create({
    data: {
      accountId,
      hour: new Date(asOf.getTime() - dayOffset * DAY + 12 * 3_600_000),
      requests: cost,
      cost: BigInt(cost),
      ips: [],
      fingerprints: [],
      asns: [],
    },
  });
}

describe('tier surges', () => {
  it('flags a tier whose last day runs far above its weekly median, and not a steady one', async () => {
    const tier = `surge${Math.floor(Math.random() * 1e6)}`;
    const steady = `steady${Math.floor(Math.random() * 1e6)}`;
    const a = await createAccount(app, { tier });
    const b = await createAccount(app, { tier: steady });
    for (let d = 2; d <= 8; d++) {
      await usage(a, d, 100);
      await usage(b, d, 100);
    }
    await usage(a, 1, 450);
    await usage(b, 1, 120);
    const surges = await tierSurges(app.ctx.db, asOf, 3);
    expect(surges).toContainEqual({ tier, observed: 450, baseline: 100 });
    expect(surges.map((s) => s.tier)).not.toContain(steady);
  });
});
