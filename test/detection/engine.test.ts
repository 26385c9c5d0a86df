import { describe, expect, it } from 'vitest';
import { assignClusterIds, componentsOf } from '../../src/detection/cluster.ts';
import {
  actionFor,
  scoreCluster,
  sequentialPhoneShare,
  signupBurstiness,
} from '../../src/detection/score.ts';
import { groupedRarity, pairWeight, rarity, timeFactor } from '../../src/detection/weights.ts';
import { parsePolicy } from '../../src/policy/policy.ts';

const detection = parsePolicy('version: 1').detection;
const DAY = 86_400_000;
const shared = (kind: string, bucket: number, dt = 0, value = `${kind}-v`) => ({
  kind,
  value,
  bucket,
  atA: 0,
  atB: dt,
});

describe('link weights', () => {
  it('weighs a value shared by two accounts more than one shared by thousands', () => {
    expect(rarity(2)).toBe(1);
    expect(rarity(16)).toBeCloseTo(0.5, 5);
    expect(rarity(2000)).toBeLessThan(0.32);
    expect(rarity(3)).toBeGreaterThan(rarity(30));
  });

  it('weighs signups minutes apart more than months apart', () => {
    expect(timeFactor(60_000, 2 * DAY)).toBeGreaterThan(1.45);
    expect(timeFactor(90 * DAY, 2 * DAY)).toBeCloseTo(0.25, 3);
    const near = pairWeight([shared('fingerprint', 2, 60_000)], detection).weight;
    const far = pairWeight([shared('fingerprint', 2, 120 * DAY)], detection).weight;
    expect(near).toBeGreaterThan(far * 4);
  });

  it('links two accounts on one device made together, not a family sharing a home IP', () => {
    const device = pairWeight(
      [shared('fingerprint', 2, 3_600_000), shared('subnet', 3, 3_600_000)],
      detection,
    );
    expect(device.weight).toBeGreaterThanOrEqual(detection.linkThreshold);
    expect(device.evidence[0]!.kind).toBe('fingerprint');
    const family = pairWeight([shared('ip', 4, 30 * DAY), shared('subnet', 6, 30 * DAY)], detection);
    expect(family.weight).toBeLessThan(detection.linkThreshold);
  });

  it('saturates multi-valued kinds: one common prompt band says little, several say a lot', () => {
    const one = pairWeight([shared('query_lsh', 3)], detection).weight;
    const many = pairWeight(
      [1, 2, 3, 4, 5, 6].map((i) => shared('query_lsh', 3, 0, `b${i}`)),
      detection,
    ).weight;
    expect(many).toBeGreaterThan(one * 3);
    expect(many).toBeLessThanOrEqual(detection.weights.query_lsh! + 1e-9);
  });

  it('ignores kinds with no weight', () => {
    expect(pairWeight([shared('asn', 2)], detection)).toEqual({ weight: 0, evidence: [] });
  });
});

describe('clusters', () => {
  it('joins linked accounts into components (union-find), largest first', () => {
    const links = [
      { a: 'a1', b: 'a2' },
      { a: 'a2', b: 'a3' },
      { a: 'b1', b: 'b2' },
      { a: 'c1', b: 'c2' },
      { a: 'c2', b: 'c3' },
      { a: 'c3', b: 'c4' },
    ];
    expect(componentsOf(links, 3)).toEqual([
      ['c1', 'c2', 'c3', 'c4'],
      ['a1', 'a2', 'a3'],
    ]);
  });

  it('keeps a cluster id when membership changes a little, and makes a new one otherwise', () => {
    let n = 0;
    const newId = () => `clu_new${++n}`;
    const previous = new Map([
      ['a', 'clu_old'],
      ['b', 'clu_old'],
      ['c', 'clu_old'],
      ['x', 'clu_other'],
    ]);
    const result = assignClusterIds(
      [
        ['a', 'b', 'c', 'd'],
        ['x', 'y', 'z'],
      ],
      previous,
      newId,
    );
    expect(result[0]).toEqual({ id: 'clu_old', members: ['a', 'b', 'c', 'd'], reused: true });
    // Only one of three came from clu_other: a new group.
    expect(result[1]).toMatchObject({ id: 'clu_new1', reused: false });
  });
});

