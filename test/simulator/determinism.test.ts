import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { describe, expect, it } from 'vitest';
import { mailbox } from '../../simulator/identity.ts';
import { DAY_MS, SCENARIOS, signupDay } from '../../simulator/model.ts';
import { CLOUD, Networks, RESIDENTIAL } from '../../simulator/networks.ts';
import { Rng } from '../../simulator/rng.ts';
import { farmSizes, generatePopulation } from '../../simulator/scenarios.ts';
import { dayEvents } from '../../simulator/traffic.ts';
import { loadAsnDatabase } from '../../src/signals/asn.ts';

const options = { scenario: 'mixed' as const, seed: 42, legit: 300, farm: 80, days: 6, quota: 1000 };

describe('simulator determinism', () => {
  it('draws the same numbers from the same seed and label, whatever was drawn elsewhere', () => {
    const a = Rng.seeded(5).fork('user', 3);
    const root = Rng.seeded(5);
    root.next();
    root.fork('other').next();
    const b = root.fork('user', 3);
    expect(Array.from({ length: 20 }, () => a.uint32())).toEqual(
      Array.from({ length: 20 }, () => b.uint32()),
    );
    expect(Rng.seeded(5).next()).not.toBe(Rng.seeded(6).next());
  });

  it('builds the same population from the same seed', () => {
    const first = generatePopulation(options);
    const second = generatePopulation(options);
    expect(JSON.stringify(second)).toBe(JSON.stringify(first));
    const other = generatePopulation({ ...options, seed: 43 });
    expect(other.accounts.map((a) => a.email)).not.toEqual(first.accounts.map((a) => a.email));
  });

  it('plans the same events for every account and day, in any order of asking', () => {
    const pop = generatePopulation(options);
    const sample = pop.accounts.filter((_, i) => i % 7 === 0);
    const forward = sample.map((a) =>
      Array.from({ length: pop.days }, (_, d) => dayEvents(Rng.seeded(42), a, d)),
    );
    const backward = [...sample]
      .reverse()
      .map((a) =>
        Array.from({ length: pop.days }, (_, d) => dayEvents(Rng.seeded(42), a, pop.days - 1 - d)).reverse(),
      )
      .reverse();
    expect(JSON.stringify(backward)).toBe(JSON.stringify(forward));
    expect(forward.flat(2).length).toBeGreaterThan(100);
  });

  it('keeps a population stable when only the farm grows', () => {
    const small = generatePopulation({ ...options, farm: 40 });
    const large = generatePopulation({ ...options, farm: 120 });
    const legit = (p: typeof small) => p.accounts.filter((a) => a.role === 'legit');
    expect(JSON.stringify(legit(large))).toBe(JSON.stringify(legit(small)));
  });
});

describe('simulated population', () => {
  const pop = generatePopulation(options);
  const legit = pop.accounts.filter((a) => a.role === 'legit');

  it('gives every person a mailbox and a mobile number of their own', () => {
    const mailboxes = new Set(
      pop.accounts.filter((a) => a.group !== 'alias-farm').map((a) => mailbox(a.email)),
    );
    expect(mailboxes.size).toBe(pop.accounts.filter((a) => a.group !== 'alias-farm').length);
    const phones = legit.map((a) => a.phone);
    expect(new Set(phones).size).toBe(legit.length);
    for (const phone of phones) {
      const parsed = parsePhoneNumberFromString(phone ?? '');
      expect(parsed?.isValid(), phone ?? 'no phone').toBe(true);
      expect(['MOBILE', 'FIXED_LINE_OR_MOBILE']).toContain(parsed?.getType());
    }
  });

  it('meets every awkward kind of user, some with dots and +tags of their own', () => {
    const personas = new Set(legit.map((a) => a.group));
    for (const p of [
      'home',
      'mobile',
      'family',
      'university',
      'office',
      'traveller',
      'power-user',
      'developer',
      'signs-up-twice',
    ]) {
      expect(personas, p).toContain(p);
    }
    expect(legit.some((a) => a.email.includes('+'))).toBe(true);
    expect(legit.some((a) => /\..*@/.test(a.email))).toBe(true);
  });

  it('plays no more of one network in the live minute than a real hour would bring', () => {
    const live = legit.filter((a) => signupDay(a) === pop.days - 1);
    const perIp = new Map<string, number>();
    for (const a of live) perIp.set(a.signup.ip, (perIp.get(a.signup.ip) ?? 0) + (a.repeatEmail ? 2 : 1));
    // Gatehouse's default allows 5 signups an hour from one address.
    expect(Math.max(...perIp.values())).toBeLessThanOrEqual(4);
  });

  it('splits the mixed farm between the attacks as asked', () => {
    expect(farmSizes('mixed', 80).reduce((s, [, n]) => s + n, 0)).toBe(80);
    expect(farmSizes('mixed', 7).reduce((s, [, n]) => s + n, 0)).toBe(7);
    expect(pop.accounts.filter((a) => a.role === 'farm')).toHaveLength(80);
    expect(SCENARIOS).toContain('mixed');
  });

  it('makes the alias farm of a few inboxes and the reset-burst farm busy right after 00:00 UTC', () => {
    const alias = pop.accounts.filter((a) => a.group === 'alias-farm');
    expect(new Set(alias.map((a) => mailbox(a.email))).size).toBeLessThanOrEqual(Math.ceil(alias.length / 4));
    const burst = pop.accounts.find((a) => a.group === 'reset-burst' && signupDay(a) === 0);
    const events = dayEvents(Rng.seeded(42), burst!, 2);
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) expect(e.at % DAY_MS).toBeLessThan(30 * 60_000);
  });

  it('picks addresses that the routing data places in the intended networks', async () => {
    const asn = await loadAsnDatabase();
    const nets = new Networks();
    const rng = Rng.seeded(1);
    for (const wanted of [...RESIDENTIAL.us, ...RESIDENTIAL.gb, ...CLOUD]) {
      for (let i = 0; i < 5; i++) expect(asn.lookup(nets.address(rng, wanted))?.asn).toBe(wanted);
    }
  });
});
