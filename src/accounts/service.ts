import { randomInt } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Db } from '../db/client.ts';
import type { Account } from '../generated/prisma/client.ts';
import { ProblemError } from '../http/problem.ts';
import { newId } from '../lib/ids.ts';
import { hmacHex } from '../lib/secrets.ts';
import type { SlidingWindowLimiter } from '../limits/limiter.ts';
import type { Policy } from '../policy/policy.ts';
import type { Queues } from '../queues/queues.ts';
import type { RedisKeys } from '../redis/keys.ts';
import { parsePhone } from '../signals/phone.ts';
import { denial, newEmailToken, phoneInUse } from '../signup/service.ts';

export interface AccountView {
  id: string;
  externalId: string | null;
  email: string;
  phone: string | null;
  status: Account['status'];
  tier: string;
  risk: number;
  clusterId: string | null;
  verification: {
    email: boolean;
    phone: boolean;
    /** What the account must still verify to become active. */
    pending: Array<'email' | 'phone'>;
  };
  createdAt: string;
}

export interface AccountService {
  get(id: string): Promise<AccountView>;
  findByExternalId(externalId: string): Promise<AccountView[]>;
  verifyEmail(id: string, token: string): Promise<AccountView>;
  resendEmail(id: string): Promise<{ expiresAt: string }>;
  startPhone(id: string, phone: string): Promise<{ expiresAt: string; resendAfterSeconds: number }>;
  verifyPhone(id: string, code: string): Promise<AccountView>;
}

export interface AccountDeps {
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  limiter: SlidingWindowLimiter;
  queues: Queues;
  policy: () => Policy;
  pepper: string;
  /** Tells every instance an account's status changed (drops cached keys); must not throw. */
  onStatusChange?: (accountId: string) => Promise<void>;
  now?: () => number;
}

const notFound = (id: string) => new ProblemError('not_found', { detail: `No account ${id}` });

/** One answer for wrong, expired, used-up and missing codes: the caller learns nothing from it. */
const verificationFailed = () =>
  new ProblemError(
    { code: 'verification_failed', status: 400, title: 'The verification did not succeed' },
    { detail: 'The token or code is wrong or no longer valid', reasons: ['verification_failed'] },
  );

export function pendingVerifications(
  account: Account,
  required: ReadonlyArray<'email' | 'phone'>,
): Array<'email' | 'phone'> {
  const pending: Array<'email' | 'phone'> = [];
  if (required.includes('email') && !account.emailVerifiedAt) pending.push('email');
  if ((required.includes('phone') || account.requiresPhone) && !account.phoneVerifiedAt)
    pending.push('phone');
  return pending;
}

