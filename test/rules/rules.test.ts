import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/lib/ids.ts';
import { createRuleService, type RuleService, type RuleSubject } from '../../src/rules/service.ts';
import type { Principal } from '../../src/tokens/scopes.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp, testPrefix } from '../support/harness.ts';

// Test files share one database, so every rule here has a value no other test uses.
const hex = () => randomBytes(4).toString('hex');
const octet = () => 1 + Math.floor(Math.random() * 254);
const net24 = () => `10.${octet()}.${octet()}.0/24`;
const domain = () => `d${hex()}.example`;
const asn = () => 100_000 + Math.floor(Math.random() * 4_000_000_000);
const operator: Principal = { tokenId: 'admin', name: 'test operator', scopes: ['admin'] };

interface RuleBody {
  id: string;
  kind: string;
  mode: string;
  value: string;
  note: string | null;
  expiresAt: string | null;
}
interface ProblemBody {
  code: string;
  detail?: string;
  errors?: Array<{ field: string; message: string }>;
}

let app: TestApp;
const connections: Redis[] = [];
const services: RuleService[] = [];

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  for (const s of services) s.close();
  for (const c of connections) c.disconnect();
  await app.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`not true within ${withinMs} ms`);
    await sleep(10);
  }
  return Date.now() - started;
}

const connect = () => {
  const redis = new Redis(app.ctx.config.REDIS_URL);
  connections.push(redis);
  return redis;
};

/** Another API instance: its own rule cache and Redis connections, on the same PostgreSQL. */
function instance(channel: string, opts: { subscribe?: boolean; now?: () => number } = {}): RuleService {
  const service = createRuleService({
    db: app.ctx.db,
    audit: app.ctx.audit,
    redis: connect(),
    ...(opts.subscribe === false ? {} : { subscriber: connect() }),
    channel,
    logger: app.ctx.logger,
    ...(opts.now ? { now: opts.now } : {}),
  });
  services.push(service);
  return service;
}

const hasRule = async (service: RuleService, subject: RuleSubject, id: string) =>
  (await service.match(subject)).some((r) => r.id === id);

async function createRule(body: Record<string, unknown>): Promise<RuleBody> {
  const res = await app.request('POST', '/v1/rules', { body });
  expect(res.status, res.text).toBe(201);
  expectContract(res, 'POST', '/v1/rules');
  return res.body as RuleBody;
}

