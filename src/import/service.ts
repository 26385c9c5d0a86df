import { z } from 'zod';
import type { AuditLog } from '../audit/audit.ts';
import { type Db, Prisma } from '../db/client.ts';
import { minhash } from '../enforce/minhash.ts';
import type { FieldError } from '../http/problem.ts';
import { newId } from '../lib/ids.ts';
import { sha256Hex } from '../lib/secrets.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/policy.ts';
import type { AsnDatabase } from '../signals/asn.ts';
import type { DisposableChecker } from '../signals/disposable.ts';
import {
  canonicalEmail,
  canonicalEmailHash,
  emailPattern,
  isPrivacyRelay,
  isPublicProvider,
  type ParsedEmail,
  parseEmail,
} from '../signals/email.ts';
import { signupSignals } from '../signals/extract.ts';
import type { HostingClassifier } from '../signals/hosting.ts';
import { type ParsedIp, parseIp, subnetOf } from '../signals/ip.ts';
import { PHONE_TYPES, type PhoneType, parsePhone } from '../signals/phone.ts';
import type { Principal } from '../tokens/scopes.ts';
import type { UsageEventRecord } from '../usage/event.ts';
import { type IngestEntry, writeBatch } from '../usage/ingest.ts';

// Backfill: an operator's existing users and months of gateway logs, stamped with their own event
// times so detection links history as it happened. A batch is all or nothing: every record is
// checked before anything is written, and the answer names every record at fault.

export interface ImportDeps {
  db: Db;
  audit: AuditLog;
  asn: AsnDatabase;
  hosting: HostingClassifier;
  disposable: DisposableChecker;
  policy: () => Policy;
  logger: Logger;
  now?: () => number;
}

export interface ImportError extends FieldError {
  /** Stable reason code, when the failure has one (email_in_use, invalid_phone…). */
  reason?: string;
}

export type ImportOutcome<T> = { ok: true; value: T } | { ok: false; errors: ImportError[] };

export interface AccountsImported {
  imported: number;
  existing: number;
  accounts: Array<{ externalId: string; accountId: string; created: boolean }>;
}

export interface EventsIngested {
  accepted: number;
  duplicates: number;
}

export interface ImportService {
  importAccounts(records: readonly unknown[], actor: Principal): Promise<ImportOutcome<AccountsImported>>;
  ingestEvents(events: readonly unknown[], actor: Principal): Promise<ImportOutcome<EventsIngested>>;
}

export const MAX_ERRORS = 100;
/** Ledger namespace of imported events, apart from the live stream's entries (never pruned). */
export const IMPORT_LEDGER = 'import';
// Clocks of the systems logs come from drift a little; further ahead than this is a wrong time.
const CLOCK_SKEW_MS = 5 * 60_000;
const INT4_MAX = 2_147_483_647;
const WRITE_ATTEMPTS = 3;

// Imported users are facts, not applicants: a number valid in its plan is kept whatever its type.
const ANY_PHONE_TYPE: readonly PhoneType[] = [...PHONE_TYPES, 'UNKNOWN'];

type Ctx = z.RefinementCtx;
const fail = (ctx: Ctx, message: string, reason?: string): typeof z.NEVER => {
  ctx.addIssue({ code: 'custom', message, ...(reason ? { params: { reason } } : {}) });
  return z.NEVER;
};

// PostgreSQL text cannot hold NUL: refused here rather than failing the whole write later.
const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain NUL characters');
/** Empty strings mean "not known", as an absent field does. */
const optionalText = (max: number) =>
  text(max)
    .optional()
    .transform((s) => (s ? s : null));

const ip = text(64).transform((s, ctx) => parseIp(s) ?? fail(ctx, 'must be an IPv4 or IPv6 address'));

