import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { candidatePairs, evidenceOnlyKinds, weighPairs } from '../../src/detection/link.ts';
import type { SharedSignal } from '../../src/detection/weights.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';
import { personLocal } from '../support/people.ts';

// Small populations imported with their own history, one analysis run, and the verdicts: farms
// suspended whole, legitimate groups (a university NAT, a family) untouched, the evidence naming
// the signals that gave each farm away.

const DAY = 86_400_000;
const T0 = Date.parse('2026-09-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

let app: TestApp;
let ingest: string;
const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const ext = (group: string, i: number) => `${run}-${group}-${i}`;

interface Imported {
  externalId: string;
  email: string;
  createdAt: string;
  ip: string;
  fingerprint?: string;
  userAgent?: string;
}

async function importAccounts(records: Imported[]): Promise<Map<string, string>> {
  const res = await app.request('POST', '/v1/import/accounts', {
    token: ingest,
    body: { accounts: records },
  });
  expectContract(res, 'POST', '/v1/import/accounts');
  expect(res.status, res.text).toBe(200);
  const body = res.body as { accounts: Array<{ externalId: string; accountId: string }> };
  return new Map(body.accounts.map((a) => [a.externalId, a.accountId]));
}

async function importEvents(events: Array<Record<string, unknown>>): Promise<void> {
  for (let i = 0; i < events.length; i += 5000) {
    const res = await app.request('POST', '/v1/usage-events', {
      token: ingest,
      body: { events: events.slice(i, i + 5000) },
    });
    expect(res.status, res.text).toBe(200);
  }
}

const ids: Record<string, Map<string, string>> = {};

beforeAll(async () => {
  app = await startTestApp({ workers: true, ownDatabase: true });
  ingest = await app.tokenWith('ingest');

  // A farm of 30 made within two hours: disposable e-mail, programmatic names, AWS addresses.
  const disposable = Array.from({ length: 30 }, (_, i) => ({
    externalId: ext('disp', i),
    email: `user${4100 + i}@mailinator.com`,
    createdAt: iso(T0 + 10 * DAY + i * 4 * 60_000),
    ip: `54.${80 + (i % 3)}.${7 + (i % 2)}.${10 + i}`,
    userAgent: 'python-requests/2.31.0',
  }));

  // A university NAT: 200 students on one address, signing up over a term with the school domain.
  const university = Array.from({ length: 200 }, (_, i) => ({
    externalId: ext('uni', i),
    email: `${personLocal()}@students.${run}.example.edu`,
    createdAt: iso(T0 + Math.floor((i * 25 * DAY) / 200) + (i % 7) * 3_600_000),
    ip: '128.232.10.5',
    fingerprint: `fp-uni-${run}-${i}`,
    userAgent:
      i % 2
        ? 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0'
        : 'Mozilla/5.0 (Macintosh) Safari/605.1.15',
  }));

  // A family of four behind one home router, two of them on the same laptop.
  const family = Array.from({ length: 4 }, (_, i) => ({
    externalId: ext('family', i),
    email: `${personLocal()}@gmail.com`,
    createdAt: iso(T0 + 20 * DAY + i * 2 * DAY),
    ip: '73.15.20.30',
    fingerprint: i < 2 ? `fp-family-${run}-laptop` : `fp-family-${run}-${i}`,
  }));

  // A farm of 30 over two weeks through residential proxies (a new network each), but on three
  // devices, sending one prompt template and hugging its quota around the clock.
  const proxies = ['73', '98', '24', '71', '86', '90', '67', '76'];
  const slow = Array.from({ length: 30 }, (_, i) => ({
    externalId: ext('slow', i),
    email: `${personLocal()}@gmail.com`,
    createdAt: iso(T0 + 15 * DAY + Math.floor((i * 14 * DAY) / 30) + ((i * 7919) % 3_600_000)),
    ip: `${proxies[i % proxies.length]}.${(i * 37) % 250}.${(i * 11) % 250}.${20 + i}`,
    fingerprint: `fp-slow-${run}-${i % 3}`,
    userAgent: `Mozilla/5.0 (X11; Linux x86_64) Chrome/12${i % 5}.0`,
  }));

  ids.disp = await importAccounts(disposable);
  ids.uni = await importAccounts(university);
  ids.family = await importAccounts(family);
  ids.slow = await importAccounts(slow);

  // Usage: the slow farm runs its template every 15 minutes, day and night, for its last 5 days;
  // students and the family ask varied questions in waking hours.
  const end = T0 + 30 * DAY;
  const events: Array<Record<string, unknown>> = [];
  const topics = [
    'photosynthesis',
    'the french revolution',
    'linear algebra',
    'tax forms',
    'a birthday poem',
    'sourdough',
    'python lists',
    'rome',
  ];
  slow.forEach((a, i) => {
    for (let t = end - 5 * DAY; t < end; t += 15 * 60_000) {
      events.push({
        externalId: a.externalId,
        at: iso(t + i * 1000),
        ip: a.ip,
        fingerprint: a.fingerprint,
        cost: 10,
        query: `You are a helpful assistant. Classify the sentiment of this product review as positive, negative or neutral and explain why: review number ${(t / 60_000) % 997}`,
      });
    }
  });
  // People ask different things in their own words.
  const words = [
    'why',
    'does',
    'my',
    'essay',
    'on',
    'climate',
    'need',
    'a',
    'better',
    'intro',
    'how',
    'to',
    'cook',
    'lentils',
    'fix',
    'this',
    'sql',
    'join',
    'translate',
    'grandma',
    'recipe',
    'plan',
    'trip',
    'kyoto',
    'derivative',
    'of',
    'sine',
    'cv',
    'letter',
    'bike',
    'gears',
    'slipping',
    'poem',
    'about',
    'rain',
    'chess',
    'opening',
    'budget',
    'spreadsheet',
    'formula',
  ];
  const hash = (x: number) => {
    let h = Math.imul(x ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  const sentence = (seed: number) =>
    Array.from({ length: 6 + (hash(seed) % 9) }, (_, j) => words[hash(seed * 97 + j) % words.length]).join(
      ' ',
    );
  [...university.slice(0, 60), ...family].forEach((a, i) => {
    for (let d = 0; d < 5; d++) {
      for (let k = 0; k < 6; k++) {
        const hour = 9 + ((i + k * 3) % 12);
        events.push({
          externalId: a.externalId,
          at: iso(end - (d + 1) * DAY + hour * 3_600_000 + ((i * 13 + k * 7) % 60) * 60_000),
          ip: a.ip,
          fingerprint: a.fingerprint,
          cost: 1,
          query: `${sentence(i * 1000 + d * 10 + k)} ${topics[(i + k + d) % topics.length]}?`,
        });
      }
    }
  });
  await importEvents(events);
}, 120_000);

afterAll(async () => {
  await app.close();
});

type Account = { id: string; status: string; clusterId: string | null };
const accountsOf = async (group: string): Promise<Account[]> =>
  Promise.all(
    [...ids[group]!.values()].map(
      async (id) => (await app.request('GET', `/v1/accounts/${id}`)).body as Account,
    ),
  );

describe('an analysis run over imported history', () => {
  let summary: { accounts: number; links: number; clusters: number; actions: Record<string, number> };

  beforeAll(async () => {
    const res = await app.request('POST', '/v1/analysis/runs', {
      body: { asOf: iso(T0 + 30 * DAY), wait: true },
    });
    expectContract(res, 'POST', '/v1/analysis/runs');
    expect(res.status).toBe(202);
    const runView = res.body as { status: string; summary: typeof summary; error: string | null };
    expect(runView.error).toBeNull();
    expect(runView.status).toBe('completed');
    summary = runView.summary;
    // GATEHOUSE_DEBUG_DETECTION=1 prints what the run found, for tuning weights against this population.
    if (process.env.GATEHOUSE_DEBUG_DETECTION) {
      process.stdout.write(`analysis summary: ${JSON.stringify(summary)}\n`);
      const list = (await app.request('GET', '/v1/clusters?limit=50')).body as {
        clusters: Array<{ id: string }>;
      };
      for (const c of list.clusters) {
        const d = (await app.request('GET', `/v1/clusters/${c.id}`)).body as {
          members: Array<{ externalId: string }>;
        };
        const groups = [...new Set(d.members.map((m) => m.externalId.split('-')[1]))];
        process.stdout.write(`${JSON.stringify({ ...d, members: d.members.length, groups })}\n`);
      }
    }
  }, 180_000);

  it('suspends the disposable cloud farm whole, naming its signals', async () => {
    const members = await accountsOf('disp');
    expect(members.filter((m) => m.status === 'suspended')).toHaveLength(30);
    const clusterIds = new Set(members.map((m) => m.clusterId));
    expect(clusterIds.size).toBe(1);
    const cluster = await app.request('GET', `/v1/clusters/${[...clusterIds][0]}`);
    expectContract(cluster, 'GET', `/v1/clusters/${[...clusterIds][0]}`);
    const detail = cluster.body as {
      action: string;
      size: number;
      evidence: { signals: Array<{ kind: string }> };
    };
    expect(detail).toMatchObject({ action: 'suspend', size: 30 });
    const kinds = detail.evidence.signals.map((s) => s.kind);
    expect(kinds).toEqual(expect.arrayContaining(['email_pattern', 'disposable']));
  });

  it('suspends the residential-proxy farm through its devices and prompt template', async () => {
    const members = await accountsOf('slow');
    expect(members.filter((m) => m.status === 'suspended')).toHaveLength(30);
    const clusterId = members[0]!.clusterId!;
    const detail = (await app.request('GET', `/v1/clusters/${clusterId}`)).body as {
      evidence: { signals: Array<{ kind: string }> };
    };
    const kinds = detail.evidence.signals.map((s) => s.kind);
    expect(kinds).toEqual(expect.arrayContaining(['fingerprint', 'query_lsh']));
  });

  it('leaves the university NAT and the family alone', async () => {
    const students = await accountsOf('uni');
    expect(students.filter((m) => m.status !== 'active')).toEqual([]);
    const family = await accountsOf('family');
    expect(family.filter((m) => m.status !== 'active')).toEqual([]);
  });

  it('reports what it scanned, linked and did', () => {
    expect(summary.accounts).toBeGreaterThanOrEqual(264);
    expect(summary.clusters).toBeGreaterThanOrEqual(2);
    expect(summary.actions.suspend).toBeGreaterThanOrEqual(2);
  });

  it('gives the same clusters when run again over the same history', async () => {
    const before = (await accountsOf('disp')).map((m) => m.clusterId);
    const again = await app.request('POST', '/v1/analysis/runs', {
      body: { asOf: iso(T0 + 30 * DAY), wait: true },
    });
    expect((again.body as { status: string }).status).toBe('completed');
    const after = (await accountsOf('disp')).map((m) => m.clusterId);
    expect(after).toEqual(before);
  }, 180_000);

  it('finds exactly the links a search through every kind finds, evidence-only kinds aside', async () => {
    const policy = app.ctx.policy.detection;
    // Tight caps make every shared value an oversized bucket: sampled kinds then link only to the
    // members nearest in time, which the evidence read must reproduce exactly.
    const tight = {
      ...policy,
      bucketCap: 3,
      bucketCaps: {},
      sampledKinds: [...policy.sampledKinds, 'user_agent', 'sync_slot', 'usage_subnet'],
    };
    const asOf = new Date(T0 + 30 * DAY);
    const accountIds = (
      await app.ctx.db.account.findMany({ select: { id: true }, orderBy: { id: 'asc' } })
    ).map((a) => a.id);
    const linksOf = async (
      p: typeof policy,
      ids: string[],
      opts: { onlyGreater?: boolean; allKindsFind?: boolean },
    ) => {
      const found = new Map<string, SharedSignal[]>();
      for (let i = 0; i < ids.length; i += 100) {
        const part = await candidatePairs(app.ctx.db, ids.slice(i, i + 100), p, asOf, opts);
        for (const [k, v] of part) if (!found.has(k)) found.set(k, v);
      }
      return weighPairs(found, p)
        .map((l) => ({ ...l, evidence: [...l.evidence].sort((x, y) => x.kind.localeCompare(y.kind)) }))
        .sort((x, y) => `${x.a}|${x.b}`.localeCompare(`${y.a}|${y.b}`));
    };
    for (const p of [policy, tight]) {
      // The shortcut must be in play for the comparison to mean anything.
      expect(evidenceOnlyKinds(p).size).toBeGreaterThan(0);
      const reference = await linksOf(p, accountIds, { onlyGreater: true, allKindsFind: true });
      expect(reference.length).toBeGreaterThan(0);
      // Evidence-only kinds did weigh in (with tight caps, through their nearest-in-time members).
      const weighed = new Set(reference.flatMap((l) => l.evidence.map((e) => e.kind)));
      expect([...evidenceOnlyKinds(p)].some((k) => weighed.has(k))).toBe(true);
      expect(await linksOf(p, accountIds, { onlyGreater: true })).toEqual(reference);
      // One account at a time, as the enrich worker links a new account.
      const some = accountIds.filter((_, i) => i % 9 === 0);
      for (const id of some) {
        expect(await linksOf(p, [id], {})).toEqual(await linksOf(p, [id], { allKindsFind: true }));
      }
    }
  }, 180_000);

  it('restores a suspended member on appeal and enforcement lets it through', async () => {
    const id = ids.disp!.get(ext('disp', 0))!;
    const res = await app.request('POST', `/v1/accounts/${id}/unsuspend`, {
      body: { note: 'appeal upheld' },
    });
    expect(res.status).toBe(200);
    expect((res.body as Account).status).toBe('active');
  });
});
