import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComputeFeaturesOptions, computeFeatures } from '../../src/detection/feature-store.ts';
import { USAGE_SIGNAL_CAP, USAGE_SIGNAL_CAPS } from '../../src/detection/features.ts';
import { minhash } from '../../src/enforce/minhash.ts';
import { type CountryDatabase, loadCountryDatabase } from '../../src/signals/country.ts';
import { createAccount } from '../support/accounts.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const COUNTRIES: Record<string, string> = { '192.0.2.1': 'DE', '198.51.100.1': 'BR', '203.0.113.1': 'VN' };
const country: CountryDatabase = {
  lookup: (ip) => COUNTRIES[ip] ?? null,
  lookupParsed: (ip) => COUNTRIES[ip.address] ?? null,
  stats: { ipv4Rows: 0, ipv6Rows: 0, runs: 0, countries: 3, loadMs: 0 },
};

/**
 * A window of its own for each test, years away from the other files' usage: the default account
 * selection sees only this test's rows.
 */
function window(): { asOf: Date; from: number } {
  const day = Date.UTC(2031, 0, 1) + Math.floor(Math.random() * 50_000) * DAY;
  return { asOf: new Date(day + 14 * DAY), from: day };
}

const options = (asOf: Date, more: Partial<ComputeFeaturesOptions> = {}): ComputeFeaturesOptions => ({
  asOf,
  policy: app.ctx.policy.detection,
  dailyLimitOf: () => 1_000,
  country,
  ...more,
});

let seq = 0;
const eventId = () => `evt_fs_${randomBytes(6).toString('hex')}_${seq++}`;

interface EventSpec {
  at: number;
  ip?: string;
  asn?: number | null;
  decision?: string;
  query?: string;
  tls?: string;
}

async function insertEvents(accountId: string, events: EventSpec[]): Promise<void> {
  await app.ctx.db.usageEvent.createMany({
    data: events.map((e) => ({
      id: eventId(),
      accountId,
      at: new Date(e.at),
      ip: e.ip ?? '203.0.113.50',
      asn: e.asn === undefined ? 64500 : e.asn,
      fingerprint: 'fp-shared',
      tlsFingerprint: e.tls ?? null,
      cost: 1,
      decision: e.decision ?? 'allow',
      queryMinhash: e.query ? minhash(e.query) : [],
    })),
  });
}

/** Every hour of every day at just over the daily limit: the lone 24/7 limit-hugger. */
async function insertLimitHugger(accountId: string, from: number): Promise<void> {
  const rows = [];
  for (let h = 0; h < 14 * 24; h++) {
    rows.push({
      accountId,
      hour: new Date(from + h * HOUR),
      requests: 42,
      cost: 42n,
      denied: 0,
      ips: ['203.0.113.50'],
      fingerprints: ['fp-bot'],
      asns: [64500],
    });
  }
  await app.ctx.db.usageHour.createMany({ data: rows });
}

/** Office hours on weekdays. */
async function insertHuman(accountId: string, from: number): Promise<void> {
  const rows = [];
  for (let d = 0; d < 14; d++) {
    if (d % 7 >= 5) continue;
    for (let h = 9; h < 17; h++) {
      rows.push({
        accountId,
        hour: new Date(from + d * DAY + h * HOUR),
        requests: 4,
        cost: 4n,
        denied: 0,
        ips: ['198.51.100.77'],
        fingerprints: ['fp-laptop'],
        asns: [64501],
      });
    }
  }
  await app.ctx.db.usageHour.createMany({ data: rows });
}

const featureRow = (accountId: string) => app.ctx.db.accountFeature.findUnique({ where: { accountId } });
const signalsOf = (accountId: string) =>
  app.ctx.db.signal.findMany({
    where: { accountId },
    orderBy: [{ kind: 'asc' }, { value: 'asc' }],
    select: { kind: true, value: true, at: true },
  });

