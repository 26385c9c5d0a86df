import { promises as dns } from 'node:dns';
import type { Redis } from 'ioredis';
import { type AccountService, createAccountService } from './accounts/service.ts';
import { type AuditLog, createAuditLog } from './audit/audit.ts';
import { type Config, redactUrl } from './config.ts';
import { createDb, type Db } from './db/client.ts';
import { type ActionService, createActionService } from './detection/actions.ts';
import { computeFeatures } from './detection/feature-store.ts';
import { dailyQuotaOf, type RunDeps } from './detection/run.ts';
import { createRunService, type RunService } from './detection/runs.ts';
import { createEmergencySwitch, type EmergencySwitch } from './enforce/emergency.ts';
import { createEnforceService, type EnforceService } from './enforce/service.ts';
import { createMetrics, type HttpMetrics } from './http/metrics.ts';
import { createImportService, type ImportService } from './import/service.ts';
import { createKeyService, type KeyService } from './keys/service.ts';
import { resolvePepper } from './lib/pepper.ts';
import { createSlidingWindowLimiter } from './limits/limiter.ts';
import { createLogger, type Logger } from './logger.ts';
import { createNotifier, type Notifier } from './notify/notifier.ts';
import { loadPolicy, type Policy } from './policy/policy.ts';
import { createQueues, type Queues } from './queues/queues.ts';
import { connectRedis, createRedis } from './redis/client.ts';
import { createKeys, type RedisKeys } from './redis/keys.ts';
import { RespClient } from './redis/resp-client.ts';
import { createRuleService, RULES_INVALIDATION, type RuleService } from './rules/service.ts';
import { type AsnDatabase, loadAsnDatabase } from './signals/asn.ts';
import { loadCountryDatabase } from './signals/country.ts';
import { createDisposableChecker } from './signals/disposable.ts';
import { createHostingClassifier } from './signals/hosting.ts';
import { type Cidr, parseCidr } from './signals/ip.ts';
import { type CaptchaVerifier, createCaptchaVerifier } from './signup/captcha.ts';
import { createReplayGuard } from './signup/captcha-replay.ts';
import { createSignupService, type SignupService } from './signup/service.ts';
import { DependencyError } from './startup.ts';
import { createTokenService, TOKENS_INVALIDATION, type TokenService } from './tokens/service.ts';

export { DependencyError };

export interface Context {
  config: Config;
  policy: Policy;
  logger: Logger;
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  queues: Queues;
  metrics: HttpMetrics;
  audit: AuditLog;
  tokens: TokenService;
  rules: RuleService;
  asn: AsnDatabase;
  notifier: Notifier;
  signups: SignupService;
  accounts: AccountService;
  apiKeys: KeyService;
  emergency: EmergencySwitch;
  enforce: EnforceService;
  trustedProxies: Cidr[];
  actions: ActionService;
  runs: RunService;
  imports: ImportService;
  /** What an analysis run needs (workers/analysis.ts). */
  detection: RunDeps;
  /** Is each store answering now? For /readyz. */
  readiness(): Promise<{ postgres: boolean; redis: boolean }>;
  close(): Promise<void>;
}

