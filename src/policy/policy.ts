import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { PHONE_TYPES } from '../signals/phone.ts';
import { parseDuration } from './duration.ts';

// The policy file holds every threshold and limit an operator tunes (YAML or JSON), validated at
// start: a wrong value stops the process with the path of the setting at fault.

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 90s, 10m, 24h or 7d' });
    return z.NEVER;
  }
  return ms;
});

/**
 * One sliding window: `limit` within any `window`. The window is kept as `buckets` buckets, so it
 * may refuse up to one bucket (window / buckets) early and never admits more than `limit`.
 */
const windowLimit = z
  .strictObject({
    window: duration,
    limit: z.number().int().min(0),
    buckets: z.number().int().min(1).max(1000).default(60),
  })
  .refine((w) => w.window % w.buckets === 0, {
    message: 'window must divide evenly into buckets',
    path: ['buckets'],
  });

export type WindowLimit = z.infer<typeof windowLimit>;

const windows = z.array(windowLimit).max(4);

const country = z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as GB');
const verdict = z.enum(['allow', 'challenge', 'deny']);

const signupSchema = z.strictObject({
  email: z
    .strictObject({
      disposable: verdict.default('deny'),
      privacyRelay: verdict.default('allow'),
      extraDisposableDomains: z.array(z.string()).default([]),
      notDisposableDomains: z.array(z.string()).default([]),
    })
    .prefault({}),
  phone: z
    .strictObject({
      /** Ask for a phone at signup (otherwise only as a step-up). */
      required: z.boolean().default(false),
      allowedTypes: z.array(z.enum(PHONE_TYPES)).min(1).default(['MOBILE', 'FIXED_LINE_OR_MOBILE']),
      allowCountries: z.array(country).default([]),
      denyCountries: z.array(country).default([]),
      /** Live accounts one number may verify. A number used by a suspended account is refused. */
      maxAccountsPerNumber: z.number().int().min(1).max(100).default(1),
    })
    .prefault({}),
  network: z
    .strictObject({
      /** Signups from cloud, hosting and VPN networks. */
      hostingAsn: verdict.default('challenge'),
      extraHostingAsns: z.array(z.number().int().min(1).max(4294967295)).default([]),
    })
    .prefault({}),
  velocity: z
    .strictObject({
      ip: windows.default([
        { window: 3_600_000, limit: 5, buckets: 60 },
        { window: 86_400_000, limit: 20, buckets: 96 },
      ]),
      subnet: windows.default([
        { window: 3_600_000, limit: 15, buckets: 60 },
        { window: 86_400_000, limit: 60, buckets: 96 },
      ]),
      asn: windows.default([{ window: 3_600_000, limit: 300, buckets: 60 }]),
      hostingAsn: windows.default([
        { window: 3_600_000, limit: 10, buckets: 60 },
        { window: 86_400_000, limit: 40, buckets: 96 },
      ]),
      emailDomain: windows.default([{ window: 3_600_000, limit: 30, buckets: 60 }]),
      emailPattern: windows.default([{ window: 86_400_000, limit: 8, buckets: 96 }]),
      fingerprint: windows.default([{ window: 86_400_000, limit: 3, buckets: 96 }]),
      global: windows.default([{ window: 60_000, limit: 1_000, buckets: 12 }]),
    })
    .prefault({}),
  verification: z
    .strictObject({
      /** What an account must verify to become active (a challenge adds phone). */
      required: z.array(z.enum(['email', 'phone'])).default(['email']),
      emailTokenTtl: duration.default(86_400_000),
      phoneCodeTtl: duration.default(600_000),
      phoneCodeAttempts: z.number().int().min(1).max(20).default(5),
      phoneResendCooldown: duration.default(60_000),
      phoneDailyPerNumber: z.number().int().min(1).max(100).default(5),
      phoneDailyPerAccount: z.number().int().min(1).max(100).default(10),
    })
    .prefault({}),
});

export type SignupPolicy = z.infer<typeof signupSchema>;

/** Every quota dimension; each tier gives some or all of them a list of windows. */
export const QUOTA_DIMENSIONS = ['key', 'user', 'device', 'ip', 'asn', 'hostingAsn', 'tier'] as const;
export type QuotaDimension = (typeof QUOTA_DIMENSIONS)[number];

