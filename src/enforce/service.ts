import type { SlidingWindowLimiter } from '../limits/limiter.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';
import type { RedisKeys } from '../redis/keys.ts';
import type { RespClient } from '../redis/resp-client.ts';
import type { AsnDatabase } from '../signals/asn.ts';
import type { HostingClassifier } from '../signals/hosting.ts';
import { parseIp } from '../signals/ip.ts';
import { encodeUsageEvent, flattenFields } from '../usage/event.ts';
import { decideEnforcement, type EnforcementDecision, type LimitView, rateLimitHeaders } from './decide.ts';
import { costOf, quotaPlan, quotaSpecs, quotaSpecsFor, resolveTier, type TierLimits } from './limits.ts';
import { minhash } from './minhash.ts';

export interface EnforceInput {
  key: string;
  ip: string;
  fingerprint?: string | undefined;
  tlsFingerprint?: string | undefined;
  endpoint?: string | undefined;
  cost?: number | undefined;
  query?: string | undefined;
  userAgent?: string | undefined;
}

/** What enforcement needs to know about a key; resolved (and cached) by the keys capability. */
export interface ResolvedKey {
  keyId: string;
  accountId: string;
  account: { status: string; tier: string; limitsOverride: unknown };
}

export interface EnforceDeps {
  resolveKey(secret: string): Promise<ResolvedKey | null>;
  rules: {
    match(subject: { ip?: string; asn?: number }): Promise<ReadonlyArray<{ kind: string; mode: string }>>;
  };
  limiter: SlidingWindowLimiter;
  /** The connection the limiter uses, for the no-limits path's plain append. */
  redis: RespClient;
  keys: RedisKeys;
  asn: AsnDatabase;
  hosting: HostingClassifier;
  policy: () => Policy;
  /** The operator's emergency switch: every limit is multiplied by this (1 = normal). */
  emergencyFactor: () => number;
  logger: Logger;
  now?: () => number;
}

export interface EnforceOutcome extends EnforcementDecision {
  headers: Record<string, string>;
}

const STREAM_MAX_LEN = 1_000_000;

export interface EnforceService {
  decide(input: EnforceInput): Promise<EnforceOutcome>;
  /** Where an account stands in every per-user, per-key and tier window, spending nothing. */
  usage(
    account: { id: string; tier: string; status: string; limitsOverride: unknown },
    keyIds: string[],
  ): Promise<LimitView[]>;
}

const deny = (
  reason: EnforcementDecision['reason'],
  extra: Partial<EnforceOutcome> = {},
): EnforceOutcome => ({
  decision: 'deny',
  reason,
  limits: [],
  headers: {},
  ...extra,
});