describe('computeFeatures', () => {
  it('writes features, risk and usage signals for every account with usage in the window', async () => {
    const { asOf, from } = window();
    const hugger = await createAccount(app);
    const human = await createAccount(app);
    const idle = await createAccount(app);
    await insertLimitHugger(hugger, from);
    await insertHuman(human, from);
    await insertEvents(hugger, [
      {
        at: from + DAY,
        tls: 'ja3-bot',
        query: 'Summarise this contract for Alice in three bullet points please',
      },
      { at: from + DAY + 1_000, decision: 'deny' },
    ]);
    // Before the window and at asOf itself: neither counts.
    await app.ctx.db.usageHour.create({
      data: { accountId: idle, hour: new Date(from - HOUR), requests: 5, cost: 5n },
    });
    await insertEvents(idle, [{ at: asOf.getTime() }]);

    const result = await computeFeatures(app.ctx.db, options(asOf));

    expect(result.accounts).toBe(2);
    expect(result.signals).toBeGreaterThan(0);
    expect(result.newSignals).toBe(result.signals);
    const h = await featureRow(hugger);
    expect(h?.asOf).toEqual(asOf);
    expect(h?.risk).toBeGreaterThanOrEqual(app.ctx.policy.detection.account.throttle);
    expect(h?.features).toMatchObject({
      activeHoursShare: 1,
      ceilingShare: 1,
      meanDailyCost: 1_008,
      events: 2,
      denials: 1,
      tlsFingerprints: 1,
    });
    const p = await featureRow(human);
    expect(p?.risk).toBe(0);
    expect(p?.features).toMatchObject({
      activeHoursShare: 8 / 24,
      ceilingShare: 0,
      distinctIps: 1,
      timingRegularity: null,
    });
    expect(await featureRow(idle)).toBeNull();

    const kinds = new Set((await signalsOf(hugger)).map((s) => s.kind));
    expect([...kinds].sort()).toEqual([
      'query_lsh',
      'sync_slot',
      'tls_fingerprint',
      'usage_fingerprint',
      'usage_ip',
      'usage_subnet',
    ]);
    const ip = (await signalsOf(hugger)).find((s) => s.kind === 'usage_ip');
    expect(ip).toEqual({ kind: 'usage_ip', value: '203.0.113.50', at: new Date(from) });
  });

  it('writes the same rows when run twice with the same asOf', async () => {
    const { asOf, from } = window();
    const a = await createAccount(app);
    await insertHuman(a, from);
    await insertEvents(
      a,
      Array.from({ length: 40 }, (_, i) => ({
        at: from + 3 * DAY + i * 47_000,
        ip: ['192.0.2.1', '198.51.100.1', '203.0.113.1'][i % 3]!,
        query: `question ${i % 4} about the quarterly invoice totals`,
      })),
    );

    const first = await computeFeatures(app.ctx.db, options(asOf, { accountIds: [a] }));
    const rowsBefore = await featureRow(a);
    const signalsBefore = await signalsOf(a);
    const second = await computeFeatures(app.ctx.db, options(asOf, { accountIds: [a] }));

    expect(second).toEqual({ ...first, newSignals: 0 });
    const rowsAfter = await featureRow(a);
    expect({ ...rowsAfter, updatedAt: null }).toEqual({ ...rowsBefore, updatedAt: null });
    expect(await signalsOf(a)).toEqual(signalsBefore);
    expect(rowsAfter?.features).toMatchObject({ countriesPerHourMax: 3 });
  });

  it('keeps at most the per-kind cap of values for one account', async () => {
    const { asOf, from } = window();
    const a = await createAccount(app);
    await insertEvents(
      a,
      Array.from({ length: USAGE_SIGNAL_CAP + 150 }, (_, i) => ({
        at: from + DAY + i * 60_000,
        ip: `10.${i >> 8}.${i & 255}.9`,
      })),
    );

    await computeFeatures(app.ctx.db, options(asOf, { accountIds: [a] }));

    const counts = await app.ctx.db.signal.groupBy({
      by: ['kind'],
      where: { accountId: a },
      _count: { _all: true },
    });
    const byKind = Object.fromEntries(counts.map((c) => [c.kind, c._count._all]));
    expect(byKind.usage_ip).toBe(USAGE_SIGNAL_CAPS.usage_ip);
    expect(byKind.usage_subnet).toBe(USAGE_SIGNAL_CAPS.usage_subnet);
    // 350 minutes of activity: 35 ten-minute slots, under the cap.
    expect(byKind.sync_slot).toBe(35);
    expect(byKind.usage_fingerprint).toBe(1);
  });

  it('indexes two accounts acting together from one network under the same slots and query bands', async () => {
    const { asOf, from } = window();
    const a = await createAccount(app);
    const b = await createAccount(app);
    const prompt = (name: string) =>
      `Dear support team, my name is ${name} and I would like a full refund for the blender I ordered last week because it arrived damaged`;
    const t = from + 2 * DAY;
    await insertEvents(a, [
      { at: t, asn: 64999, query: prompt('Alice Martin') },
      { at: t + 30 * 60_000, asn: 64999, query: prompt('Bob Stone') },
    ]);
    await insertEvents(b, [
      { at: t + 2 * 60_000, asn: 64999, query: prompt('Chen Wei') },
      { at: t + 31 * 60_000, asn: 64999, query: prompt('Dana Kowalski') },
    ]);

    await computeFeatures(app.ctx.db, options(asOf, { accountIds: [a, b] }));

    const shared = await app.ctx.db.$queryRaw<Array<{ kind: string; n: bigint }>>`
      SELECT x.kind, count(*) AS n FROM signals x JOIN signals y ON y.kind = x.kind AND y.value = x.value
      WHERE x.account_id = ${a} AND y.account_id = ${b} GROUP BY x.kind ORDER BY x.kind`;
    const byKind = Object.fromEntries(shared.map((r) => [r.kind, Number(r.n)]));
    expect(byKind.sync_slot).toBe(2);
    expect(byKind.query_lsh).toBeGreaterThanOrEqual(1);
  });

  it('writes empty features for a listed account without usage and skips ids that are not accounts', async () => {
    const { asOf, from } = window();
    const quiet = await createAccount(app);
    const gone = `acc_gone${randomBytes(6).toString('hex')}`;
    // Sampled events have no foreign key: a deleted account can leave some behind.
    await insertEvents(gone, [{ at: from + DAY }]);

    const result = await computeFeatures(app.ctx.db, options(asOf, { accountIds: [quiet, gone] }));

    expect(result).toEqual({ accounts: 1, signals: 0, newSignals: 0 });
    expect((await featureRow(quiet))?.features).toMatchObject({ requests: 0, events: 0 });
    expect(await featureRow(gone)).toBeNull();
  });
});

