import { randomBytes } from 'node:crypto';
import type { Db } from '../db/client.ts';
import { Prisma } from '../generated/prisma/client.ts';
import { ProblemError } from '../http/problem.ts';
import { newId } from '../lib/ids.ts';
import { hmacHex } from '../lib/secrets.ts';
import type { SlidingWindowLimiter } from '../limits/limiter.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';
import type { Queues } from '../queues/queues.ts';
import type { RedisKeys } from '../redis/keys.ts';
import type { AsnDatabase } from '../signals/asn.ts';
import type { DisposableChecker } from '../signals/disposable.ts';
import {
  canonicalEmail,
  canonicalEmailHash,
  emailPattern,
  isPrivacyRelay,
  isPublicProvider,
  parseEmail,
} from '../signals/email.ts';
import type { HostingClassifier } from '../signals/hosting.ts';
import { parseIp, subnetOf } from '../signals/ip.ts';
import { parsePhone } from '../signals/phone.ts';
import type { CaptchaVerifier } from './captcha.ts';
import type { ReplayGuard } from './captcha-replay.ts';
import { decideSignup, type NextStep, type RuleKind, type SignupFacts } from './decide.ts';
import { recordSignupVelocity } from './velocity.ts';

export interface SignupInput {
  email: string;
  phone?: string | undefined;
  captchaToken: string;
  ip: string;
  fingerprint?: string | undefined;
  tlsFingerprint?: string | undefined;
  userAgent?: string | undefined;
  acceptLanguage?: string | undefined;
  externalId?: string | undefined;
}

export interface SignupResult {
  accountId: string;
  status: 'pending' | 'active';
  decision: 'allow' | 'challenge';
  reasons: string[];
  next: NextStep[];
}

export interface RuleMatcher {
  match(subject: {
    ip?: string;
    asn?: number;
    emailDomain?: string;
    emailLocal?: string;
  }): Promise<ReadonlyArray<{ kind: RuleKind; mode: 'block' | 'challenge' | 'allow' }>>;
}

export interface SignupDeps {
  db: Db;
  keys: RedisKeys;
  limiter: SlidingWindowLimiter;
  captcha: CaptchaVerifier;
  captchaFailMode: 'closed' | 'open';
  replay: ReplayGuard;
  asn: AsnDatabase;
  hosting: HostingClassifier;
  disposable: DisposableChecker;
  rules: RuleMatcher;
  queues: Queues;
  policy: () => Policy;
  pepper: string;
  logger: Logger;
  /** Optional MX look-up: false means the domain cannot receive mail. */
  hasMx?: (domain: string) => Promise<boolean>;
  now?: () => number;
}

export interface SignupService {
  signup(input: SignupInput): Promise<SignupResult>;
}

/** The e-mail verification token and its stored form (HMAC with the pepper). */
export function newEmailToken(pepper: string): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hmacHex(pepper, token) };
}

const invalidField = (code: 'invalid_email' | 'invalid_phone', field: string, detail: string) =>
  new ProblemError(
    { code, status: 400, title: 'The request is not valid' },
    { detail, reasons: [code], errors: [{ field, message: detail }] },
  );

