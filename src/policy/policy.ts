import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
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

const PHONE_TYPES = [
  'MOBILE',
  'FIXED_LINE',
  'FIXED_LINE_OR_MOBILE',
  'VOIP',
  'TOLL_FREE',
  'PREMIUM_RATE',
  'SHARED_COST',
  'PERSONAL_NUMBER',
  'PAGER',
  'UAN',
  'VOICEMAIL',
] as const;

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

export const policySchema = z.strictObject({
  version: z.literal(1),
  signup: signupSchema.prefault({}),
  retention: z
    .strictObject({
      /** Verification secrets (hashes) are purged this long after they expired. */
      verificationsDays: z.number().int().min(1).max(3650).default(7),
    })
    .default({ verificationsDays: 7 }),
});

export type Policy = z.infer<typeof policySchema>;

export class PolicyError extends Error {}

export function parsePolicy(text: string, source = 'policy'): Policy {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new PolicyError(`${source}: not valid YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const result = policySchema.safeParse(raw ?? {});
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