const reasonOf = (err: unknown): string => {
  const e = err as { code?: string; message?: string; errors?: Array<{ code?: string }> };
  return e.code ?? e.errors?.[0]?.code ?? e.message?.split('\n')[0] ?? 'unknown error';
};

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The composition root: every dependency is built here once, from the config. */
export async function createContext(
  config: Config,
  opts: { logger?: Logger; policy?: Policy } = {},
): Promise<Context> {
  const logger = opts.logger ?? createLogger(config.LOG_LEVEL);
  const policy = opts.policy ?? loadPolicy(config.POLICY_PATH);
  const timeout = config.CONNECT_TIMEOUT_MS;

  const db = createDb(config.DATABASE_URL, timeout);
  try {
    await withTimeout(db.$queryRaw`SELECT 1`, timeout);
  } catch (err) {
    await db.$disconnect().catch(() => undefined);
    throw new DependencyError('PostgreSQL', redactUrl(config.DATABASE_URL), reasonOf(err));
  }

  const redis = createRedis({ url: config.REDIS_URL, connectTimeoutMs: timeout });
  const bullConnection = createRedis({ url: config.REDIS_URL, connectTimeoutMs: timeout });
  // Until start-up succeeded, connection errors are reported once below rather than logged in a loop.
  const quiet = () => undefined;
  redis.on('error', quiet);
  bullConnection.on('error', quiet);
  try {
    await connectRedis(redis, timeout);
    await connectRedis(bullConnection, timeout);
  } catch (err) {
    redis.disconnect();
    bullConnection.disconnect();
    await db.$disconnect().catch(() => undefined);
    throw new DependencyError('Redis', redactUrl(config.REDIS_URL), reasonOf(err));
  }
  let lastRedisError = 0;
  const onRedisError = (err: Error) => {
    const now = Date.now();
    if (now - lastRedisError > 10_000)
      logger.warn({ err: { message: err.message } }, 'Redis connection error');
    lastRedisError = now;
  };
  redis.off('error', quiet).on('error', onRedisError);
  bullConnection.off('error', quiet).on('error', onRedisError);

  const keys = createKeys(config.REDIS_PREFIX);
  const queues = createQueues(bullConnection, keys.bullPrefix);
  const audit = createAuditLog(db);
  const tokens = createTokenService({
    db,
    audit,
    adminToken: config.GATEHOUSE_ADMIN_TOKEN,
    publish: (message) => redis.publish(keys.invalidationChannel(), message),
  });
  const pepper = await resolvePepper(config.GATEHOUSE_PEPPER, db, logger);

  // One subscriber connection per process fans invalidations out to every cache that needs them.
  const subscriber = redis.duplicate();
  subscriber.on('error', onRedisError);
  const rules = createRuleService({ db, audit, redis, channel: keys.invalidationChannel(), logger });
  const apiKeys = createKeyService({
    db,
    audit,
    redis,
    channel: keys.invalidationChannel(),
    policy: () => policy,
    pepper,
    logger,
  });
  const emergency = createEmergencySwitch({ db, redis, channel: keys.invalidationChannel(), audit });
  await emergency.refresh();
  subscriber.on('message', (_channel: string, message: string) => {
    rules.handleInvalidation(message);
    apiKeys.handleInvalidation(message);
    emergency.handleInvalidation(message);
    if (message === TOKENS_INVALIDATION) tokens.invalidate();
  });
  await subscriber.subscribe(keys.invalidationChannel());
  // Messages published while the subscriber was reconnecting are lost: reload on every reconnect.
  subscriber.on('ready', () => {
    rules.handleInvalidation(RULES_INVALIDATION);
    apiKeys.clear();
    tokens.invalidate();
  });
  await rules.warm();

  const asn = await loadAsnDatabase(config.ASN_MMDB_PATH ? { mmdbPath: config.ASN_MMDB_PATH } : {});
  const signupPolicy = policy.signup;
  const limiter = createSlidingWindowLimiter(redis);
  const hosting = createHostingClassifier(signupPolicy.network.extraHostingAsns);
  // Enforcement has its own connection with a short command timeout and no offline queue: a slow
  // or absent Redis turns into the fail-mode answer within tens of milliseconds, never a hang. It
  // is the small pipelined client, not ioredis: src/redis/resp-client.ts says why.
  const enforceRedis = new RespClient({
    url: config.REDIS_URL,
    connectTimeoutMs: timeout,
    commandTimeoutMs: config.ENFORCE_REDIS_TIMEOUT_MS,
    onError: onRedisError,
  });
  await enforceRedis.connect();
  const enforce = createEnforceService({
    resolveKey: apiKeys.lookup,
    rules,
    limiter: createSlidingWindowLimiter(enforceRedis),
    redis: enforceRedis,
    keys,
    asn,
    hosting,
    policy: () => policy,
    emergencyFactor: () => emergency.factor(),
    logger,
  });
  const captcha = buildCaptcha(config, logger);
  const notifier = createNotifier(config, logger);
  const disposable = createDisposableChecker({
    extraBlock: signupPolicy.email.extraDisposableDomains,
    extraAllow: signupPolicy.email.notDisposableDomains,
  });
  const imports = createImportService({ db, audit, asn, hosting, disposable, policy: () => policy, logger });
  const signups = createSignupService({
    db,
    keys,
    limiter,
    captcha,
    captchaFailMode: config.CAPTCHA_FAIL_MODE,
    replay: createReplayGuard(redis, (hash) => keys.captchaSeen(hash)),
    asn,
    hosting,
    disposable,
    rules,
    queues,
    policy: () => policy,
    pepper,
    logger,
    ...(config.EMAIL_MX_CHECK ? { hasMx } : {}),
  });
  const actions = createActionService({
    db,
    audit,
    apiKeys,
    queues,
    logger,
    policy: () => policy,
    ...(config.ALERT_WEBHOOK_URL && config.ALERT_WEBHOOK_SECRET
      ? { alertWebhook: { url: config.ALERT_WEBHOOK_URL, secret: config.ALERT_WEBHOOK_SECRET } }
      : {}),
  });
  const runs = createRunService({ db, queues });
  const country = await loadCountryDatabase();
  const detection: RunDeps = {
    db,
    policy: () => policy,
    actions,
    audit,
    apiKeys,
    logger,
    linkConcurrency: config.ANALYSIS_CONCURRENCY,
    computeFeatures: (asOf, progress) =>
      computeFeatures(db, {
        asOf,
        progress,
        policy: policy.detection,
        dailyLimitOf: (tier) => dailyQuotaOf(policy, tier),
        country,
      }),
  };
  const accounts = createAccountService({
    db,
    redis,
    keys,
    limiter,
    queues,
    policy: () => policy,
    pepper,
    // A step-up that reactivates an account must reach every instance's key cache at once.
    // Not being able to publish leaves the account active; other instances then see it at their
    // cache TTL (this one already has).
    onStatusChange: (id) =>
      apiKeys.invalidateAccount(id).catch((err: Error) => {
        logger.error(
          { err: { message: err.message }, accountId: id },
          'could not publish a key invalidation',
        );
      }),
  });
  const metrics = createMetrics({
    defaultMetrics: config.METRICS_ENABLED,
    queueDepths: () => queues.depths(),
  });

  return {
    config,
    policy,
    logger,
    db,
    redis,
    keys,
    queues,
    metrics,
    audit,
    tokens,
    rules,
    asn,
    notifier,
    signups,
    accounts,
    apiKeys,
    emergency,
    enforce,
    actions,
    runs,
    imports,
    detection,
    trustedProxies: config.TRUSTED_PROXIES.split(',')
      .map((c) => c.trim())
      .filter((c) => c !== '')
      .map((c) => parseCidr(c, { strict: false })!),
    async readiness() {
      const [postgres, redisOk] = await Promise.all([
        withTimeout(db.$queryRaw`SELECT 1`, 1_000).then(
          () => true,
          () => false,
        ),
        withTimeout(redis.ping(), 1_000).then(
          (r) => r === 'PONG',
          () => false,
        ),
      ]);
      return { postgres, redis: redisOk };
    },
    async close() {
      rules.close();
      await apiKeys.close();
      enforceRedis.disconnect();
      subscriber.disconnect();
      await notifier.close?.().catch(() => undefined);
      await queues.close().catch(() => undefined);
      await Promise.all([
        redis.quit().catch(() => redis.disconnect()),
        bullConnection.quit().catch(() => bullConnection.disconnect()),
      ]);
      await db.$disconnect();
    },
  };
}