export function createEnforceService(deps: EnforceDeps): EnforceService {
  const now = deps.now ?? Date.now;
  let lastLimiterWarning = 0;

  return {
    async usage(account, keyIds) {
      const policy = deps.policy().enforcement;
      const tier = resolveTier(policy, account.tier);
      const override = (account.limitsOverride ?? null) as Partial<TierLimits> | null;
      const factor =
        deps.emergencyFactor() * (account.status === 'throttled' ? policy.throttle.flaggedLimitFactor : 1);
      const subject = {
        accountId: account.id,
        tier: account.tier,
        fingerprint: null,
        ip: '',
        asn: null,
        hosting: false,
      };
      const perKey = keyIds.flatMap((keyId) =>
        quotaSpecs(deps.keys, tier, override, { ...subject, keyId }, factor)
          .filter((s) => s.dimension === 'key')
          .map((s) => ({ ...s, name: `${s.label}:${keyId}` })),
      );
      const shared = quotaSpecs(deps.keys, tier, override, { ...subject, keyId: '' }, factor).filter(
        (s) => s.dimension === 'user' || s.dimension === 'tier',
      );
      const specs = [...shared, ...perKey];
      if (specs.length === 0) return [];
      const result = await deps.limiter.check({ now: now(), mode: 'enforce', cost: 0, limits: specs });
      return result.limits.map((l) => ({
        name: l.name,
        limit: l.limit,
        remaining: l.remaining,
        resetSeconds: Math.ceil(l.resetMs / 1000),
      }));
    },

    async decide(input) {
      const t = now();
      const policy = deps.policy().enforcement;
      const record = await deps.resolveKey(input.key);
      // Revoked, expired and unknown keys all answer invalid_key: which one is not the caller's business.
      if (!record) return deny('invalid_key');
      const { accountId, account } = record;
      if (account.status === 'suspended') return deny('account_suspended', { accountId });
      if (account.status === 'pending' || account.status === 'challenged') {
        return deny('verification_required', { accountId });
      }
      const flagged = account.status === 'throttled';

      const ip = parseIp(input.ip);
      const asnRecord = ip ? deps.asn.lookupParsed(ip) : null;
      const asn = asnRecord?.asn ?? null;
      const subject: { ip?: string; asn?: number } = {};
      if (ip) subject.ip = ip.address;
      if (asn !== null) subject.asn = asn;
      const matched = await deps.rules.match(subject);
      if (matched.some((r) => r.mode === 'block' && (r.kind === 'cidr' || r.kind === 'asn'))) {
        return deny('blocked_ip', { accountId });
      }

      const tier = resolveTier(policy, account.tier);
      const override = (account.limitsOverride ?? null) as Partial<TierLimits> | null;
      const factor = deps.emergencyFactor() * (flagged ? policy.throttle.flaggedLimitFactor : 1);
      const plan = quotaPlan(tier, override, factor);
      const { specs, applied } = quotaSpecsFor(deps.keys, plan, {
        keyId: record.keyId,
        accountId,
        tier: account.tier,
        fingerprint: input.fingerprint ?? null,
        ip: ip?.address ?? input.ip,
        asn,
        hosting: deps.hosting.isHosting(asn),
      });
      const cost = costOf(policy, input.endpoint, input.cost);
      const fields = encodeUsageEvent({
        accountId,
        keyId: record.keyId,
        at: t,
        ip: ip?.address ?? null,
        asn,
        fingerprint: input.fingerprint ?? null,
        tlsFingerprint: input.tlsFingerprint ?? null,
        userAgent: input.userAgent ?? null,
        endpoint: input.endpoint ?? null,
        cost,
        decision: 'allow',
        reason: null,
        minhash: input.query ? minhash(input.query) : [],
        sampled: policy.eventSampleRate >= 1 || Math.random() < policy.eventSampleRate,
      });

      try {
        if (specs.length === 0) {
          // A tier without limits: nothing to count, but the event still feeds detection.
          if (cost > 0) {
            await deps.redis.callParts([
              ['XADD', deps.keys.usageStream(), 'MAXLEN', '~', String(STREAM_MAX_LEN), '*'],
              flattenFields(fields),
            ]);
          }
          const decision = decideEnforcement(
            specs,
            { admitted: true, limits: [] },
            policy.throttle,
            flagged,
            accountId,
          );
          return { ...decision, headers: {} };
        }
        const result = await deps.limiter.check({
          now: t,
          mode: 'enforce',
          cost,
          limits: specs,
          // A pure lookup (cost 0) is not usage: nothing is appended.
          ...(cost > 0
            ? {
                event: {
                  stream: deps.keys.usageStream(),
                  maxLen: STREAM_MAX_LEN,
                  fields,
                  when: 'always' as const,
                },
              }
            : {}),
        });
        const decision = decideEnforcement(specs, result, policy.throttle, flagged, accountId);
        const headers = rateLimitHeaders(decision.limits, plan.policyField(applied));
        if (decision.retryAfterMs !== undefined)
          headers['Retry-After'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
        return { ...decision, headers };
      } catch (err) {
        if (t - lastLimiterWarning > 5_000) {
          lastLimiterWarning = t;
          deps.logger.warn(
            { err: { message: (err as Error).message }, failMode: policy.failMode },
            'limiter unavailable',
          );
        }
        if (policy.failMode === 'open')
          return { decision: 'allow', accountId, limits: [] as LimitView[], headers: {} };
        return deny('limiter_unavailable', {
          accountId,
          retryAfterMs: 1_000,
          headers: { 'Retry-After': '1' },
        });
      }
    },
  };
}