describe('country database', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-country-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const files = async (v4: string, v6: string) => {
    const id = randomBytes(4).toString('hex');
    const ipv4CsvPath = join(dir, `v4-${id}.csv`);
    const ipv6CsvPath = join(dir, `v6-${id}.csv`);
    await writeFile(ipv4CsvPath, v4);
    await writeFile(ipv6CsvPath, v6);
    return { ipv4CsvPath, ipv6CsvPath };
  };

  it('answers from the innermost row, and from the outer one again after it', async () => {
    // 1.0.0.0-1.0.0.255 DE, with 1.0.0.16-1.0.0.31 BE inside; 2001:db8::/32 NL with a /48 FR inside.
    const db = await loadCountryDatabase(
      await files(
        '16777216,16777471,DE\n16777232,16777247,BE\n16777472,16777472,AU\n',
        '42540766411282592856903984951653826560,42540766490510755371168322545197776895,NL\n' +
          '42540766411282592856903984951653826560,42540766411283801782723599580828532735,FR\n',
      ),
    );
    expect(db.lookup('1.0.0.1')).toBe('DE');
    expect(db.lookup('1.0.0.20')).toBe('BE');
    expect(db.lookup('1.0.0.32')).toBe('DE');
    expect(db.lookup('1.0.1.0')).toBe('AU');
    expect(db.lookup('1.0.1.1')).toBeNull();
    expect(db.lookup('2001:db8::1')).toBe('FR');
    expect(db.lookup('2001:db8:1::1')).toBe('NL');
    expect(db.lookup('2001:db9::1')).toBeNull();
    expect(db.lookup('not an address')).toBeNull();
    expect(db.stats).toMatchObject({ ipv4Rows: 3, ipv6Rows: 2, countries: 5 });
  });

  it('refuses rows out of order, naming the line', async () => {
    await expect(loadCountryDatabase(await files('200,300,DE\n100,150,FR\n', ''))).rejects.toThrow(
      /line 2: rows are not sorted/,
    );
  });

  it('loads the bundled data once', async () => {
    const [a, b] = await Promise.all([loadCountryDatabase(), loadCountryDatabase()]);
    expect(a).toBe(b);
    expect(a.lookup('1.0.0.1')).toBe('AU');
    expect(a.stats.countries).toBeGreaterThan(200);
  }, 60_000);
});