/** Without a secret the verifier cannot work: every signup is refused as captcha_unavailable. */
function buildCaptcha(config: Config, logger: Logger): CaptchaVerifier {
  if (config.CAPTCHA_PROVIDER === 'none') {
    logger.warn('CAPTCHA_PROVIDER=none: signups are not checked for bots; use it only in development');
    return createCaptchaVerifier({ provider: 'none', secret: 'none' });
  }
  if (!config.CAPTCHA_SECRET) {
    logger.warn(
      `CAPTCHA_SECRET is not set: signups are refused (captcha_unavailable) until it is (provider ${config.CAPTCHA_PROVIDER})`,
    );
    return {
      provider: config.CAPTCHA_PROVIDER,
      verify: async () => ({ ok: false, reason: 'captcha_unavailable', detail: 'CAPTCHA_SECRET is not set' }),
    };
  }
  return createCaptchaVerifier({
    provider: config.CAPTCHA_PROVIDER,
    secret: config.CAPTCHA_SECRET,
    timeoutMs: config.CAPTCHA_TIMEOUT_MS,
    ...(config.CAPTCHA_SITEKEY ? { siteKey: config.CAPTCHA_SITEKEY } : {}),
    ...(config.CAPTCHA_VERIFY_URL ? { verifyUrl: config.CAPTCHA_VERIFY_URL } : {}),
    ...(config.CAPTCHA_EXPECTED_HOSTNAME ? { expectedHostname: config.CAPTCHA_EXPECTED_HOSTNAME } : {}),
  });
}

/** MX look-up with a short budget; a DNS failure other than "no such domain" does not refuse. */
async function hasMx(domain: string): Promise<boolean> {
  try {
    const records = await withTimeout(dns.resolveMx(domain), 2_000);
    return records.length > 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    return !(code === 'ENOTFOUND' || code === 'ENODATA');
  }
}