describe('operator rules over HTTP', () => {
  it('creates a rule, lists it and deletes it', async () => {
    const value = net24();
    const rule = await createRule({ kind: 'cidr', mode: 'block', value, note: 'datacentre farm' });
    expect(rule).toMatchObject({
      kind: 'cidr',
      mode: 'block',
      value,
      note: 'datacentre farm',
      expiresAt: null,
    });
    expect(rule.id).toMatch(/^rul_[0-9a-z]{22}$/);

    const listed = await app.request('GET', '/v1/rules');
    expect(listed.status).toBe(200);
    expectContract(listed, 'GET', '/v1/rules');
    expect((listed.body as { rules: RuleBody[] }).rules).toContainEqual(rule);

    const deleted = await app.request('DELETE', `/v1/rules/${rule.id}`);
    expect(deleted.status).toBe(204);
    expectContract(deleted, 'DELETE', `/v1/rules/${rule.id}`);
    const again = await app.request('DELETE', `/v1/rules/${rule.id}`);
    expect(again.status).toBe(404);
    expectContract(again, 'DELETE', `/v1/rules/${rule.id}`);
  });

  it('stores each kind in one canonical spelling', async () => {
    const n = asn();
    const label = `l${hex()}`;
    const group = `a${hex().slice(0, 3)}`;
    const host = `192.0.${octet()}.77`;
    const pattern = `Farm${hex()}*@Example.COM`;
    const cases: Array<[string, string | number, string]> = [
      ['cidr', host, `${host}/32`],
      ['cidr', `2001:DB8:${group.toUpperCase()}:0::/48`, `2001:db8:${group}::/48`],
      ['asn', `AS${n}`, String(n)],
      ['asn', n + 1, String(n + 1)],
      ['email_domain', `Bücher.${label}.Example.`, `xn--bcher-kva.${label}.example`],
      ['email_pattern', pattern, pattern.toLowerCase()],
    ];
    for (const [kind, value, expected] of cases) {
      const rule = await createRule({ kind, mode: 'challenge', value });
      expect(rule.value).toBe(expected);
    }
  });

  it.each([
    ['cidr', '10.1.2.3/8', /did you mean 10\.0\.0\.0\/8/],
    ['cidr', 'not-an-ip', /IPv4 or IPv6/],
    ['asn', 'AS0', /AS number/],
    ['asn', 4294967296, /AS number/],
    ['email_domain', '*.example.com', /subdomains/],
    ['email_domain', 'under_score.example', /host name/],
    ['email_pattern', '**', /literal/],
    ['email_pattern', `${'a'.repeat(201)}@x.com`, /at most 200/],
  ])('refuses a %s rule with value %s, naming the value field', async (kind, value, message) => {
    const res = await app.request('POST', '/v1/rules', { body: { kind, mode: 'block', value } });
    expect(res.status).toBe(400);
    expectContract(res, 'POST', '/v1/rules');
    const problem = res.body as ProblemBody;
    expect(problem.code).toBe('validation_failed');
    expect(problem.errors).toEqual([{ field: 'value', message: expect.stringMatching(message) }]);
  });

  it('refuses unknown fields, kinds and modes, and an expiry in the past, naming each field', async () => {
    const res = await app.request('POST', '/v1/rules', {
      body: { kind: 'country', mode: 'deny', value: 'RU', colour: 'red' },
    });
    expect(res.status).toBe(400);
    expectContract(res, 'POST', '/v1/rules');
    const fields = (res.body as ProblemBody).errors?.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['kind', 'mode', 'colour']));

    const past = await app.request('POST', '/v1/rules', {
      body: { kind: 'cidr', mode: 'block', value: net24(), expiresAt: '2020-01-01T00:00:00Z' },
    });
    expect(past.status).toBe(400);
    expect((past.body as ProblemBody).errors).toEqual([
      { field: 'expiresAt', message: 'must be in the future' },
    ]);

    const malformed = await app.request('POST', '/v1/rules', {
      body: { kind: 'cidr', mode: 'block', value: net24(), expiresAt: 'tomorrow' },
    });
    expect(malformed.status).toBe(400);
    expect((malformed.body as ProblemBody).errors?.map((e) => e.field)).toEqual(['expiresAt']);
  });

  it('answers 409 conflict for a second rule on the same value, however it is spelled', async () => {
    const n = asn();
    const first = await createRule({ kind: 'asn', mode: 'block', value: n });
    const res = await app.request('POST', '/v1/rules', {
      body: { kind: 'asn', mode: 'allow', value: `as${n}` },
    });
    expect(res.status).toBe(409);
    expectContract(res, 'POST', '/v1/rules');
    const problem = res.body as ProblemBody;
    expect(problem.code).toBe('conflict');
    expect(problem.detail).toContain(first.id);
  });

  it('lists by kind and by mode', async () => {
    const blocked = await createRule({ kind: 'email_domain', mode: 'block', value: domain() });
    const allowed = await createRule({ kind: 'email_domain', mode: 'allow', value: domain() });
    const res = await app.request('GET', '/v1/rules?kind=email_domain&mode=allow');
    expect(res.status).toBe(200);
    expectContract(res, 'GET', '/v1/rules?kind=email_domain&mode=allow');
    const rules = (res.body as { rules: RuleBody[] }).rules;
    expect(rules.map((r) => r.id)).toContain(allowed.id);
    expect(rules.map((r) => r.id)).not.toContain(blocked.id);
    expect(rules.every((r) => r.kind === 'email_domain' && r.mode === 'allow')).toBe(true);

    const bad = await app.request('GET', '/v1/rules?kind=country');
    expect(bad.status).toBe(400);
    expectContract(bad, 'GET', '/v1/rules?kind=country');
  });

  it('answers 400 for a malformed id and 403 to a token without the admin scope', async () => {
    const bad = await app.request('DELETE', '/v1/rules/nope');
    expect(bad.status).toBe(400);
    expectContract(bad, 'DELETE', '/v1/rules/nope');
    const signup = await app.tokenWith('signup');
    for (const [method, path] of [
      ['POST', '/v1/rules'],
      ['GET', '/v1/rules'],
      ['DELETE', '/v1/rules/rul_0000000000000000000000'],
    ] as const) {
      const res = await app.request(method, path, {
        token: signup,
        ...(method === 'POST' ? { body: { kind: 'asn', mode: 'block', value: 1 } } : {}),
      });
      expect(res.status).toBe(403);
      expectContract(res, method, path);
    }
  });

  it('records creation and deletion in the audit log', async () => {
    const rule = await createRule({ kind: 'cidr', mode: 'block', value: net24() });
    await app.request('DELETE', `/v1/rules/${rule.id}`);
    const events = await app.ctx.db.auditEvent.findMany({
      where: { subjectId: rule.id },
      orderBy: { at: 'asc' },
    });
    expect(events.map((e) => e.action)).toEqual(['rule.created', 'rule.deleted']);
    expect(events[0]!.actor).toBe('admin');
    expect(events[0]!.data).toMatchObject({ kind: 'cidr', mode: 'block', value: rule.value });
  });
});