const tierSchema = z.strictObject({
  /** Live keys one account may hold. */
  maxKeys: z.number().int().min(0).max(1000).default(3),
  limits: z
    .strictObject({
      key: windows.optional(),
      user: windows.optional(),
      device: windows.optional(),
      ip: windows.optional(),
      asn: windows.optional(),
      hostingAsn: windows.optional(),
      /** The whole tier together: the farm that no single account reveals still hits this. */
      tier: windows.optional(),
    })
    .default({}),
});

export type TierPolicy = z.infer<typeof tierSchema>;

const enforcementSchema = z.strictObject({
  defaultTier: z.string().min(1).default('free'),
  tiers: z.record(z.string().regex(/^[a-z0-9_-]{1,32}$/), tierSchema).default({
    free: {
      maxKeys: 2,
      limits: {
        key: [
          { window: 60_000, limit: 60, buckets: 12 },
          { window: 86_400_000, limit: 1_000, buckets: 96 },
        ],
        user: [
          { window: 60_000, limit: 60, buckets: 12 },
          { window: 86_400_000, limit: 1_000, buckets: 96 },
        ],
        device: [{ window: 86_400_000, limit: 1_500, buckets: 96 }],
        ip: [{ window: 60_000, limit: 300, buckets: 12 }],
        hostingAsn: [{ window: 60_000, limit: 600, buckets: 12 }],
      },
    },
    pro: {
      maxKeys: 10,
      limits: {
        key: [
          { window: 60_000, limit: 600, buckets: 12 },
          { window: 86_400_000, limit: 50_000, buckets: 96 },
        ],
        user: [{ window: 86_400_000, limit: 100_000, buckets: 96 }],
        ip: [{ window: 60_000, limit: 3_000, buckets: 12 }],
      },
    },
  }),
  /** Cost of a call by endpoint (path prefix); unlisted endpoints cost `defaultCost`. */
  endpointCosts: z.record(z.string().min(1), z.number().int().min(0).max(1_000_000)).default({}),
  defaultCost: z.number().int().min(0).max(1_000_000).default(1),
  /** When Redis cannot answer in time: `closed` denies (limiter_unavailable), `open` allows uncounted. */
  failMode: z.enum(['closed', 'open']).default('closed'),
  throttle: z
    .strictObject({
      /** Soft throttling starts when a key or user has used this share of a window. */
      nearLimitRatio: z.number().min(0).max(1).default(0.8),
      /** The added latency grows to this at the limit. */
      maxDelayMs: z.number().int().min(0).max(60_000).default(2_000),
      /** Added latency for accounts or clusters flagged by detection. */
      flaggedDelayMs: z.number().int().min(0).max(60_000).default(750),
      /** Flagged accounts also get limits cut by this factor. */
      flaggedLimitFactor: z.number().min(0).max(1).default(0.25),
    })
    .prefault({}),
  /** Usage events kept for the detection workers: this share of allowed calls, all denied ones. */
  eventSampleRate: z.number().min(0).max(1).default(1),
});

export type EnforcementPolicy = z.infer<typeof enforcementSchema>;

const score = z.number().min(0).max(1);