export function createAccountService(deps: AccountDeps): AccountService {
  const now = deps.now ?? Date.now;
  const required = () => deps.policy().signup.verification.required;

  const view = async (account: Account): Promise<AccountView> => {
    const member = await deps.db.clusterMember.findUnique({ where: { accountId: account.id } });
    return {
      id: account.id,
      externalId: account.externalId,
      email: account.email,
      phone: account.phone,
      status: account.status,
      tier: account.tier,
      risk: account.risk,
      clusterId: member?.clusterId ?? null,
      verification: {
        email: account.emailVerifiedAt !== null,
        phone: account.phoneVerifiedAt !== null,
        pending: pendingVerifications(account, required()),
      },
      createdAt: account.createdAt.toISOString(),
    };
  };

  const load = async (id: string): Promise<Account> => {
    const account = await deps.db.account.findUnique({ where: { id } });
    if (!account) throw notFound(id);
    return account;
  };

  const refuseSuspended = (account: Account) => {
    if (account.status === 'suspended') {
      throw new ProblemError(
        { code: 'account_suspended', status: 403, title: 'The account is suspended' },
        { reasons: ['account_suspended'] },
      );
    }
  };

  /** Pending or challenged accounts become active once nothing is left to verify. */
  const activateIfComplete = async (id: string): Promise<Account> => {
    const account = await load(id);
    if (
      (account.status === 'pending' || account.status === 'challenged') &&
      pendingVerifications(account, required()).length === 0
    ) {
      const active = await deps.db.account.update({
        where: { id },
        data: { status: 'active', requiresPhone: false, statusReason: null },
      });
      // Enforcement caches the account with its keys (a challenged account, or one restored on
      // appeal that still owes a verification, has some): once it passes, every instance must
      // let it through now, not when its cached copy expires.
      await deps.onStatusChange?.(id);
      return active;
    }
    return account;
  };

  const cooldown = async (kind: string, id: string, ms: number) => {
    const ok = await deps.redis.set(deps.keys.cooldown(kind, id), '1', 'PX', ms, 'NX');
    if (ok !== 'OK') {
      const ttl = await deps.redis.pttl(deps.keys.cooldown(kind, id));
      throw new ProblemError('rate_limited', {
        detail: 'A message was sent moments ago; wait before asking again',
        reasons: ['resend_cooldown'],
        headers: { 'Retry-After': String(Math.max(1, Math.ceil(ttl / 1000))) },
      });
    }
  };

  return {
    async get(id) {
      return view(await load(id));
    },

    async findByExternalId(externalId) {
      const account = await deps.db.account.findUnique({ where: { externalId } });
      return account ? [await view(account)] : [];
    },

    async verifyEmail(id, token) {
      const account = await load(id);
      refuseSuspended(account);
      const t = new Date(now());
      // Matched by hash: the token itself is never compared, so timing reveals nothing.
      const consumed = await deps.db.verification.updateMany({
        where: {
          accountId: id,
          kind: 'email',
          secretHash: hmacHex(deps.pepper, token),
          consumedAt: null,
          expiresAt: { gt: t },
        },
        data: { consumedAt: t },
      });
      if (consumed.count === 0) throw verificationFailed();
      await deps.db.account.update({
        where: { id },
        data: { emailVerifiedAt: account.emailVerifiedAt ?? t },
      });
      return view(await activateIfComplete(id));
    },

    async resendEmail(id) {
      const account = await load(id);
      refuseSuspended(account);
      if (account.emailVerifiedAt) {
        throw new ProblemError('conflict', {
          detail: 'The e-mail address is already verified',
          reasons: ['already_verified'],
        });
      }
      const policy = deps.policy().signup.verification;
      await cooldown('email', id, policy.phoneResendCooldown);
      const t = now();
      const { token, hash } = newEmailToken(deps.pepper);
      const expiresAt = new Date(t + policy.emailTokenTtl);
      await deps.db.$transaction([
        // Only the newest token works: older ones are retired with the new one.
        deps.db.verification.updateMany({
          where: { accountId: id, kind: 'email', consumedAt: null },
          data: { consumedAt: new Date(t) },
        }),
        deps.db.verification.create({
          data: {
            id: newId('ver', t),
            accountId: id,
            kind: 'email',
            target: account.email,
            secretHash: hash,
            expiresAt,
          },
        }),
      ]);
      await deps.queues.add('notify', 'verify_email', {
        type: 'verify_email',
        to: account.email,
        accountId: id,
        secret: token,
        expiresAt: expiresAt.toISOString(),
      });
      return { expiresAt: expiresAt.toISOString() };
    },

    async startPhone(id, input) {
      const account = await load(id);
      refuseSuspended(account);
      const policy = deps.policy().signup;
      const parsed = parsePhone(input, {
        allowedTypes: policy.phone.allowedTypes,
        allowCountries: policy.phone.allowCountries,
        denyCountries: policy.phone.denyCountries,
      });
      if (!parsed.ok) {
        if (parsed.reason === 'invalid_phone') {
          throw new ProblemError(
            { code: 'invalid_phone', status: 400, title: 'The request is not valid' },
            {
              detail: parsed.detail,
              reasons: ['invalid_phone'],
              errors: [{ field: 'phone', message: parsed.detail }],
            },
          );
        }
        throw denial(403, [parsed.reason]);
      }
      const e164 = parsed.e164;
      const mineAlready = account.phone === e164 && account.phoneVerifiedAt !== null;
      if (!mineAlready && (await phoneInUse(deps.db, e164, policy.phone.maxAccountsPerNumber))) {
        throw denial(403, ['phone_in_use']);
      }
      const v = policy.verification;
      await cooldown('phone', id, v.phoneResendCooldown);
      const t = now();
      // Daily caps per number and per account: SMS pumping and code-guessing both need volume.
      const caps = await deps.limiter.check({
        now: t,
        mode: 'enforce',
        cost: 1,
        limits: [
          {
            name: 'number',
            key: deps.keys.window('pv_number', e164, 'day'),
            limit: v.phoneDailyPerNumber,
            windowMs: 86_400_000,
            buckets: 96,
          },
          {
            name: 'account',
            key: deps.keys.window('pv_account', id, 'day'),
            limit: v.phoneDailyPerAccount,
            windowMs: 86_400_000,
            buckets: 96,
          },
        ],
      });
      if (!caps.admitted) {
        const wait = Math.max(...caps.limits.filter((l) => l.remaining === 0).map((l) => l.resetMs), 1000);
        throw new ProblemError('rate_limited', {
          detail: 'Too many codes sent today for this number or account',
          reasons: [caps.violated === 'number' ? 'phone_daily_cap_number' : 'phone_daily_cap_account'],
          headers: { 'Retry-After': String(Math.ceil(wait / 1000)) },
        });
      }
      const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
      const verificationId = newId('ver', t);
      const expiresAt = new Date(t + v.phoneCodeTtl);
      await deps.db.$transaction([
        deps.db.verification.updateMany({
          where: { accountId: id, kind: 'phone', consumedAt: null },
          data: { consumedAt: new Date(t) },
        }),
        deps.db.verification.create({
          data: {
            id: verificationId,
            accountId: id,
            kind: 'phone',
            target: e164,
            // Six digits are easy to enumerate: the pepper and the id keep a dumped hash useless.
            secretHash: hmacHex(deps.pepper, `${verificationId}:${code}`),
            expiresAt,
            createdAt: new Date(t),
          },
        }),
      ]);
      await deps.queues.add('notify', 'verify_phone', {
        type: 'verify_phone',
        to: e164,
        accountId: id,
        secret: code,
        expiresAt: expiresAt.toISOString(),
      });
      return {
        expiresAt: expiresAt.toISOString(),
        resendAfterSeconds: Math.ceil(v.phoneResendCooldown / 1000),
      };
    },

    async verifyPhone(id, code) {
      const account = await load(id);
      refuseSuspended(account);
      const t = new Date(now());
      const maxAttempts = deps.policy().signup.verification.phoneCodeAttempts;
      const pending = await deps.db.verification.findFirst({
        where: { accountId: id, kind: 'phone', consumedAt: null },
        orderBy: { createdAt: 'desc' },
      });
      if (!pending || pending.expiresAt <= t || pending.attempts >= maxAttempts) throw verificationFailed();
      // Count the attempt first and atomically, so parallel guesses cannot exceed the cap.
      const counted = await deps.db.verification.updateMany({
        where: { id: pending.id, attempts: { lt: maxAttempts }, consumedAt: null },
        data: { attempts: { increment: 1 } },
      });
      if (counted.count === 0 || hmacHex(deps.pepper, `${pending.id}:${code}`) !== pending.secretHash) {
        throw verificationFailed();
      }
      const policy = deps.policy().signup.phone;
      const claimed = await deps.db.$transaction(async (tx) => {
        const used = await tx.verification.updateMany({
          where: { id: pending.id, consumedAt: null },
          data: { consumedAt: t },
        });
        if (used.count === 0) return false;
        await tx.account.update({ where: { id }, data: { phone: pending.target, phoneVerifiedAt: t } });
        return true;
      });
      if (!claimed) throw verificationFailed();
      // The number may have been verified elsewhere while the code was in flight.
      const others = await deps.db.account.count({
        where: {
          phone: pending.target,
          phoneVerifiedAt: { not: null },
          status: { not: 'suspended' },
          id: { not: id },
        },
      });
      if (others >= policy.maxAccountsPerNumber) {
        await deps.db.account.update({ where: { id }, data: { phoneVerifiedAt: null } });
        throw denial(403, ['phone_in_use']);
      }
      return view(await activateIfComplete(id));
    },
  };
}
