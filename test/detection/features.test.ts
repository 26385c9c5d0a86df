import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AccountFeatures,
  accountRisk,
  lshBands,
  RISK_WEIGHTS,
  riskParts,
  USAGE_SIGNAL_CAPS,
  type UsageEventInput,
  type UsageHourInput,
  usageFeatures,
  usageSignals,
} from '../../src/detection/features.ts';
import { minhash } from '../../src/enforce/minhash.ts';
import { seededRandom } from '../support/random.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WINDOW = 14 * DAY;
// Midnight UTC, so the window holds exactly 14 whole days.
const AS_OF = Date.UTC(2026, 2, 15);
const FROM = AS_OF - WINDOW;
const LIMIT = 1_000;

const noCountry = (_ip: string): string | null => null;

function hourRow(hour: number, cost: number, over: Partial<UsageHourInput> = {}): UsageHourInput {
  return {
    hour,
    requests: Math.max(1, cost),
    cost,
    denied: 0,
    ips: ['203.0.113.7'],
    fingerprints: ['fp-1'],
    asns: [64500],
    ...over,
  };
}

/** One row per (day, hour-of-day) the pattern names, over every day of the window. */
function everyDay(costAt: (hourOfDay: number, day: number) => number): UsageHourInput[] {
  const rows: UsageHourInput[] = [];
  for (let d = 0; d < 14; d++) {
    for (let h = 0; h < 24; h++) {
      const cost = costAt(h, d);
      if (cost > 0) rows.push(hourRow(FROM + d * DAY + h * HOUR, cost));
    }
  }
  return rows;
}

function event(at: number, over: Partial<UsageEventInput> = {}): UsageEventInput {
  return {
    at,
    ip: '203.0.113.7',
    asn: 64500,
    fingerprint: 'fp-1',
    tlsFingerprint: null,
    decision: 'allow',
    queryMinhash: [],
    ...over,
  };
}

function eventsWithGaps(n: number, gap: () => number): UsageEventInput[] {
  const out: UsageEventInput[] = [];
  let t = AS_OF - 2 * DAY;
  for (let i = 0; i < n; i++) {
    out.push(event(Math.round(t)));
    t += gap();
  }
  return out;
}

const features = (
  hours: UsageHourInput[],
  events: UsageEventInput[] = [],
  countryOf = noCountry,
): AccountFeatures =>
  usageFeatures({ hours, events, asOf: AS_OF, windowMs: WINDOW, dailyLimit: LIMIT, countryOf });

describe('usage features from hourly rows', () => {
  const limitHugger = everyDay(() => 42); // 1,008 a day against a limit of 1,000
  const human = everyDay((h, d) => (d % 7 < 5 && h >= 9 && h < 17 ? 3 + ((h + d) % 4) : 0));
  const midnightBurster = everyDay((h) => (h === 0 ? 950 : h === 15 ? 10 : 0));

  it.each([
    { name: 'a 24/7 limit-hugger', rows: limitHugger, hoursShare: 1, ceiling: 1, midnight: 1 / 24 },
    { name: 'a 9-to-5 human', rows: human, hoursShare: 8 / 24, ceiling: 0, midnight: 0 },
    {
      name: 'a midnight burster',
      rows: midnightBurster,
      hoursShare: 2 / 24,
      ceiling: 1,
      midnight: 950 / 960,
    },
  ])('describes $name', ({ rows, hoursShare, ceiling, midnight }) => {
    const f = features(rows);
    expect(f.activeHoursShare).toBeCloseTo(hoursShare, 6);
    expect(f.ceilingShare).toBeCloseTo(ceiling, 6);
    expect(f.midnightBurstShare).toBeCloseTo(midnight, 6);
  });

  it('scores the limit-hugger above throttle, the burster for review, the human at zero', () => {
    const hugger = accountRisk(features(limitHugger));
    const burster = accountRisk(features(midnightBurster));
    const human_ = accountRisk(features(human));
    expect(hugger).toBeGreaterThanOrEqual(0.85);
    expect(burster).toBeGreaterThanOrEqual(0.6);
    expect(burster).toBeLessThan(hugger);
    expect(human_).toBe(0);
  });

  it('totals cost per UTC day and counts distinct networks, devices and denials', () => {
    const rows = [
      hourRow(FROM + 10 * HOUR, 5, {
        requests: 8,
        denied: 3,
        ips: ['203.0.113.7', '198.51.100.1'],
        asns: [64500, 64501],
      }),
      hourRow(FROM + 11 * HOUR, 7, { requests: 7, ips: ['203.0.113.7'], fingerprints: ['fp-2'] }),
      hourRow(FROM + DAY + 3 * HOUR, 4, { requests: 5 }),
    ];
    const f = features(rows);
    expect(f.dailyUsage).toEqual({ '2026-03-01': 12, '2026-03-02': 4 });
    expect(f).toMatchObject({
      activeDays: 2,
      meanDailyCost: 8,
      distinctIps: 2,
      distinctFingerprints: 2,
      distinctAsns: 2,
    });
    expect(f.deniedShare).toBeCloseTo(3 / 20, 6);
    expect(f.hoursPerDay).toBe(1.5);
  });

  it('ignores rows outside the window and the hour still open at asOf', () => {
    const f = usageFeatures({
      hours: [
        hourRow(FROM - HOUR, 50),
        hourRow(AS_OF - HOUR, 5),
        hourRow(AS_OF - HOUR / 2, 50),
        hourRow(AS_OF, 50),
      ],
      events: [event(FROM - 1), event(AS_OF - 1), event(AS_OF)],
      asOf: AS_OF,
      windowMs: WINDOW,
      dailyLimit: LIMIT,
      countryOf: noCountry,
    });
    expect(f.cost).toBe(5);
    expect(f.events).toBe(1);
  });

  it('counts only whole days towards the ceiling', () => {
    // asOf at noon: the last calendar day is cut in half and cannot reach the limit.
    const asOf = AS_OF + 12 * HOUR;
    const rows = [hourRow(AS_OF - DAY, 950), hourRow(AS_OF + HOUR, 100)];
    const f = usageFeatures({
      hours: rows,
      events: [],
      asOf,
      windowMs: WINDOW,
      dailyLimit: LIMIT,
      countryOf: noCountry,
    });
    expect(f.ceilingDays).toBe(1);
    expect(f.ceilingShare).toBe(1);
  });

  it('has no ceiling when the tier has no daily limit', () => {
    const f = usageFeatures({
      hours: limitHugger,
      events: [],
      asOf: AS_OF,
      windowMs: WINDOW,
      dailyLimit: null,
      countryOf: noCountry,
    });
    expect(f.ceilingShare).toBe(0);
  });
});