const eventTime = (now: () => number) =>
  z.iso
    .datetime({ offset: true, message: 'must be an RFC 3339 date-time, e.g. 2026-01-31T09:30:00Z' })
    .transform((s, ctx) => {
      const ms = Date.parse(s);
      if (Number.isNaN(ms)) return fail(ctx, 'is not a calendar date');
      if (ms < 0) return fail(ctx, 'must not be before 1970');
      if (ms > now() + CLOCK_SKEW_MS) return fail(ctx, 'must not be in the future');
      return ms;
    });

function accountSchema(policy: () => Policy, now: () => number) {
  return z.strictObject({
    externalId: text(128).min(1),
    email: text(320).transform((s, ctx): ParsedEmail => {
      const p = parseEmail(s);
      return p.ok ? p.value : fail(ctx, p.detail, 'invalid_email');
    }),
    phone: text(40)
      .transform((s, ctx) => {
        const p = parsePhone(s, { allowedTypes: ANY_PHONE_TYPE });
        return p.ok ? p.e164 : fail(ctx, p.detail, 'invalid_phone');
      })
      .optional(),
    createdAt: eventTime(now),
    ip,
    fingerprint: optionalText(256),
    tlsFingerprint: optionalText(256),
    userAgent: optionalText(1024),
    status: z.enum(['pending', 'active', 'throttled', 'challenged', 'suspended']).default('active'),
    tier: text(32)
      .optional()
      .transform((t, ctx) => {
        const { tiers, defaultTier } = policy().enforcement;
        if (t === undefined) return defaultTier;
        return Object.hasOwn(tiers, t)
          ? t
          : fail(ctx, `must be one of the tiers: ${Object.keys(tiers).join(', ')}`);
      }),
  });
}

function eventSchema(now: () => number) {
  return z.strictObject({
    id: text(128).min(1).optional(),
    accountId: text(128).min(1).optional(),
    externalId: text(128).min(1).optional(),
    keyId: text(128).min(1).optional(),
    at: eventTime(now),
    ip: ip.optional(),
    fingerprint: optionalText(256),
    tlsFingerprint: optionalText(256),
    userAgent: optionalText(1024),
    endpoint: optionalText(2048),
    cost: z.int().min(0).default(1),
    decision: z.enum(['allow', 'throttle', 'deny']).default('allow'),
    // Turned into a MinHash straight away; the text itself goes no further than this parse.
    query: z
      .string()
      .optional()
      .transform((q) => (q ? minhash(q) : [])),
  });
}

type AccountRecord = z.output<ReturnType<typeof accountSchema>>;
type EventRecord = z.output<ReturnType<typeof eventSchema>>;

/** Parses every record; the errors name each one as `<list>.<index>.<field>`. */
function parseAll<S extends z.ZodType>(
  schema: S,
  records: readonly unknown[],
  list: string,
): { values: Array<z.output<S> | undefined>; errors: ImportError[] } {
  const errors: ImportError[] = [];
  const values = records.map((record, i) => {
    const result = schema.safeParse(record);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      const at = [list, String(i), ...issue.path.map(String)];
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys)
          errors.push({ field: [...at, key].join('.'), message: 'is not a known field' });
        continue;
      }
      const reason = issue.code === 'custom' ? (issue.params?.reason as string | undefined) : undefined;
      errors.push({ field: at.join('.'), message: issue.message, ...(reason ? { reason } : {}) });
    }
    return undefined;
  });
  return { values, errors };
}

/** Each value seen at more than one index, with those indexes. */
function repeated(keys: ReadonlyArray<readonly [index: number, key: string]>): Map<string, number[]> {
  const at = new Map<string, number[]>();
  for (const [i, key] of keys) at.set(key, [...(at.get(key) ?? []), i]);
  return new Map([...at].filter(([, indexes]) => indexes.length > 1));
}

const int4OrNull = (n: number | null | undefined): number | null =>
  n !== null && n !== undefined && n >= 0 && n <= INT4_MAX ? n : null;

