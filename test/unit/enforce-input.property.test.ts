import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { enforceBody, readEnforceBody } from '../../src/enforce/input.ts';

// The hand-written check on the enforcement body must never accept what the schema refuses, and
// what it accepts must be what the schema would give. It may refuse a body the schema accepts (the
// schema then decides), but not a plain well-formed one: that is the path every gateway call takes.

const FIELDS = ['key', 'ip', 'fingerprint', 'tlsFingerprint', 'endpoint', 'cost', 'query', 'userAgent'];

/** Strings around every length bound of the schema (0, 1, 64, 256, 512, 1024, 2048, 200,000). */
const edgeString = fc
  .constantFrom(
    0,
    1,
    2,
    63,
    64,
    65,
    255,
    256,
    257,
    511,
    512,
    513,
    1023,
    1024,
    1025,
    2047,
    2048,
    2049,
    200_000,
    200_001,
  )
  .map((n) => 'x'.repeat(n));

const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.constantFrom(
    '010.1.1.1',
    '1.2.3',
    '::ffff:1.2.3.4',
    'fe80::1%eth0',
    '[::1]',
    ' 1.2.3.4',
    '256.1.1.1',
    '',
  ),
  fc.string({ maxLength: 70 }),
);

const anyValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  edgeString,
  address,
  fc.integer({ min: -5, max: 1_000_005 }),
  fc.constantFrom(0, -0, 1_000_000, 1_000_001, 0.5, -1, 1e21, Number.MAX_SAFE_INTEGER + 2),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);

/** Each field's bounds: a body one step past one of them is refused by both. */
const BOUNDS: Record<string, [number, number]> = {
  key: [1, 512],
  ip: [0, 64],
  fingerprint: [1, 256],
  tlsFingerprint: [1, 256],
  endpoint: [1, 2048],
  query: [0, 200_000],
  userAgent: [0, 1024],
};

/** A value for the field at, or one past, one of its bounds; or of another type altogether. */
const edgeValue = (name: string): fc.Arbitrary<unknown> => {
  if (name === 'cost')
    return fc.oneof(fc.constantFrom(-1, -0, 0, 1, 999_999, 1_000_000, 1_000_001, 0.5, 1e21), anyValue);
  if (name === 'ip') return fc.oneof(address, anyValue);
  const [min, max] = BOUNDS[name]!;
  return fc.oneof(
    fc
      .constantFrom(min - 1, min, min + 1, max - 1, max, max + 1)
      .filter((n) => n >= 0)
      .map((n) => 'k'.repeat(n)),
    anyValue,
  );
};

const wellFormed = fc.record(
  {
    key: fc.string({ minLength: 1, maxLength: 512 }),
    ip: fc.oneof(fc.ipV4(), fc.ipV6()),
    fingerprint: fc.string({ minLength: 1, maxLength: 256 }),
    tlsFingerprint: fc.string({ minLength: 1, maxLength: 256 }),
    endpoint: fc.string({ minLength: 1, maxLength: 2048 }),
    cost: fc.integer({ min: 0, max: 1_000_000 }),
    query: fc.string({ maxLength: 2_000 }),
    userAgent: fc.string({ maxLength: 1024 }),
  },
  { requiredKeys: ['key', 'ip'] },
);

type Change =
  | { kind: 'set'; field: string; value: unknown }
  | { kind: 'drop'; field: string }
  | { kind: 'extra'; name: string; value: unknown };

const change: fc.Arbitrary<Change> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .constantFrom(...FIELDS)
      .chain((field) => edgeValue(field).map((value) => ({ kind: 'set' as const, field, value }))),
  },
  { weight: 1, arbitrary: fc.constantFrom(...FIELDS).map((field) => ({ kind: 'drop' as const, field })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('extra', 'Key', '__proto__', 'constructor', 'toString', ''), anyValue)
      .map(([name, value]) => ({ kind: 'extra' as const, name, value })),
  },
);

/** A well-formed body with up to two changes, sent through JSON as a body arrives. */
const body = fc.tuple(wellFormed, fc.array(change, { maxLength: 2 })).map(([base, changes]) => {
  const out: Record<string, unknown> = { ...base };
  const extras: string[] = [];
  for (const c of changes) {
    if (c.kind === 'set') out[c.field] = c.value;
    else if (c.kind === 'drop') delete out[c.field];
    else extras.push(`${JSON.stringify(c.name)}:${JSON.stringify(c.value)}`);
  }
  // Written into the JSON text: an own "__proto__" key stays an own key, as JSON.parse makes it.
  let json = JSON.stringify(out);
  if (extras.length > 0)
    json = json === '{}' ? `{${extras.join(',')}}` : `${json.slice(0, -1)},${extras.join(',')}}`;
  return JSON.parse(json) as unknown;
});

describe('readEnforceBody', () => {
  it('accepts only what the schema accepts, and gives what the schema gives', () => {
    const seen = { accepted: 0, refusedBoth: 0, leftToSchema: 0 };
    fc.assert(
      fc.property(fc.oneof({ weight: 9, arbitrary: body }, { weight: 1, arbitrary: anyValue }), (input) => {
        const fast = readEnforceBody(input);
        const schema = enforceBody.safeParse(input);
        if (fast !== null) {
          seen.accepted++;
          expect(schema.success).toBe(true);
          expect(fast).toStrictEqual(schema.data);
        } else if (schema.success) seen.leftToSchema++;
        else seen.refusedBoth++;
      }),
      { numRuns: 5_000 },
    );
    // Both sides of every bound were tried: a check that accepted nothing, or everything, fails here.
    expect(seen.accepted).toBeGreaterThan(1_000);
    expect(seen.refusedBoth).toBeGreaterThan(1_000);
  });

  it('accepts every well-formed body itself, without the schema', () => {
    fc.assert(
      fc.property(wellFormed, (input) => {
        const parsed = JSON.parse(JSON.stringify(input)) as unknown;
        expect(enforceBody.safeParse(parsed).success).toBe(true);
        expect(readEnforceBody(parsed)).toStrictEqual(parsed);
      }),
      { numRuns: 2_000 },
    );
  });

  it('leaves bodies with unknown, missing or mistyped fields to the schema', () => {
    for (const bad of [
      { key: 'k', ip: '1.2.3.4', extra: 1 },
      { ip: '1.2.3.4' },
      { key: 'k', ip: 'not-an-ip' },
      { key: '', ip: '1.2.3.4' },
      { key: 'k', ip: '1.2.3.4', cost: 1.5 },
      { key: 'k', ip: '1.2.3.4', cost: -1 },
      { key: 'k', ip: '1.2.3.4', fingerprint: null },
      { key: 'k', ip: '1.2.3.4', fingerprint: '' },
      JSON.parse('{"key":"k","ip":"1.2.3.4","__proto__":{"cost":1}}') as unknown,
      [{ key: 'k', ip: '1.2.3.4' }],
      null,
      'key',
    ]) {
      expect(readEnforceBody(bad)).toBeNull();
    }
  });
});