describe('usage features from sampled events', () => {
  it.each([
    { name: 'a metronome', gaps: () => 60_000, lo: 0, hi: 0.01 },
    {
      name: 'Poisson arrivals',
      gaps: (
        (r) => () =>
          -Math.log(1 - r()) * 60_000
      )(seededRandom(7)),
      lo: 0.8,
      hi: 1.2,
    },
  ])('measures the timing regularity of $name', ({ gaps, lo, hi }) => {
    const f = features([], eventsWithGaps(500, gaps));
    expect(f.timingRegularity).toBeGreaterThanOrEqual(lo);
    expect(f.timingRegularity).toBeLessThanOrEqual(hi);
  });

  it('says nothing about regularity from a handful of events', () => {
    expect(
      features(
        [],
        eventsWithGaps(5, () => 1_000),
      ).timingRegularity,
    ).toBeNull();
  });

  it('counts a request within 2 s of a denial as a retry', () => {
    const t = AS_OF - DAY;
    const f = features(
      [],
      [
        event(t, { decision: 'deny' }),
        event(t + 1_500),
        event(t + 60_000, { decision: 'deny' }),
        event(t + 70_000),
      ],
    );
    expect(f.denials).toBe(2);
    expect(f.retryAfterDenialShare).toBe(0.5);
  });

  it('finds an account used from three countries in one hour', () => {
    const countries: Record<string, string> = {
      '192.0.2.1': 'DE',
      '198.51.100.1': 'BR',
      '203.0.113.1': 'VN',
    };
    const countryOf = (ip: string) => countries[ip] ?? null;
    const h = AS_OF - 5 * HOUR;
    const oneHour = features(
      [],
      [
        event(h + 60_000, { ip: '192.0.2.1' }),
        event(h + 120_000, { ip: '198.51.100.1' }),
        event(h + 180_000, { ip: '203.0.113.1' }),
      ],
      countryOf,
    );
    const spread = features(
      [],
      [
        event(h, { ip: '192.0.2.1' }),
        event(h + HOUR, { ip: '198.51.100.1' }),
        event(h + 2 * HOUR, { ip: '203.0.113.1' }),
      ],
      countryOf,
    );
    // Unsampled requests reach the count through the hourly rows' addresses.
    const viaHours = features(
      [hourRow(h, 3, { ips: ['192.0.2.1', '203.0.113.1'] })],
      [event(h + 1, { ip: '198.51.100.1' })],
      countryOf,
    );
    expect(oneHour.countriesPerHourMax).toBe(3);
    expect(spread.countriesPerHourMax).toBe(1);
    expect(viaHours.countriesPerHourMax).toBe(3);
    expect(accountRisk(oneHour)).toBeGreaterThanOrEqual(RISK_WEIGHTS.countryHopping);
  });

  it('sees templated queries as low entropy and varied ones as high', () => {
    const templated = ['Alice', 'Bob', 'Alice', 'Bob', 'Alice', 'Bob', 'Alice', 'Bob'].map((name, i) =>
      event(AS_OF - (i + 1) * HOUR, {
        queryMinhash: minhash(`Summarise the attached contract for ${name} in three bullet points please`),
        tlsFingerprint: 't1',
      }),
    );
    const varied = [
      'How do I reverse a linked list in place without recursion',
      'What wine goes well with grilled salmon and asparagus',
      'Explain the difference between TCP and UDP for a beginner',
      'Write a haiku about the first snow in the mountains',
      'Which countries border Bolivia and what are their capitals',
      'Give me a recipe for vegan chocolate chip cookies tonight',
      'Why is the sky blue during the day but red at sunset',
      'Translate good morning my friend into Portuguese and Italian',
    ].map((q, i) =>
      event(AS_OF - (i + 1) * HOUR, { queryMinhash: minhash(q), tlsFingerprint: i % 2 ? 't1' : 't2' }),
    );
    const a = features([], templated);
    const b = features([], varied);
    expect(a.querySamples).toBe(8);
    expect(a.queryEntropy).toBeLessThanOrEqual(1);
    expect(a.queryDistinctShare).toBe(0.25);
    expect(b.queryEntropy).toBeCloseTo(3, 6);
    expect(b.queryDistinctShare).toBe(1);
    expect(a.tlsFingerprints).toBe(1);
    expect(b.tlsFingerprints).toBe(2);
  });
});