/**
 * A stable ledger id for an imported event. The ingestion ledger keys entries as `<ms>-<seq>`
 * stream ids, so the dedupe key's hash is cut into two 60-bit numbers: no real stream id, and no
 * other import, lands on the same pair in practice.
 */
export function ledgerId(dedupeKey: string): string {
  const h = sha256Hex(dedupeKey);
  return `${BigInt(`0x${h.slice(0, 15)}`)}-${BigInt(`0x${h.slice(15, 30)}`)}`;
}

/** The caller's id when there is one, else the event's content (the query only as its MinHash). */
export function dedupeKey(id: string | undefined, e: UsageEventRecord): string {
  if (id !== undefined) return `imp:${id}`;
  const content = [
    e.accountId,
    e.keyId,
    e.at,
    e.ip,
    e.fingerprint,
    e.tlsFingerprint,
    e.userAgent,
    e.endpoint,
    e.cost,
    e.decision,
    e.minhash,
  ];
  return `content:${JSON.stringify(content)}`;
}

/** A unique index refused a row: through the client (P2002) or in raw SQL (SQLSTATE 23505). */
function isUniqueViolation(err: unknown): boolean {
  const e = err as {
    code?: unknown;
    meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } };
    cause?: { originalCode?: unknown };
  };
  if (err instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') return true;
  return (e?.meta?.driverAdapterError?.cause?.originalCode ?? e?.cause?.originalCode) === '23505';
}

const iso = (ms: number): string => new Date(ms).toISOString();

interface Derived {
  record: AccountRecord;
  canonicalHash: string;
  pattern: string;
  publicProvider: boolean;
  privacyRelay: boolean;
  disposable: boolean;
  subnet: string;
  asn: number | null;
  asnOrg: string | null;
  hosting: boolean;
}
type Created = Derived & { accountId: string };

// Rows travel as one jsonb parameter, as in usage ingestion: Prisma's createMany took over a second
// per thousand accounts here, one INSERT … SELECT from jsonb under a tenth of that.

async function insertAccounts(tx: Prisma.TransactionClient, create: Created[]): Promise<void> {
  const rows = create.map((d) => ({
    id: d.accountId,
    external_id: d.record.externalId,
    email: d.record.email.address,
    email_canonical_hash: d.canonicalHash,
    email_domain: d.record.email.domain,
    phone: d.record.phone ?? null,
    status: d.record.status,
    tier: d.record.tier,
    created_at: iso(d.record.createdAt),
  }));
  // Existing users of the product: their mailbox has been in use all along, so it counts as verified.
  await tx.$executeRaw`
    INSERT INTO accounts (id, external_id, email, email_canonical_hash, email_domain, email_verified_at,
      phone, status, tier, source, created_at, updated_at)
    SELECT r.id, r.external_id, r.email, r.email_canonical_hash, r.email_domain, r.created_at,
      r.phone, r.status::"AccountStatus", r.tier, 'import', r.created_at, now()
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(
      id text, external_id text, email text, email_canonical_hash text, email_domain text,
      phone text, status text, tier text, created_at timestamptz)`;
}

async function insertAttempts(tx: Prisma.TransactionClient, create: Created[]): Promise<void> {
  const rows = create.map((d) => ({
    id: newId('sig', d.record.createdAt),
    account_id: d.accountId,
    email_canonical_hash: d.canonicalHash,
    email_domain: d.record.email.domain,
    email_pattern: d.pattern,
    phone: d.record.phone ?? null,
    ip: d.record.ip.address,
    subnet: d.subnet,
    asn: d.asn,
    fingerprint: d.record.fingerprint,
    user_agent: d.record.userAgent,
    signals: {
      asnOrg: d.asnOrg,
      hosting: d.hosting,
      tlsFingerprint: d.record.tlsFingerprint,
      acceptLanguage: null,
      disposable: d.disposable,
      privacyRelay: d.privacyRelay,
      publicProvider: d.publicProvider,
    },
    created_at: iso(d.record.createdAt),
  }));
  await tx.$executeRaw`
    INSERT INTO signup_attempts (id, account_id, decision, reasons, email_canonical_hash, email_domain,
      email_pattern, phone, ip, subnet, asn, fingerprint, user_agent, signals, created_at)
    SELECT r.id, r.account_id, 'allow', '{}', r.email_canonical_hash, r.email_domain,
      r.email_pattern, r.phone, r.ip, r.subnet, r.asn, r.fingerprint, r.user_agent, r.signals, r.created_at
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(
      id text, account_id text, email_canonical_hash text, email_domain text, email_pattern text,
      phone text, ip text, subnet text, asn int, fingerprint text, user_agent text, signals jsonb,
      created_at timestamptz)`;
}