export function createSignupService(deps: SignupDeps): SignupService {
  const now = deps.now ?? Date.now;

  async function captchaVerdict(token: string, ip: string): Promise<SignupFacts['captcha']> {
    // A token is single-use: refuse a replay locally before spending a provider round trip.
    if (!(await deps.replay.claim(token))) return 'failed';
    const result = await deps.captcha.verify(token, ip);
    if (result.ok) return 'ok';
    if (result.reason === 'captcha_failed') return 'failed';
    deps.logger.warn(
      { detail: result.detail, failMode: deps.captchaFailMode },
      'captcha provider unavailable',
    );
    return deps.captchaFailMode === 'open' ? 'ok' : 'unavailable';
  }

  return {
    async signup(input) {
      const t = now();
      const policy = deps.policy().signup;
      const ip = parseIp(input.ip);
      if (!ip) {
        throw new ProblemError('validation_failed', {
          detail: 'Invalid body: ip',
          errors: [{ field: 'ip', message: 'must be an IPv4 or IPv6 address' }],
        });
      }
      const subnet = subnetOf(ip);
      const asnRecord = deps.asn.lookupParsed(ip);
      const asn = asnRecord?.asn ?? null;
      const hosting = deps.hosting.isHosting(asn);
      const attemptBase = {
        ip: ip.address,
        subnet,
        asn,
        fingerprint: input.fingerprint ?? null,
        userAgent: input.userAgent ?? null,
      };
      const record = (
        decision: 'allow' | 'challenge' | 'deny',
        reasons: string[],
        {
          signals,
          ...extra
        }: Partial<Omit<Prisma.SignupAttemptUncheckedCreateInput, 'signals'>> & {
          signals?: Record<string, string | number | boolean | null>;
        },
      ): Prisma.SignupAttemptUncheckedCreateInput => ({
        id: newId('sig', t),
        decision,
        reasons,
        ...attemptBase,
        createdAt: new Date(t),
        ...extra,
        signals: {
          asnOrg: asnRecord?.org ?? null,
          hosting,
          tlsFingerprint: input.tlsFingerprint ?? null,
          acceptLanguage: input.acceptLanguage ?? null,
          ...signals,
        },
      });

      const parsed = parseEmail(input.email);
      if (!parsed.ok) {
        await deps.db.signupAttempt.create({ data: record('deny', ['invalid_email'], {}) });
        throw invalidField('invalid_email', 'email', parsed.detail);
      }
      const email = parsed.value;
      const canonical = canonicalEmail(email);
      const emailHash = canonicalEmailHash(canonical);
      const pattern = emailPattern(email);
      const publicProvider = isPublicProvider(email.domain);
      const disposable = deps.disposable.isDisposable(email.domain);
      const privacyRelay = isPrivacyRelay(email.domain);
      const emailFields = {
        emailCanonicalHash: emailHash,
        emailDomain: email.domain,
        emailPattern: pattern.key,
        signals: { disposable, privacyRelay, publicProvider },
      };

      let phone: SignupFacts['phone'] = null;
      let e164: string | null = null;
      let refusedE164: string | null = null;
      if (input.phone !== undefined) {
        const p = parsePhone(input.phone, {
          allowedTypes: policy.phone.allowedTypes,
          allowCountries: policy.phone.allowCountries,
          denyCountries: policy.phone.denyCountries,
        });
        if (!p.ok && p.reason === 'invalid_phone') {
          await deps.db.signupAttempt.create({ data: record('deny', ['invalid_phone'], emailFields) });
          throw invalidField('invalid_phone', 'phone', p.detail);
        }
        if (p.ok) {
          e164 = p.e164;
          phone = { ok: true, inUse: await phoneInUse(deps.db, p.e164, policy.phone.maxAccountsPerNumber) };
        } else {
          refusedE164 = p.e164;
          phone = { ok: false, reason: p.reason };
        }
      }
      // What every later attempt row records: the number too, when one was given and could be read.
      const attemptFields = { ...emailFields, phone: e164 ?? refusedE164 };

      const [rules, captcha, velocity, emailTaken, externalTaken, mxOk] = await Promise.all([
        deps.rules.match({
          ip: ip.address,
          ...(asn !== null ? { asn } : {}),
          emailDomain: email.domain,
          emailLocal: email.local.toLowerCase(),
        }),
        captchaVerdict(input.captchaToken, ip.address),
        recordSignupVelocity(
          deps.limiter,
          deps.keys,
          policy.velocity,
          {
            ip: ip.address,
            subnet,
            asn,
            hosting,
            emailDomain: publicProvider ? null : email.domain,
            emailPattern: pattern.key,
            fingerprint: input.fingerprint ?? null,
          },
          t,
        ),
        deps.db.account.count({ where: { emailCanonicalHash: emailHash } }).then((n) => n > 0),
        input.externalId
          ? deps.db.account.count({ where: { externalId: input.externalId } }).then((n) => n > 0)
          : Promise.resolve(false),
        deps.hasMx ? deps.hasMx(email.domain) : Promise.resolve(true),
      ]);

      const facts: SignupFacts = {
        captcha,
        email: { disposable, privacyRelay, inUse: emailTaken },
        phone,
        network: { hosting },
        rules,
        velocity,
      };
      const outcome = decideSignup(facts, policy);
      if (!mxOk && outcome.decision !== 'deny') {
        await deps.db.signupAttempt.create({ data: record('deny', ['invalid_email'], attemptFields) });
        throw invalidField('invalid_email', 'email', 'the domain does not accept mail (no MX record)');
      }
      if (outcome.decision === 'deny') {
        await deps.db.signupAttempt.create({ data: record('deny', outcome.reasons, attemptFields) });
        throw denial(outcome.status, outcome.reasons, outcome.retryAfterMs);
      }
      if (externalTaken) {
        await deps.db.signupAttempt.create({ data: record('deny', ['external_id_in_use'], attemptFields) });
        throw new ProblemError('conflict', {
          detail: 'An account with this externalId exists',
          reasons: ['external_id_in_use'],
        });
      }

      const accountId = newId('acc', t);
      const status = outcome.next.length === 0 ? 'active' : 'pending';
      const emailToken = outcome.next.includes('verify_email') ? newEmailToken(deps.pepper) : null;
      const expiresAt = new Date(t + deps.policy().signup.verification.emailTokenTtl);
      try {
        await deps.db.$transaction([
          deps.db.account.create({
            data: {
              id: accountId,
              externalId: input.externalId ?? null,
              email: email.address,
              emailCanonicalHash: emailHash,
              emailDomain: email.domain,
              phone: e164,
              status,
              requiresPhone: outcome.next.includes('verify_phone'),
              createdAt: new Date(t),
            },
          }),
          deps.db.signupAttempt.create({
            data: record(outcome.decision, outcome.reasons, { ...attemptFields, accountId }),
          }),
          ...(emailToken
            ? [
                deps.db.verification.create({
                  data: {
                    id: newId('ver', t),
                    accountId,
                    kind: 'email',
                    target: email.address,
                    secretHash: emailToken.hash,
                    expiresAt,
                    createdAt: new Date(t),
                  },
                }),
              ]
            : []),
        ]);
      } catch (err) {
        if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') {
          // Lost a race with a concurrent signup for the same identity: the database decides.
          const target = JSON.stringify(err.meta ?? {});
          const reason = target.includes('external') ? 'external_id_in_use' : 'email_in_use';
          await deps.db.signupAttempt.create({ data: record('deny', [reason], attemptFields) });
          if (reason === 'external_id_in_use') {
            throw new ProblemError('conflict', {
              detail: 'An account with this externalId exists',
              reasons: [reason],
            });
          }
          throw denial(403, [reason]);
        }
        throw err;
      }

      // After the commit: a failed enqueue must not undo an account the caller is told about; the
      // product can ask for the message again (verify-email/resend).
      try {
        if (emailToken) {
          await deps.queues.add('notify', 'verify_email', {
            type: 'verify_email',
            to: email.address,
            accountId,
            secret: emailToken.token,
            expiresAt: expiresAt.toISOString(),
          });
        }
        await deps.queues.add('enrich', 'signup', { accountId }, { jobId: `enrich-${accountId}` });
      } catch (err) {
        deps.logger.error(
          { accountId, err: { message: (err as Error).message } },
          'could not enqueue after signup',
        );
      }

      return { accountId, status, decision: outcome.decision, reasons: outcome.reasons, next: outcome.next };
    },
  };
}

