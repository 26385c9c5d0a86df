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