describe('account risk', () => {
  const base = features([]);

  it('is 0 for an account without usage', () => {
    expect(accountRisk(base)).toBe(0);
    expect(Object.values(riskParts(base)).every((p) => p === 0)).toBe(true);
  });

  // Every feature the risk reads, with the direction in which it is evidence.
  const arbFeatures = fc.record({
    activeDays: fc.integer({ min: 0, max: 14 }),
    activeHours: fc.integer({ min: 0, max: 24 }),
    hoursPerDay: fc.double({ min: 0, max: 24, noNaN: true }),
    ceilingShare: fc.double({ min: 0, max: 1, noNaN: true }),
    ceilingDays: fc.integer({ min: 0, max: 14 }),
    midnightBurstShare: fc.double({ min: 0, max: 1, noNaN: true }),
    timingRegularity: fc.option(fc.double({ min: 0, max: 5, noNaN: true }), { nil: null }),
    retryAfterDenialShare: fc.double({ min: 0, max: 1, noNaN: true }),
    denials: fc.integer({ min: 0, max: 100 }),
    countriesPerHourMax: fc.integer({ min: 0, max: 10 }),
  });
  const worse = fc.record({
    key: fc.constantFrom(
      'activeDays',
      'activeHours',
      'hoursPerDay',
      'ceilingShare',
      'ceilingDays',
      'midnightBurstShare',
      'retryAfterDenialShare',
      'denials',
      'countriesPerHourMax',
    ),
    by: fc.double({ min: 0, max: 5, noNaN: true }),
  });

  it('stays within 0..1 and never falls when evidence grows', () => {
    fc.assert(
      fc.property(arbFeatures, worse, fc.double({ min: 0, max: 1, noNaN: true }), (f, w, regular) => {
        const before = { ...base, ...f };
        const after = { ...before, [w.key]: before[w.key] + w.by };
        const r0 = accountRisk(before);
        const r1 = accountRisk(after);
        expect(r0).toBeGreaterThanOrEqual(0);
        expect(r1).toBeLessThanOrEqual(1);
        expect(r1).toBeGreaterThanOrEqual(r0);
        // A more regular rhythm (lower CV) is evidence too.
        if (before.timingRegularity !== null) {
          const steadier = { ...before, timingRegularity: before.timingRegularity * regular };
          expect(accountRisk(steadier)).toBeGreaterThanOrEqual(r0);
        }
      }),
    );
  });
});

