import { createHash, randomBytes } from 'node:crypto';
import { newId } from '../../src/lib/ids.ts';
import type { TestApp } from './harness.ts';
import { personLocal } from './people.ts';

/**
 * An account as signup and verification leave it (their own tests cover that path), written
 * directly so key and enforcement tests start from a known state.
 */
export async function createAccount(
  app: TestApp,
  opts: { status?: 'pending' | 'active' | 'throttled' | 'challenged' | 'suspended'; tier?: string } = {},
): Promise<string> {
  const id = newId('acc');
  const email = `${personLocal()}@example.org`;
  await app.ctx.db.account.create({
    data: {
      id,
      email,
      emailCanonicalHash: createHash('sha256')
        .update(`${email}#${randomBytes(8).toString('hex')}`)
        .digest('hex'),
      emailDomain: 'example.org',
      emailVerifiedAt: new Date(),
      status: opts.status ?? 'active',
      tier: opts.tier ?? 'free',
    },
  });
  return id;
}

/** A key for the account through the public API; returns the secret and its id. */
export async function createKey(
  app: TestApp,
  accountId: string,
  token: string,
): Promise<{ key: string; id: string }> {
  const res = await app.request('POST', `/v1/accounts/${accountId}/keys`, { token, body: { name: 'test' } });
  if (res.status !== 201) throw new Error(`key creation failed: ${res.status} ${res.text}`);
  return res.body as { key: string; id: string };
}

/**
 * Active accounts with the given ids, written in bulk, the i-th made at `t0 + i × stepMs`: a
 * population for linking tests, which read signals and creation times and nothing else.
 */
export async function insertAccounts(app: TestApp, ids: readonly string[], t0: number, stepMs = 60_000) {
  await app.ctx.db.account.createMany({
    data: ids.map((id, i) => ({
      id,
      email: `${id}@example.org`,
      emailCanonicalHash: id,
      emailDomain: 'example.org',
      status: 'active' as const,
      createdAt: new Date(t0 + i * stepMs),
    })),
  });
}