// Indexed here rather than by the enrich worker, so an analysis started right after the import
// already sees the whole history.
async function insertSignals(tx: Prisma.TransactionClient, create: Created[]): Promise<void> {
  const rows = create.flatMap((d) =>
    signupSignals({
      emailCanonicalHash: d.canonicalHash,
      emailDomain: d.record.email.domain,
      emailPattern: d.pattern,
      publicProvider: d.publicProvider,
      disposable: d.disposable,
      ip: d.record.ip.address,
      subnet: d.subnet,
      asn: d.asn,
      hosting: d.hosting,
      fingerprint: d.record.fingerprint,
      tlsFingerprint: d.record.tlsFingerprint,
      userAgent: d.record.userAgent,
      phone: d.record.phone ?? null,
    }).map((s) => ({ kind: s.kind, value: s.value, account_id: d.accountId, at: iso(d.record.createdAt) })),
  );
  await tx.$executeRaw`
    INSERT INTO signals (kind, value, account_id, at)
    SELECT r.kind, r.value, r.account_id, r.at
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(kind text, value text, account_id text, at timestamptz)
    ON CONFLICT DO NOTHING`;
}

export function createImportService(deps: ImportDeps): ImportService {
  const now = deps.now ?? Date.now;
  const accounts = accountSchema(deps.policy, now);
  const events = eventSchema(now);

  /** What an imported account's signup would have recorded, derived as live signup derives it. */
  function derive(r: AccountRecord): Derived {
    const parsedIp: ParsedIp = r.ip;
    const asnRecord = deps.asn.lookupParsed(parsedIp);
    const asn = int4OrNull(asnRecord?.asn);
    return {
      record: r,
      canonicalHash: canonicalEmailHash(canonicalEmail(r.email)),
      pattern: emailPattern(r.email).key,
      publicProvider: isPublicProvider(r.email.domain),
      privacyRelay: isPrivacyRelay(r.email.domain),
      disposable: deps.disposable.isDisposable(r.email.domain),
      subnet: subnetOf(parsedIp),
      asn,
      asnOrg: asnRecord?.org ?? null,
      hosting: deps.hosting.isHosting(asn),
    };
  }

  type Plan =
    | { ok: false; errors: ImportError[] }
    | { ok: true; existing: Map<string, string>; create: Created[] };

  /** Against the stored accounts: which records exist already, and whose mailbox is taken. */
  async function plan(rows: Derived[]): Promise<Plan> {
    const externalIds = rows.map((d) => d.record.externalId);
    const hashes = rows.map((d) => d.canonicalHash);
    const [byExternal, byEmail] = await Promise.all([
      deps.db.$queryRaw<Array<{ id: string; external_id: string }>>`
        SELECT id, external_id FROM accounts WHERE external_id = ANY(${externalIds}::text[])`,
      deps.db.$queryRaw<Array<{ email_canonical_hash: string }>>`
        SELECT email_canonical_hash FROM accounts WHERE email_canonical_hash = ANY(${hashes}::text[])`,
    ]);
    const existing = new Map(byExternal.map((a) => [a.external_id, a.id]));
    const taken = new Set(byEmail.map((a) => a.email_canonical_hash));
    const fresh = rows.map((d, i) => [i, d] as const).filter(([, d]) => !existing.has(d.record.externalId));
    const errors: ImportError[] = [];
    const inUse = (i: number, message: string) =>
      errors.push({ field: `accounts.${i}.email`, message, reason: 'email_in_use' });
    for (const [i, d] of fresh) {
      if (taken.has(d.canonicalHash)) {
        inUse(i, 'belongs to another account (aliases and dots count as the same mailbox)');
      }
    }
    const untaken = fresh.filter(([, d]) => !taken.has(d.canonicalHash));
    for (const indexes of repeated(untaken.map(([i, d]) => [i, d.canonicalHash] as const)).values()) {
      for (const i of indexes)
        inUse(i, `is the same mailbox as accounts ${indexes.join(', ')} of this batch`);
    }
    if (errors.length > 0) return { ok: false, errors };
    return {
      ok: true,
      existing,
      create: fresh.map(([, d]) => ({ ...d, accountId: newId('acc', d.record.createdAt) })),
    };
  }

  async function write(create: Created[], actor: Principal): Promise<void> {
    if (create.length === 0) return;
    const times = create.map((d) => d.record.createdAt);
    await deps.db.$transaction(
      async (tx) => {
        await insertAccounts(tx, create);
        await insertAttempts(tx, create);
        await insertSignals(tx, create);
        await deps.audit.record(
          {
            actor: actor.tokenId,
            action: 'accounts.imported',
            subjectType: 'import',
            subjectId: 'accounts',
            data: {
              imported: create.length,
              from: iso(Math.min(...times)),
              to: iso(Math.max(...times)),
              accountIds: create.map((d) => d.accountId),
            },
          },
          tx,
        );
      },
      { maxWait: 10_000, timeout: 60_000 },
    );
  }

  return {
    async importAccounts(records, actor) {
      const { values, errors } = parseAll(accounts, records, 'accounts');
      const seen = values.flatMap((r, i) => (r ? [[i, r.externalId] as const] : []));
      for (const indexes of repeated(seen).values()) {
        for (const i of indexes) {
          errors.push({
            field: `accounts.${i}.externalId`,
            message: `appears more than once in the batch (accounts ${indexes.join(', ')})`,
            reason: 'duplicate_external_id',
          });
        }
      }
      if (errors.length > 0) return refused(errors);
      const rows = (values as AccountRecord[]).map(derive);

      // The plan is read before the transaction; the unique indexes catch whatever changed in
      // between (a concurrent signup or the same batch sent twice at once), and the plan is redone.
      for (let attempt = 1; ; attempt++) {
        const p = await plan(rows);
        if (!p.ok) return refused(p.errors);
        try {
          await write(p.create, actor);
        } catch (err) {
          if (isUniqueViolation(err) && attempt < WRITE_ATTEMPTS) continue;
          throw err;
        }
        const created = new Map(p.create.map((d) => [d.record.externalId, d.accountId]));
        deps.logger.info(
          { actor: actor.tokenId, imported: created.size, existing: rows.length - created.size },
          'accounts imported',
        );
        return {
          ok: true,
          value: {
            imported: created.size,
            existing: rows.length - created.size,
            accounts: rows.map(({ record: { externalId } }) => {
              const fresh = created.get(externalId);
              return fresh
                ? { externalId, accountId: fresh, created: true }
                : { externalId, accountId: p.existing.get(externalId) ?? '', created: false };
            }),
          },
        };
      }
    },

    async ingestEvents(list, actor) {
      const { values, errors } = parseAll(events, list, 'events');
      const refs = values.map((e, i) => {
        const ref = e ? refOf(e) : null;
        if (e && !ref) {
          errors.push({
            field: `events.${i}`,
            message: 'must name its account by exactly one of accountId, externalId or keyId',
          });
        }
        return ref;
      });
      const accountOf = await accountsOf(deps.db, refs);

      const entries: IngestEntry[] = [];
      values.forEach((e, i) => {
        const ref = refs[i];
        if (!e || !ref) return;
        const accountId = accountOf[ref.kind].get(ref.value);
        if (accountId === undefined) {
          const what = ref.kind === 'keyId' ? 'key' : 'account';
          errors.push({ field: `events.${i}.${ref.kind}`, message: `no ${what} ${ref.value}` });
          return;
        }
        const event: UsageEventRecord = {
          accountId,
          keyId: ref.kind === 'keyId' ? ref.value : null,
          at: e.at,
          ip: e.ip?.address ?? null,
          asn: e.ip ? int4OrNull(deps.asn.lookupParsed(e.ip)?.asn) : null,
          fingerprint: e.fingerprint,
          tlsFingerprint: e.tlsFingerprint,
          userAgent: e.userAgent,
          endpoint: e.endpoint,
          cost: e.cost,
          decision: e.decision,
          reason: null,
          minhash: e.query,
          // Detection reads every imported event: there is no live volume to sample down.
          sampled: true,
        };
        entries.push({ id: ledgerId(dedupeKey(e.id, event)), event });
      });
      if (errors.length > 0) return refused(errors);

      const result = await writeBatch(deps.db, IMPORT_LEDGER, entries);
      if (result.orphaned > 0) {
        deps.logger.warn({ orphaned: result.orphaned }, 'imported events of accounts deleted meanwhile');
      }
      deps.logger.info(
        { actor: actor.tokenId, accepted: result.counted, events: entries.length },
        'usage events ingested',
      );
      // Repeats inside the batch count as duplicates too: writeBatch folds them before its ledger.
      return {
        ok: true,
        value: { accepted: result.counted, duplicates: entries.length - result.counted - result.orphaned },
      };
    },
  };
}

