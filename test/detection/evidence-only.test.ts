import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { candidatePairs, evidenceOnlyKinds, weighPairs } from '../../src/detection/link.ts';
import type { SharedSignal } from '../../src/detection/weights.ts';
import { insertSignals } from '../../src/signals/store.ts';
import { insertAccounts } from '../support/accounts.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { seededRandom } from '../support/random.ts';

// Candidate search skips the kinds that can never make a link on their own (evidence-only kinds)
// and reads their evidence for the pairs the other kinds found. Random populations with tight caps
// and clustered signup times check that this gives exactly the links of a search through every
// kind: the same pairs, weights and evidence, in full runs and one account at a time.

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ ownDatabase: true });
});
afterAll(async () => {
  await app.close();
});

const T0 = Date.parse('2026-05-01T00:00:00Z');

async function population(seed: number): Promise<string[]> {
  const r = seededRandom(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const ids = Array.from({ length: 40 }, (_, i) => `acc_ev${seed}_${String(i).padStart(2, '0')}`);
  await insertAccounts(app, ids, T0);
  // Finder kinds in small groups; evidence-only kinds in crowds, at times that do not follow the
  // order the finder kinds were made in, with ties, so nearest-in-time sampling matters.
  const rows: Array<{ kind: string; value: string; accountId: string; at: Date }> = [];
  for (const id of ids) {
    const at = () => new Date(T0 + Math.floor(r() * 8) * 3_600_000);
    rows.push({ kind: 'fingerprint', value: `fp${seed}-${Math.floor(r() * 8)}`, accountId: id, at: at() });
    if (r() < 0.6)
      rows.push({ kind: 'email_pattern', value: `p${seed}-${Math.floor(r() * 4)}`, accountId: id, at: at() });
    rows.push({ kind: 'ip', value: `10.${seed}.0.${Math.floor(r() * 6)}`, accountId: id, at: at() });
    rows.push({ kind: 'subnet', value: `10.${seed}.${Math.floor(r() * 12)}.0/24`, accountId: id, at: at() });
    rows.push({ kind: 'user_agent', value: pick(['ua-a', 'ua-b']) + seed, accountId: id, at: at() });
    rows.push({
      kind: 'tls_fingerprint',
      value: pick(['ja-a', 'ja-b', 'ja-c']) + seed,
      accountId: id,
      at: at(),
    });
    for (let k = 0; k < 3; k++)
      rows.push({ kind: 'sync_slot', value: `s${seed}-${Math.floor(r() * 10)}`, accountId: id, at: at() });
  }
  // Twins: made together on a rare hosting network with a rare TLS fingerprint and user agent.
  // What the search kinds share is weak; only the evidence-only kinds make them a link.
  for (let k = 0; k < 3; k++) {
    const at = new Date(T0 + k * 1_000);
    for (const id of [ids[2 * k]!, ids[2 * k + 1]!]) {
      rows.push({ kind: 'hosting_asn', value: `as${seed}-${k}`, accountId: id, at });
      rows.push({ kind: 'tls_fingerprint', value: `twin-ja-${seed}-${k}`, accountId: id, at });
      rows.push({ kind: 'user_agent', value: `twin-ua-${seed}-${k}`, accountId: id, at });
    }
  }
  const unique = new Map(rows.map((row) => [`${row.kind}|${row.value}|${row.accountId}`, row]));
  await insertSignals(app.ctx.db, [...unique.values()]);
  return ids;
}

async function linksOf(
  policy: typeof app.ctx.policy.detection,
  ids: readonly string[],
  opts: { onlyGreater?: boolean; allKindsFind?: boolean },
) {
  const found = new Map<string, SharedSignal[]>(
    await candidatePairs(app.ctx.db, ids, policy, new Date(T0 + 30 * 86_400_000), opts),
  );
  return weighPairs(found, policy)
    .map((l) => ({ ...l, evidence: [...l.evidence].sort((x, y) => x.kind.localeCompare(y.kind)) }))
    .sort((x, y) => `${x.a}|${x.b}`.localeCompare(`${y.a}|${y.b}`));
}

describe('evidence-only kinds', () => {
  it('are chosen so that together they stay below the link threshold', () => {
    const policy = app.ctx.policy.detection;
    const kinds = evidenceOnlyKinds(policy);
    expect(kinds.size).toBeGreaterThan(0);
    expect(evidenceOnlyKinds({ ...policy, linkThreshold: 0.1 }).size).toBe(0);
  });

  it('give exactly the links of a search through every kind', async () => {
    const base = app.ctx.policy.detection;
    const policy = {
      ...base,
      bucketCap: 4,
      bucketCaps: {},
      // Sampled oversized buckets are where the evidence read has to follow the search exactly.
      sampledKinds: [...base.sampledKinds, 'user_agent', 'sync_slot'],
      linkThreshold: 1.2,
    };
    // Heavier crowd kinds (still below the threshold together): links that only the evidence
    // read lifts over the threshold, where dropping pairs too eagerly would lose them.
    const heavy = {
      ...policy,
      weights: { ...policy.weights, tls_fingerprint: 0.45, user_agent: 0.3, sync_slot: 0 },
    };
    expect([...evidenceOnlyKinds(policy)]).toEqual(
      expect.arrayContaining(['tls_fingerprint', 'user_agent', 'sync_slot']),
    );
    expect([...evidenceOnlyKinds(heavy)].sort()).toEqual(['tls_fingerprint', 'user_agent']);
    let compared = 0;
    let lifted = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const ids = await population(seed);
      for (const p of [policy, heavy]) {
        const kinds = evidenceOnlyKinds(p);
        const reference = await linksOf(p, ids, { onlyGreater: true, allKindsFind: true });
        expect(await linksOf(p, ids, { onlyGreater: true }), `seed ${seed}`).toEqual(reference);
        for (const id of ids.slice(0, 12)) {
          expect(await linksOf(p, [id], {}), `seed ${seed}, ${id}`).toEqual(
            await linksOf(p, [id], { allKindsFind: true }),
          );
        }
        for (const l of reference) {
          const fromEvidence = l.evidence.filter((e) => kinds.has(e.kind)).reduce((n, e) => n + e.weight, 0);
          if (fromEvidence > 0) compared++;
          if (l.weight - fromEvidence < 0.3) lifted++;
        }
      }
    }
    // The comparison covered links whose weight evidence-only kinds helped make, and links that
    // rest almost wholly on them (the twins), which must survive the dropping of hopeless pairs.
    expect(compared).toBeGreaterThan(10);
    expect(lifted).toBeGreaterThan(3);
  }, 120_000);
});