describe('usage signals', () => {
  const template = (name: string, item: string) =>
    `Dear support team, my name is ${name} and I would like a full refund for the ${item} I ordered last week because it arrived damaged`;

  it('gives two accounts sending one template with different names a shared query band, unrelated prompts none', () => {
    const bandsOf = (texts: string[]) =>
      new Set(
        usageSignals(
          texts.map((t, i) => event(AS_OF - i * HOUR, { queryMinhash: minhash(t), ip: null, asn: null })),
          [],
        )
          .filter((s) => s.kind === 'query_lsh')
          .map((s) => s.value),
      );
    const a = bandsOf([template('Alice Martin', 'blender'), template('Bob Stone', 'kettle')]);
    const b = bandsOf([template('Chen Wei', 'blender'), template('Dana Kowalski', 'toaster')]);
    const c = bandsOf([
      'Plan a three day hiking trip in the Dolomites with easy trails',
      'What is the derivative of x squared times the sine of x',
    ]);
    expect([...a].filter((v) => b.has(v)).length).toBeGreaterThanOrEqual(1);
    expect([...a].filter((v) => c.has(v))).toEqual([]);
    expect([...b].filter((v) => c.has(v))).toEqual([]);
  });

  it('names 8 bands per signature and none for a missing one', () => {
    const bands = lshBands(minhash(template('Alice', 'kettle')));
    expect(bands).toHaveLength(8);
    expect(bands.every((b, i) => new RegExp(`^b${i}:[0-9a-f]{16}$`).test(b))).toBe(true);
    expect(lshBands([])).toEqual([]);
  });

  it('emits addresses, subnets, devices, TLS fingerprints and ten-minute activity slots with their first time seen', () => {
    const t = Date.UTC(2026, 2, 14, 10, 3);
    const signals = usageSignals(
      [
        event(t + 60_000, { ip: '198.51.100.20', asn: null, fingerprint: 'fp-2', tlsFingerprint: 'ja3-x' }),
        event(t, { ip: '203.0.113.7', asn: 64500, tlsFingerprint: 'ja3-x' }),
      ],
      [hourRow(Date.UTC(2026, 2, 14, 9), 3, { ips: ['203.0.113.9'], fingerprints: ['fp-1'] })],
    );
    const slot = Math.floor(t / 600_000);
    expect(signals).toEqual([
      { kind: 'usage_ip', value: '198.51.100.20', at: t + 60_000 },
      { kind: 'usage_ip', value: '203.0.113.7', at: t },
      { kind: 'usage_ip', value: '203.0.113.9', at: Date.UTC(2026, 2, 14, 9) },
      { kind: 'usage_subnet', value: '198.51.100.0/24', at: t + 60_000 },
      { kind: 'usage_subnet', value: '203.0.113.0/24', at: Date.UTC(2026, 2, 14, 9) },
      { kind: 'usage_fingerprint', value: 'fp-1', at: Date.UTC(2026, 2, 14, 9) },
      { kind: 'usage_fingerprint', value: 'fp-2', at: t + 60_000 },
      { kind: 'tls_fingerprint', value: 'ja3-x', at: t },
      { kind: 'sync_slot', value: `198.51.100.0/24|${slot}`, at: t + 60_000 },
      { kind: 'sync_slot', value: `as64500|${slot}`, at: t },
    ]);
  });

  it('keeps at most the cap per kind: the most frequent values, and the latest activity slots', () => {
    const events: UsageEventInput[] = [];
    for (let i = 0; i < 300; i++) {
      // The first 50 addresses are seen three times, the rest once; one slot per event.
      const times = i < 50 ? 3 : 1;
      for (let k = 0; k < times; k++)
        events.push(event(FROM + i * 600_000 + k, { ip: `10.${i >> 8}.${i & 255}.1`, asn: 64500 }));
    }
    const signals = usageSignals(events, []);
    const ips = signals.filter((s) => s.kind === 'usage_ip').map((s) => s.value);
    const slots = signals.filter((s) => s.kind === 'sync_slot').map((s) => Number(s.value.split('|')[1]));
    expect(ips).toHaveLength(USAGE_SIGNAL_CAPS.usage_ip!);
    for (let i = 0; i < 50; i++) expect(ips).toContain(`10.0.${i}.1`);
    expect(slots).toHaveLength(USAGE_SIGNAL_CAPS.sync_slot!);
    expect(Math.min(...slots)).toBe(Math.floor(FROM / 600_000) + 300 - USAGE_SIGNAL_CAPS.sync_slot!);
    expect(usageSignals(events, [], 10).filter((s) => s.kind === 'usage_subnet')).toHaveLength(10);
  });

  it('gives the same signals whatever the order of the rows', () => {
    const events = eventsWithGaps(50, () => 37_000).map((e, i) => ({
      ...e,
      ip: `192.0.2.${i % 7}`,
      queryMinhash: minhash(`question ${i % 3} about invoices`),
    }));
    expect(usageSignals([...events].reverse(), [])).toEqual(usageSignals(events, []));
  });
});
