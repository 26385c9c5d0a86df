import { z } from 'zod';
import { parseCidr } from './signals/ip.ts';

// Every setting comes from the environment, parsed once at start-up. A wrong or missing value stops
// the process with one line that names the variable (see ConfigError).

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const url = (protocols: string[]) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
  );

const schema = z.object({
  DATABASE_URL: url(['postgresql:', 'postgres:']).default('postgresql://postgres@127.0.0.1:5432/gatehouse'),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  // Every Redis key and BullMQ queue lives under this prefix, so several deployments (or test runs)
  // can share one Redis.
  REDIS_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/, 'must be 1-32 characters of a-z, 0-9, _ or -')
    .default('gh'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  GATEHOUSE_ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  POLICY_PATH: z.string().min(1).default('config/policy.yaml'),
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(25_000),
  // Bounded connection attempts: an unreachable store must fail start-up fast, not hang it.
  CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  // Stream entries per usage ingestion batch: smaller batches hold the worker's event loop for less
  // time (the API's too, in an `all` process) and cost more CPU per event (npm run bench:ingest).
  USAGE_INGEST_BATCH: z.coerce.number().int().min(10).max(10_000).default(500),
  // Candidate queries of an analysis run's link stage in flight at once (below the pool's 10).
  ANALYSIS_CONCURRENCY: z.coerce.number().int().min(1).max(8).default(2),
  METRICS_ENABLED: bool.default(true),
  // Server-side secret mixed into the hashes of API keys and verification codes, so a copy of the
  // database alone cannot confirm a guessed key or code. Unset: one is generated and kept in
  // PostgreSQL (with a warning), which protects less.
  GATEHOUSE_PEPPER: z.string().min(32, 'must be at least 32 characters').optional(),

  // Captcha: hCaptcha or Cloudflare Turnstile through their siteverify APIs. `none` only when set.
  CAPTCHA_PROVIDER: z.enum(['hcaptcha', 'turnstile', 'none']).default('hcaptcha'),
  CAPTCHA_SECRET: z.string().min(1).optional(),
  CAPTCHA_SITEKEY: z.string().min(1).optional(),
  CAPTCHA_VERIFY_URL: url(['http:', 'https:']).optional(),
  CAPTCHA_TIMEOUT_MS: z.coerce.number().int().min(100).max(30_000).default(3_000),
  CAPTCHA_EXPECTED_HOSTNAME: z.string().min(1).optional(),
  // What a signup gets when the provider cannot be reached: `closed` refuses (503), `open` lets the
  // other checks decide.
  CAPTCHA_FAIL_MODE: z.enum(['closed', 'open']).default('closed'),

  // How verification e-mails and SMS codes leave Gatehouse.
  NOTIFIER: z.enum(['log', 'webhook', 'smtp']).default('log'),
  NOTIFY_WEBHOOK_URL: url(['http:', 'https:']).optional(),
  NOTIFY_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  NOTIFY_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
  SMTP_URL: url(['smtp:', 'smtps:']).optional(),
  // Operator alerts (a cluster throttled or suspended, a tier surging): a signed webhook, with its
  // own secret so whatever relays SMS codes cannot forge a suspension alert.
  ALERT_WEBHOOK_URL: url(['http:', 'https:']).optional(),
  ALERT_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  SMTP_FROM: z.string().min(3).default('Gatehouse <no-reply@localhost>'),

  // IP -> ASN: the bundled @ip-location-db data, or an MMDB file (GeoLite2-ASN, IPinfo) when set.
  ASN_MMDB_PATH: z.string().min(1).optional(),
  // Enforcement: the Redis command budget of one decision, the whole answer's budget, and the
  // proxies (the gateway, a load balancer) whose X-Forwarded-For hops forward-auth believes.
  ENFORCE_REDIS_TIMEOUT_MS: z.coerce.number().int().min(5).max(10_000).default(50),
  ENFORCE_DEADLINE_MS: z.coerce.number().int().min(10).max(30_000).default(500),
  // The enforcement routes read straight from the socket on connections that send them the plain
  // way (src/http/wire.ts); false serves them on node:http alone, like every other route.
  ENFORCE_WIRE: bool.default(true),
  TRUSTED_PROXIES: z
    .string()
    .default('127.0.0.0/8,::1/128')
    .refine(
      (v) => v.split(',').every((c) => c.trim() === '' || parseCidr(c.trim(), { strict: false }) !== null),
      {
        message: 'must be a comma-separated list of CIDRs, e.g. 10.0.0.0/8,::1/128',
      },
    ),
  // Optional MX look-up of signup e-mail domains (off: it adds a DNS round trip to every signup).
  EMAIL_MX_CHECK: bool.default(false),
});

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset", as shells and .env files commonly write them.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    throw new ConfigError(variable, describeIssue(issue));
  }
  const config = parsed.data;
  if (config.NOTIFIER === 'webhook' && !config.NOTIFY_WEBHOOK_URL) {
    throw new ConfigError('NOTIFY_WEBHOOK_URL', 'must be set when NOTIFIER=webhook');
  }
  if (config.NOTIFIER === 'webhook' && !config.NOTIFY_WEBHOOK_SECRET) {
    throw new ConfigError('NOTIFY_WEBHOOK_SECRET', 'must be set when NOTIFIER=webhook');
  }
  if (config.NOTIFIER === 'smtp' && !config.SMTP_URL) {
    throw new ConfigError('SMTP_URL', 'must be set when NOTIFIER=smtp');
  }
  if (config.ALERT_WEBHOOK_URL && !config.ALERT_WEBHOOK_SECRET) {
    throw new ConfigError('ALERT_WEBHOOK_SECRET', 'must be set when ALERT_WEBHOOK_URL is');
  }
  return config;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_value' && 'values' in issue) {
    return `must be one of ${issue.values.join(', ')}`;
  }
  if (issue.code === 'invalid_type') return `is not valid (${issue.message})`;
  return issue.message.startsWith('must') ? issue.message : `is not valid: ${issue.message}`;
}

/** A URL with any password removed, for messages and logs. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.password) u.password = '***';
    return `${u.protocol}//${u.username ? `${u.username}${u.password ? ':***' : ''}@` : ''}${u.host}${u.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}