export function denial(status: 403 | 429 | 503, reasons: string[], retryAfterMs?: number): ProblemError {
  const code = reasons[0] ?? 'signup_denied';
  const title =
    status === 429
      ? 'Too many signups'
      : status === 503
        ? 'Signup cannot be checked right now'
        : 'Signup refused';
  const headers: Record<string, string> = {};
  if (status === 429) headers['Retry-After'] = String(Math.max(1, Math.ceil((retryAfterMs ?? 1000) / 1000)));
  if (status === 503) headers['Retry-After'] = '5';
  return new ProblemError(
    { code, status, title },
    { detail: `Signup refused: ${reasons.join(', ')}`, reasons, headers },
  );
}

/**
 * A number is taken when it is verified on as many live accounts as the policy allows, or is on any
 * suspended account (a farm's numbers stay burnt).
 */
async function phoneInUse(db: Db, e164: string, maxPerNumber: number): Promise<boolean> {
  const [verifiedLive, suspended] = await Promise.all([
    db.account.count({
      where: { phone: e164, phoneVerifiedAt: { not: null }, status: { not: 'suspended' } },
    }),
    db.account.count({ where: { phone: e164, status: 'suspended' } }),
  ]);
  return suspended > 0 || verifiedLive >= maxPerNumber;
}

export { phoneInUse };