type RefKind = 'accountId' | 'externalId' | 'keyId';
const REF_KINDS: readonly RefKind[] = ['accountId', 'externalId', 'keyId'];

function refOf(e: EventRecord): { kind: RefKind; value: string } | null {
  const given = REF_KINDS.flatMap((kind) => {
    const value = e[kind];
    return value === undefined ? [] : [{ kind, value }];
  });
  return given.length === 1 ? (given[0] ?? null) : null;
}

interface Ref {
  ref: string;
  account: string;
}

/** Each account, external id or key the events name that exists, to its account id. */
async function accountsOf(
  db: Db,
  refs: ReadonlyArray<{ kind: RefKind; value: string } | null>,
): Promise<Record<RefKind, Map<string, string>>> {
  const ids = (kind: RefKind) => [...new Set(refs.flatMap((r) => (r?.kind === kind ? [r.value] : [])))];
  const [byId, byExternal, byKey] = await Promise.all([
    db.$queryRaw<Ref[]>`
      SELECT id AS ref, id AS account FROM accounts WHERE id = ANY(${ids('accountId')}::text[])`,
    db.$queryRaw<Ref[]>`
      SELECT external_id AS ref, id AS account FROM accounts
      WHERE external_id = ANY(${ids('externalId')}::text[])`,
    // A revoked key still names whose traffic it was.
    db.$queryRaw<Ref[]>`
      SELECT id AS ref, account_id AS account FROM api_keys WHERE id = ANY(${ids('keyId')}::text[])`,
  ]);
  const toMap = (rows: Ref[]) => new Map(rows.map((r) => [r.ref, r.account]));
  return { accountId: toMap(byId), externalId: toMap(byExternal), keyId: toMap(byKey) };
}

/** Errors in record order, capped: past a hundred the caller has a systematic problem to fix. */
function refused(errors: ImportError[]): { ok: false; errors: ImportError[] } {
  const index = (e: ImportError) => Number(e.field.split('.')[1] ?? 0);
  return { ok: false, errors: [...errors].sort((a, b) => index(a) - index(b)).slice(0, MAX_ERRORS) };
}