describe('matching', () => {
  it('matches a new rule at once on the instance that made it, and stops once it is deleted', async () => {
    const d = domain();
    const rule = await createRule({ kind: 'email_domain', mode: 'block', value: d });
    expect(await hasRule(app.ctx.rules, { emailDomain: `mx.${d}` }, rule.id)).toBe(true);
    await app.request('DELETE', `/v1/rules/${rule.id}`);
    expect(await hasRule(app.ctx.rules, { emailDomain: `mx.${d}` }, rule.id)).toBe(false);
  });

  it('does not match a rule whose expiresAt has passed', async () => {
    let clock = Date.now();
    const rules = instance(`${testPrefix()}:invalidate`, { now: () => clock });
    const ip = `10.${octet()}.${octet()}.9`;
    const created = await rules.create(
      { kind: 'cidr', mode: 'block', value: ip, expiresAt: new Date(clock + 60_000) },
      operator,
    );
    if (!created.ok) throw new Error(created.message);
    expect(await hasRule(rules, { ip }, created.rule.id)).toBe(true);
    clock += 60_000;
    expect(await hasRule(rules, { ip }, created.rule.id)).toBe(false);

    const stale = await app.ctx.db.rule.create({
      data: {
        id: newId('rul'),
        kind: 'asn',
        mode: 'block',
        value: String(asn()),
        expiresAt: new Date(Date.now() - 1),
      },
    });
    const fresh = instance(`${testPrefix()}:invalidate`);
    expect(await hasRule(fresh, { asn: Number(stale.value) }, stale.id)).toBe(false);
  });

  it('is effective at once on another instance (within 1 s), for creation and deletion', async () => {
    const channel = `${testPrefix()}:invalidate`;
    const one = instance(channel);
    const two = instance(channel);
    await Promise.all([one.warm(), two.warm()]);
    const n = asn();
    expect(await two.match({ asn: n })).toEqual([]);

    const created = await one.create({ kind: 'asn', mode: 'block', value: n }, operator);
    if (!created.ok) throw new Error(created.message);
    await eventually(() => hasRule(two, { asn: n }, created.rule.id), 1_000);

    expect(await one.remove(created.rule.id, operator)).toBe(true);
    await eventually(async () => !(await hasRule(two, { asn: n }, created.rule.id)), 1_000);
  });

  it('reaches an instance fed from the shared channel when the API changes a rule', async () => {
    const other = instance(app.ctx.keys.invalidationChannel(), { subscribe: false });
    const subscriber = connect();
    await subscriber.subscribe(app.ctx.keys.invalidationChannel());
    subscriber.on('message', (_channel: string, message: string) => other.handleInvalidation(message));
    await other.warm();

    const prefix = `farm${hex()}`;
    const rule = await createRule({
      kind: 'email_pattern',
      mode: 'challenge',
      value: `${prefix}*@example.com`,
    });
    const subject = { emailLocal: `${prefix}0042`, emailDomain: 'example.com' };
    await eventually(() => hasRule(other, subject, rule.id), 1_000);
  });

  it('keeps its copy until told, ignores messages for other capabilities, and reloads within 30 s anyway', async () => {
    let clock = Date.now();
    const rules = instance(`${testPrefix()}:invalidate`, { subscribe: false, now: () => clock });
    await rules.warm();
    const n = asn();
    // Written behind the service's back, as by an instance whose message was lost.
    const row = await app.ctx.db.rule.create({
      data: { id: newId('rul'), kind: 'asn', mode: 'block', value: String(n) },
    });
    expect(await hasRule(rules, { asn: n }, row.id)).toBe(false);
    rules.handleInvalidation('{"type":"keys"}');
    rules.handleInvalidation('not json');
    expect(await hasRule(rules, { asn: n }, row.id)).toBe(false);
    rules.handleInvalidation('{"type":"rules"}');
    expect(await hasRule(rules, { asn: n }, row.id)).toBe(true);

    await app.ctx.db.rule.delete({ where: { id: row.id } });
    clock += 30_000;
    expect(await hasRule(rules, { asn: n }, row.id)).toBe(false);
  });
});
