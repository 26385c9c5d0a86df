import { describe, expect, it } from 'vitest';
import { encodeUsageEvent, type UsageEventRecord } from '../../src/usage/event.ts';
import {
  aggregate,
  DISTINCT_CAP,
  decodeForIngest,
  fieldsOf,
  hourOf,
  type IngestEntry,
} from '../../src/usage/ingest.ts';

const T0 = Date.UTC(2026, 0, 15, 10, 0, 0);
const MIN = 60_000;

function event(overrides: Partial<UsageEventRecord> = {}): UsageEventRecord {
  return {
    accountId: 'acc_a',
    keyId: 'key_a',
    at: T0,
    ip: '203.0.113.1',
    asn: 64500,
    fingerprint: 'fp1',
    tlsFingerprint: null,
    userAgent: null,
    endpoint: '/v1/chat',
    cost: 1,
    decision: 'allow',
    reason: null,
    minhash: [],
    sampled: false,
    ...overrides,
  };
}

let seq = 0;
const entries = (...events: UsageEventRecord[]): IngestEntry[] =>
  events.map((e) => ({ id: `${e.at}-${seq++}`, event: e }));

describe('aggregate', () => {
  it('floors event time to the UTC hour', () => {
    expect(hourOf(T0 + 59 * MIN + 59_999)).toBe(T0);
    expect(hourOf(T0 + 60 * MIN)).toBe(T0 + 60 * MIN);
  });

  it('totals each account-hour separately', () => {
    const { hours } = aggregate(
      entries(
        event({ at: T0 + MIN, cost: 2 }),
        event({ at: T0 + 2 * MIN, cost: 3, ip: '203.0.113.2' }),
        event({ at: T0 + 61 * MIN, cost: 5 }),
        event({ accountId: 'acc_b', at: T0 + 3 * MIN, cost: 7, fingerprint: 'fp2', asn: 64501 }),
      ),
    );
    expect(hours.size).toBe(3);
    const a0 = hours.get(`acc_a|${T0}`);
    expect(a0).toMatchObject({ accountId: 'acc_a', hour: T0, requests: 2, cost: 5, denied: 0 });
    expect([...(a0?.ips ?? [])]).toEqual(['203.0.113.1', '203.0.113.2']);
    expect([...(a0?.fingerprints ?? [])]).toEqual(['fp1']);
    expect(hours.get(`acc_a|${T0 + 60 * MIN}`)).toMatchObject({ requests: 1, cost: 5 });
    const b0 = hours.get(`acc_b|${T0}`);
    expect(b0).toMatchObject({ requests: 1, cost: 7 });
    expect([...(b0?.asns ?? [])]).toEqual([64501]);
  });

  it('counts a denied request but not its cost', () => {
    const { hours } = aggregate(entries(event({ cost: 4 }), event({ cost: 9, decision: 'deny' })));
    expect(hours.get(`acc_a|${T0}`)).toMatchObject({ requests: 2, denied: 1, cost: 4 });
  });

  it('leaves missing values out of the distinct sets', () => {
    const { hours } = aggregate(entries(event({ ip: null, fingerprint: null, asn: null })));
    const h = hours.get(`acc_a|${T0}`);
    expect(h?.ips.size).toBe(0);
    expect(h?.fingerprints.size).toBe(0);
    expect(h?.asns.size).toBe(0);
  });

  it('keeps at most DISTINCT_CAP values per set, the first ones seen, while counting every request', () => {
    const many = Array.from({ length: 100 }, (_, i) => event({ ip: `198.51.100.${i}`, at: T0 + i }));
    const h = aggregate(entries(...many)).hours.get(`acc_a|${T0}`);
    expect(h?.requests).toBe(100);
    expect(h?.ips.size).toBe(DISTINCT_CAP);
    expect(h?.ips.has('198.51.100.0')).toBe(true);
    expect(h?.ips.has('198.51.100.99')).toBe(false);
  });

  it('passes on only the sampled events', () => {
    const batch = entries(event({ sampled: true }), event(), event({ sampled: true, at: T0 + 1 }));
    expect(aggregate(batch).events.map((e) => e.id)).toEqual([batch[0]?.id, batch[2]?.id]);
  });

  it('keeps the latest use of each key, whatever the order in the batch', () => {
    const { keysLastUsed } = aggregate(
      entries(
        event({ at: T0 + 5 * MIN }),
        event({ at: T0 + MIN }),
        event({ keyId: 'key_b', at: T0 + 2 * MIN }),
        event({ keyId: null, at: T0 + 9 * MIN }),
      ),
    );
    expect(keysLastUsed).toEqual(
      new Map([
        ['key_a', T0 + 5 * MIN],
        ['key_b', T0 + 2 * MIN],
      ]),
    );
  });
});

describe('decodeForIngest', () => {
  const flat = (e: UsageEventRecord, extra: Record<string, string> = {}) =>
    fieldsOf(Object.entries({ ...encodeUsageEvent(e), ...extra }).flat());

  it('round-trips an encoded event', () => {
    const e = event({ minhash: [1, 2, 3], sampled: true, userAgent: 'curl/8' });
    expect(decodeForIngest(flat(e))).toEqual(e);
  });

  it('counts an entry the limiter refused (ok=0) as denied', () => {
    expect(decodeForIngest(flat(event(), { ok: '0' }))?.decision).toBe('deny');
    expect(decodeForIngest(flat(event(), { ok: '1' }))?.decision).toBe('allow');
  });

  it('refuses what is not a usage event', () => {
    expect(decodeForIngest({ hello: 'world' })).toBeNull();
    expect(decodeForIngest(flat(event({ at: -1 })))).toBeNull();
  });

  it('drops values the columns cannot hold instead of failing the batch', () => {
    const d = decodeForIngest(
      flat(event({ asn: 4_200_000_000, ip: '203.0.113.1\u0000', minhash: [1, 2 ** 32] })),
    );
    expect(d).toMatchObject({ asn: null, ip: '203.0.113.1', minhash: [] });
  });
});