const detectionSchema = z.strictObject({
  /**
   * Weight of one shared signal between two accounts, by kind, before rarity and time scaling.
   * A kind missing here (or 0) never links; it can still be a feature of a cluster.
   */
  weights: z.record(z.string(), z.number().min(0).max(10)).default({
    email: 2,
    phone: 2,
    fingerprint: 1.5,
    usage_fingerprint: 1.2,
    tls_fingerprint: 0.3,
    email_pattern: 0.9,
    email_domain: 0.5,
    disposable: 0.2,
    phone_prefix: 0.6,
    ip: 0.8,
    // Shared usage addresses count once per /24 (weights.ts), so addresses over several networks
    // (a proxy list, a set of machines) may weigh more than one shared signup address.
    usage_ip: 0.9,
    subnet: 0.35,
    usage_subnet: 0.25,
    hosting_asn: 0.15,
    user_agent: 0.1,
    query_lsh: 0.35,
    sync_slot: 0.2,
  }),
  /**
   * Buckets (one signal value) shared by more accounts than this are too common to link by (a
   * carrier's CGNAT, a popular user agent); they stay features. Bounds the cost of linking one account.
   */
  bucketCap: z.number().int().min(2).max(100_000).default(200),
  bucketCaps: z
    .record(z.string(), z.number().int().min(2).max(100_000))
    .default({ user_agent: 1_000, hosting_asn: 1_000, sync_slot: 60, query_lsh: 100, usage_ip: 100 }),
  /** Multi-valued kinds (query bands, activity slots, usage IPs) reach full weight at this many shared values. */
  saturation: z
    .record(z.string(), z.number().int().min(1).max(1_000))
    .default({ query_lsh: 4, sync_slot: 6, usage_ip: 3, usage_subnet: 2 }),
  /**
   * Kinds whose large buckets are themselves suspicious (500 accounts on one device fingerprint):
   * above the cap, an account is linked to the `bucketCap` bucket members nearest to it in time
   * instead of to none, so the bucket stays connected at a bounded cost.
   */
  sampledKinds: z
    .array(z.string())
    .default([
      'email',
      'phone',
      'fingerprint',
      'usage_fingerprint',
      'email_pattern',
      'phone_prefix',
      'query_lsh',
      'tls_fingerprint',
    ]),
  /**
   * Signup-time proximity scales a shared signal from 1.5x (made minutes apart) down to 0.25x
   * (months apart); this is the half-life of the bonus.
   */
  timeHalfLife: duration.default(2 * 86_400_000),
  /** Links at or above this weight join clusters. */
  linkThreshold: z.number().min(0).default(1.2),
  /** Usage features look back this far from the run's event time. */
  featureWindow: duration.default(14 * 86_400_000),
  /** Score thresholds: the policy maps a cluster's score to an action. */
  actions: z
    .strictObject({
      review: score.default(0.45),
      throttle: score.default(0.6),
      /** Between throttle and suspend: members must pass the phone step-up (null: no such step). */
      challenge: score.nullable().default(0.7),
      suspend: score.default(0.8),
      /** Smaller clusters are never suspended automatically (at most challenged). */
      minSuspendSize: z.number().int().min(2).default(5),
      minClusterSize: z.number().int().min(2).default(3),
    })
    .prefault({}),
  /** A single account's own risk (e.g. a lone 24/7 limit-hugger) maps to these. */
  account: z
    .strictObject({
      review: score.default(0.6),
      throttle: score.default(0.85),
    })
    .prefault({}),
  /** A full analysis runs this often (job scheduler); 0 turns it off. */
  schedule: z.union([z.literal(0), duration]).default(15 * 60_000),
  /** Alert when a tier's aggregate daily usage runs this many times above its baseline. */
  tierSurgeFactor: z.number().min(1).default(3),
});

export type DetectionPolicy = z.infer<typeof detectionSchema>;

export const policySchema = z.strictObject({
  version: z.literal(1),
  signup: signupSchema.prefault({}),
  enforcement: enforcementSchema.prefault({}),
  detection: detectionSchema.prefault({}),
  retention: z
    .strictObject({
      /** Verification secrets (hashes) are purged this long after they expired. */
      verificationsDays: z.number().int().min(1).max(3650).default(7),
    })
    .default({ verificationsDays: 7 }),
});

export type Policy = z.infer<typeof policySchema>;

export class PolicyError extends Error {
  override name = 'PolicyError';
}

export function parsePolicy(text: string, source = 'policy'): Policy {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new PolicyError(`${source}: not valid YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const result = policySchema
    .refine((p) => p.enforcement.defaultTier in p.enforcement.tiers, {
      message: 'must name a tier listed in enforcement.tiers',
      path: ['enforcement', 'defaultTier'],
    })
    .safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const at = issue.path.join('.') || '(root)';
    throw new PolicyError(`${source}: ${at}: ${issue.message}`);
  }
  return result.data;
}

export function loadPolicy(path: string): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PolicyError(
      `POLICY_PATH ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return parsePolicy(text, path);
}