describe('cluster scores', () => {
  const member = (i: number, over: Partial<Parameters<typeof scoreCluster>[0]['members'][number]> = {}) => ({
    accountId: `acc${i}`,
    createdAt: i * 60_000,
    disposable: false,
    hosting: false,
    features: null,
    ...over,
  });

  it('scores a farm made in an hour on cloud IPs with disposable e-mail above the suspend line', () => {
    const members = Array.from({ length: 30 }, (_, i) => member(i, { disposable: true, hosting: true }));
    const kinds = new Map([
      ['email_pattern', 200],
      ['disposable', 300],
      ['subnet', 100],
    ]);
    const { score, parts } = scoreCluster({ members, linkKinds: kinds, links: 300, dailyQuota: 1000 });
    expect(score).toBeGreaterThanOrEqual(detection.actions.suspend);
    expect(parts.disposable).toBeGreaterThan(0.4);
    expect(actionFor(score, 30, detection.actions)).toBe('suspend');
  });

  it('leaves a university NAT of ordinary people signing up over months well below review', () => {
    const members = Array.from({ length: 200 }, (_, i) =>
      member(i, {
        createdAt: (i * 3 * 86_400_000) / 4,
        features: { activeHoursShare: 0.4, ceilingShare: 0, meanDailyCost: 40 },
      }),
    );
    const { score } = scoreCluster({
      members,
      linkKinds: new Map([['ip', 400]]),
      links: 400,
      dailyQuota: 1000,
    });
    expect(score).toBeLessThan(detection.actions.review);
  });

  it('sees limit-hugging 24/7 usage and the multiplication factor', () => {
    const members = Array.from({ length: 20 }, (_, i) =>
      member(i, {
        createdAt: i * 5 * 86_400_000,
        features: { activeHoursShare: 1, ceilingShare: 0.95, meanDailyCost: 980 },
      }),
    );
    const { score, features } = scoreCluster({
      members,
      linkKinds: new Map([['usage_fingerprint', 50]]),
      links: 60,
      dailyQuota: 1000,
    });
    expect(features.multiplication).toBeCloseTo(19.6, 1);
    expect(score).toBeGreaterThanOrEqual(detection.actions.suspend);
  });

  it('never suspends a small group automatically', () => {
    expect(actionFor(0.99, 3, detection.actions)).toBe('challenge');
    expect(actionFor(0.99, 3, { ...detection.actions, challenge: null })).toBe('throttle');
    expect(actionFor(0.5, 50, detection.actions)).toBe('review');
    expect(actionFor(0.1, 50, detection.actions)).toBe('none');
  });

  it('measures signup bursts within any 24 hours', () => {
    expect(signupBurstiness([0, 1, 2, 3 * DAY, 10 * DAY])).toBeCloseTo(0.6, 5);
    expect(signupBurstiness([])).toBe(0);
  });
});

describe('implied kinds', () => {
  it('does not count a shared subnet again when the address itself is shared', () => {
    const both = pairWeight([shared('ip', 4), shared('subnet', 4)], detection);
    const ipOnly = pairWeight([shared('ip', 4)], detection);
    expect(both.weight).toBe(ipOnly.weight);
    expect(both.evidence.map((e) => e.kind)).toEqual(['ip']);
  });
});

describe('shared usage addresses', () => {
  const cgnat = Array.from({ length: 10 }, (_, i) => shared('usage_ip', 12, 0, `100.64.7.${10 + i}`));
  const proxies = Array.from({ length: 10 }, (_, i) => shared('usage_ip', 12, 0, `81.${20 + i}.4.9`));

  it('counts ten addresses of one carrier block once, and ten in ten networks ten times', () => {
    expect(groupedRarity('usage_ip', cgnat)).toBeCloseTo(rarity(12), 5);
    expect(groupedRarity('usage_ip', proxies)).toBeCloseTo(10 * rarity(12), 5);
    // Other multi-valued kinds still add every value.
    const bands = Array.from({ length: 3 }, (_, i) => shared('query_lsh', 5, 0, `b${i}:x`));
    expect(groupedRarity('query_lsh', bands)).toBeCloseTo(3 * rarity(5), 5);
  });

  it('links accounts used from the same proxies more than subscribers of one CGNAT', () => {
    const policy = { ...detection, weights: { usage_ip: 0.9 }, saturation: { usage_ip: 3 } };
    const fromProxies = pairWeight(proxies, policy).weight;
    const onCgnat = pairWeight(cgnat, policy).weight;
    expect(fromProxies).toBeCloseTo(0.9, 3);
    expect(onCgnat).toBeLessThan(fromProxies / 3);
  });
});

describe('phones and refused signups in a cluster score', () => {
  const member = (i: number, phone: string | null) => ({
    accountId: `acc${i}`,
    createdAt: i * DAY,
    disposable: false,
    hosting: false,
    features: null,
    phone,
  });

  it('finds members whose numbers come from one consecutive block', () => {
    expect(sequentialPhoneShare(['+12067103844', '+12067103846', '+447700900123', null])).toBeCloseTo(0.5, 5);
    // The same number twice is not a sequence (the phone link covers it), nor are unrelated numbers.
    expect(sequentialPhoneShare(['+12067103844', '+12067103844', '+447700900123'])).toBe(0);
    expect(sequentialPhoneShare([])).toBe(0);
  });

  it('adds consecutive numbers and refused signups from the members’ devices to the score', () => {
    const base = {
      linkKinds: new Map([['fingerprint', 6]]),
      links: 10,
      dailyQuota: 1000,
    };
    const plain = scoreCluster({ ...base, members: Array.from({ length: 6 }, (_, i) => member(i, null)) });
    const sequential = scoreCluster({
      ...base,
      members: Array.from({ length: 6 }, (_, i) => member(i, `+1206710380${i}`)),
    });
    const refused = scoreCluster({
      ...base,
      members: Array.from({ length: 6 }, (_, i) => member(i, null)),
      refusedSignups: 12,
    });
    expect(plain.parts.sequentialPhones).toBe(0);
    expect(plain.parts.refusedSignups).toBe(0);
    expect(sequential.parts.sequentialPhones).toBeCloseTo(0.45, 3);
    expect(refused.parts.refusedSignups).toBeCloseTo(0.35, 3);
    expect(sequential.score).toBeGreaterThan(plain.score);
    expect(refused.score).toBeGreaterThan(plain.score);
  });
});
