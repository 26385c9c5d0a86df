// Operator rules: block, challenge or allow by CIDR, ASN, e-mail domain or e-mail pattern.
//
// Rules are read on every signup and gateway call, so each instance holds them compiled in memory.
// A change is effective at once: the instance that makes it drops its copy and publishes
// {"type":"rules"} on the invalidation channel, and every other instance drops its copy on receipt.
// A copy is also never used once older than 30 s, which bounds the damage of a lost message.
//
// Values are stored in one canonical spelling, so (kind, value) uniqueness means one rule per thing:
// - cidr: network/bits in canonical text ("2001:db8::/32"); a bare address is one host (/32, /128).
// - asn: the number in decimal ("AS64500" is stored as "64500").
// - email_domain: lowercase ASCII (IDNs as punycode); it also covers every subdomain, so
//   "example.com" matches "mail.example.com" and "a.b.example.com".
// - email_pattern: a lowercase glob over the whole address `local@domain`, where `*` is any run of
//   characters (also none) and `?` is exactly one; every other character stands for itself, and
//   there is no escape (addresses with a literal `*` or `?` are too rare to justify one). So
//   "user*@example.com" and "*@*.ru" do what they say. A pattern that starts with "p:" or "r:" is
//   matched against the address's pattern key instead (see emailPattern in src/signals/email.ts),
//   so a farm's key seen in an investigation can be blocked as it stands.
import { domainToASCII } from 'node:url';
import type { Redis } from 'ioredis';
import type { AuditLog } from '../audit/audit.ts';
import { type Db, Prisma } from '../db/client.ts';
import type { RuleKind, RuleMode } from '../generated/prisma/enums.ts';
import { newId } from '../lib/ids.ts';
import type { Logger } from '../logger.ts';
import { type Cidr, cidrContains, parseCidr, parseIp } from '../signals/ip.ts';
import type { Principal } from '../tokens/scopes.ts';

export const RULE_KINDS = [
  'cidr',
  'asn',
  'email_domain',
  'email_pattern',
] as const satisfies readonly RuleKind[];
export const RULE_MODES = ['block', 'challenge', 'allow'] as const satisfies readonly RuleMode[];
export type { RuleKind, RuleMode };

export const MAX_PATTERN_LENGTH = 200;
/** The message every instance acts on; other capabilities publish their own `type` on the channel. */
export const RULES_INVALIDATION = JSON.stringify({ type: 'rules' });

const MAX_AGE_MS = 30_000;
// A busy instance refreshes in the background before its copy expires, so requests never wait.
const REFRESH_AHEAD_MS = 25_000;
// After a failed reload the last good copy is served, and PostgreSQL is not asked again for this long.
const RETRY_AFTER_FAILURE_MS = 1_000;
const WARN_EVERY_MS = 10_000;

export interface RuleView {
  id: string;
  kind: RuleKind;
  mode: RuleMode;
  value: string;
  note: string | null;
  expiresAt: string | null;
  createdAt: string;
}

export interface MatchedRule {
  id: string;
  kind: RuleKind;
  mode: RuleMode;
  value: string;
}

export interface RuleSubject {
  ip?: string;
  asn?: number;
  /** Lowercase ASCII, as ParsedEmail.domain. */
  emailDomain?: string;
  /** EmailPattern.key of the address. */
  emailPatternKey?: string;
  emailLocal?: string;
}

export interface RuleInput {
  kind: RuleKind;
  mode: RuleMode;
  value: string | number;
  note?: string | null | undefined;
  expiresAt?: Date | null | undefined;
}

export type CreateRuleResult =
  | { ok: true; rule: RuleView }
  | { ok: false; code: 'invalid'; field: 'value' | 'expiresAt'; message: string }
  | { ok: false; code: 'conflict'; message: string };

export interface RuleService {
  create(input: RuleInput, actor: Principal): Promise<CreateRuleResult>;
  /** Newest first, expired rules included (they stay until deleted, for the record). */
  list(filter?: { kind?: RuleKind | undefined; mode?: RuleMode | undefined }): Promise<RuleView[]>;
  /** False when there is no such rule. */
  remove(id: string, actor: Principal): Promise<boolean>;
  /** Every unexpired rule that matches, in kind order (cidr, asn, email_domain, email_pattern). */
  match(subject: RuleSubject): Promise<MatchedRule[]>;
  /** Feed every message of the invalidation channel here; those for other capabilities are ignored. */
  handleInvalidation(message: string): void;
  /** Loads the rules (and waits for the subscription, when the service owns one). */
  warm(): Promise<void>;
  /** Detaches from the subscriber; the connection itself belongs to the caller. */
  close(): void;
}

// --- values ------------------------------------------------------------------------------------

export type NormalisedValue = { ok: true; value: string } | { ok: false; message: string };

const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
// domainToASCII lets `_`, `*`, `%`… through; anything ASCII must already be a letter, digit, - or dot.
const ASCII_NON_LDH = /[^a-zA-Z0-9.\-\u{80}-\u{10ffff}]/u;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/** Checks a value for its kind and returns its canonical spelling, or what is wrong with it. */
export function normaliseRuleValue(kind: RuleKind, raw: string | number): NormalisedValue {
  if (kind === 'asn') return normaliseAsn(raw);
  if (typeof raw !== 'string') return { ok: false, message: `must be a string for a ${kind} rule` };
  const text = raw.trim();
  switch (kind) {
    case 'cidr':
      return normaliseCidr(text);
    case 'email_domain':
      return normaliseDomain(text);
    case 'email_pattern':
      return normalisePattern(text);
  }
}

function normaliseCidr(text: string): NormalisedValue {
  const cidr = parseCidr(text);
  if (cidr) return { ok: true, value: cidr.text };
  const loose = parseCidr(text, { strict: false });
  if (loose) {
    return { ok: false, message: `has bits set after the prefix length; did you mean ${loose.text}?` };
  }
  return { ok: false, message: 'must be an IPv4 or IPv6 address or network, e.g. 203.0.113.0/24' };
}

function normaliseAsn(raw: string | number): NormalisedValue {
  const bad: NormalisedValue = {
    ok: false,
    message: 'must be an AS number from 1 to 4294967295, e.g. AS64500',
  };
  let n: number;
  if (typeof raw === 'number') {
    n = raw;
  } else {
    const m = /^(?:AS)?(\d{1,10})$/i.exec(raw.trim());
    if (!m?.[1]) return bad;
    n = Number(m[1]);
  }
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) return bad;
  return { ok: true, value: String(n) };
}

function normaliseDomain(text: string): NormalisedValue {
  const bad = (message: string): NormalisedValue => ({ ok: false, message });
  if (text.startsWith('*.')) return bad('covers its subdomains already: write the domain without "*."');
  if (text.includes('@')) return bad('must be a domain, not an address (use an email_pattern rule for that)');
  const trimmed = text.endsWith('.') ? text.slice(0, -1) : text;
  if (trimmed.length === 0 || ASCII_NON_LDH.test(trimmed)) {
    return bad('must be a host name: letters, digits, hyphens and dots');
  }
  const domain = domainToASCII(trimmed);
  if (domain === '' || domain.length > 253) return bad('is not a valid (internationalised) domain name');
  const labels = domain.split('.');
  if (labels.some((l) => l.length === 0 || l.length > 63 || !LDH_LABEL.test(l))) {
    return bad(
      'has a label that is empty, longer than 63 characters or not letters, digits and inner hyphens',
    );
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return bad('is an IP address; use a cidr rule');
  return { ok: true, value: domain };
}

function normalisePattern(text: string): NormalisedValue {
  const pattern = text.toLowerCase();
  if (pattern.length === 0) return { ok: false, message: 'must not be empty' };
  if (pattern.length > MAX_PATTERN_LENGTH) {
    return { ok: false, message: `must be at most ${MAX_PATTERN_LENGTH} characters` };
  }
  if (!PRINTABLE_ASCII.test(pattern)) {
    return { ok: false, message: 'must be printable ASCII without spaces (write IDN domains as xn--…)' };
  }
  if (!/[^*?]/.test(pattern)) return { ok: false, message: 'must contain at least one literal character' };
  return { ok: true, value: pattern };
}

// --- matching ----------------------------------------------------------------------------------

const escapeRegExp = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
const globChunk = (chunk: string) => chunk.split('?').map(escapeRegExp).join('.');

/**
 * An anchored RegExp for a glob, in time linear in pattern × input. A naive `.*` per star backtracks
 * polynomially (`*a*a*a*a*b` against a long run of `a`s), so each chunk between stars is found at its
 * leftmost occurrence inside a lookahead, which JavaScript never re-enters: leftmost is always a
 * correct choice, since it leaves the most room for what follows.
 */
export function compileGlob(pattern: string): RegExp {
  const chunks = pattern.split(/\*+/);
  if (chunks.length === 1) return new RegExp(`^${globChunk(pattern)}$`, 's');
  const first = chunks[0] ?? '';
  const last = chunks[chunks.length - 1] ?? '';
  let source = `^${globChunk(first)}`;
  chunks.slice(1, -1).forEach((chunk, i) => {
    source += `(?=(.*?${globChunk(chunk)}))\\${i + 1}`;
  });
  return new RegExp(`${source}.*${globChunk(last)}$`, 's');
}

/** The columns matching needs; `expiresAt` null means never. */
export interface StoredRule {
  id: string;
  kind: RuleKind;
  mode: RuleMode;
  value: string;
  expiresAt: Date | null;
}

interface Entry {
  rule: MatchedRule;
  expiresAt: number;
}

export interface RuleIndex {
  readonly size: number;
  /** Every rule that matches and has not expired at `at` (ms since the epoch). */
  match(subject: RuleSubject, at: number): MatchedRule[];
}

const NO_ENTRIES: readonly Entry[] = [];

const isPatternKeyGlob = (pattern: string) => pattern.startsWith('p:') || pattern.startsWith('r:');

/** Parses and indexes rules once, so that a match costs no parsing and no database round trip. */
export function compileRules(rows: readonly StoredRule[]): RuleIndex {
  const cidrs: Array<{ cidr: Cidr; entry: Entry }> = [];
  const asns = new Map<number, Entry[]>();
  const domains = new Map<string, Entry[]>();
  const patterns: Array<{ re: RegExp; onKey: boolean; entry: Entry }> = [];
  const push = <K>(map: Map<K, Entry[]>, key: K, entry: Entry) => {
    const list = map.get(key);
    if (list) list.push(entry);
    else map.set(key, [entry]);
  };

  for (const row of rows) {
    const entry: Entry = {
      rule: { id: row.id, kind: row.kind, mode: row.mode, value: row.value },
      expiresAt: row.expiresAt ? row.expiresAt.getTime() : Number.POSITIVE_INFINITY,
    };
    // Rows are normalised on the way in; one that no longer parses (edited by hand) is skipped
    // rather than allowed to break matching for every other rule.
    switch (row.kind) {
      case 'cidr': {
        const cidr = parseCidr(row.value, { strict: false });
        if (cidr) cidrs.push({ cidr, entry });
        break;
      }
      case 'asn': {
        const n = Number(row.value);
        if (Number.isInteger(n)) push(asns, n, entry);
        break;
      }
      case 'email_domain':
        push(domains, row.value.toLowerCase(), entry);
        break;
      case 'email_pattern':
        if (row.value.length <= MAX_PATTERN_LENGTH) {
          const pattern = row.value.toLowerCase();
          patterns.push({ re: compileGlob(pattern), onKey: isPatternKeyGlob(pattern), entry });
        }
        break;
    }
  }

  return {
    size: rows.length,
    match(subject, at) {
      // Runs on every enforcement decision: no closure per call (under tsx each named closure also
      // costs a defineProperty for its name), and usually no match at all.
      const found: MatchedRule[] = [];
      if (subject.ip !== undefined && cidrs.length > 0) {
        const ip = parseIp(subject.ip);
        if (ip) {
          for (const { cidr, entry } of cidrs) {
            if (cidrContains(cidr, ip) && entry.expiresAt > at) found.push(entry.rule);
          }
        }
      }
      if (subject.asn !== undefined) {
        for (const entry of asns.get(subject.asn) ?? NO_ENTRIES)
          if (entry.expiresAt > at) found.push(entry.rule);
      }
      const domain = subject.emailDomain?.toLowerCase();
      if (domain && domains.size > 0) {
        for (let d = domain; ; ) {
          for (const entry of domains.get(d) ?? NO_ENTRIES) if (entry.expiresAt > at) found.push(entry.rule);
          const dot = d.indexOf('.');
          if (dot < 0) break;
          d = d.slice(dot + 1);
        }
      }
      if (patterns.length > 0) {
        const address =
          subject.emailLocal !== undefined && domain
            ? `${subject.emailLocal.toLowerCase()}@${domain}`
            : undefined;
        const key = subject.emailPatternKey?.toLowerCase();
        for (const { re, onKey, entry } of patterns) {
          const target = onKey ? key : address;
          if (target !== undefined && re.test(target) && entry.expiresAt > at) found.push(entry.rule);
        }
      }
      return found;
    },
  };
}

// --- service -----------------------------------------------------------------------------------

type Row = StoredRule & { note: string | null; createdAt: Date };

const view = (row: Row): RuleView => ({
  id: row.id,
  kind: row.kind,
  mode: row.mode,
  value: row.value,
  note: row.note,
  expiresAt: row.expiresAt?.toISOString() ?? null,
  createdAt: row.createdAt.toISOString(),
});

const isUniqueViolation = (err: unknown) =>
  err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';

interface Snapshot {
  index: RuleIndex;
  loadedAt: number;
  generation: number;
}

export function createRuleService(deps: {
  db: Db;
  audit: AuditLog;
  /** Publishes invalidations; any connection not in subscriber mode. */
  redis: Pick<Redis, 'publish'>;
  /** When given, the service subscribes itself; otherwise feed it through handleInvalidation. */
  subscriber?: Pick<Redis, 'subscribe' | 'on' | 'off'>;
  channel: string;
  logger: Logger;
  now?: () => number;
}): RuleService {
  const now = deps.now ?? Date.now;
  // Bumped by every invalidation: a snapshot (or a load in flight) from an older generation may
  // predate the change, so it is not served while a newer one can be had.
  let generation = 0;
  let snapshot: Snapshot | null = null;
  let loading: { generation: number; promise: Promise<Snapshot> } | null = null;
  let failedAt = Number.NEGATIVE_INFINITY;
  let warnedAt = Number.NEGATIVE_INFINITY;

  const warn = (err: unknown, msg: string) => {
    const t = now();
    if (t - warnedAt < WARN_EVERY_MS) return;
    warnedAt = t;
    deps.logger.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, msg);
  };

  const reload = (): Promise<Snapshot> => {
    if (loading && loading.generation === generation) return loading.promise;
    const gen = generation;
    const startedAt = now();
    const promise = deps.db.rule
      .findMany({
        where: { OR: [{ expiresAt: null }, { expiresAt: { gt: new Date(startedAt) } }] },
        select: { id: true, kind: true, mode: true, value: true, expiresAt: true },
        orderBy: { createdAt: 'asc' },
      })
      .then((rows) => {
        const loaded: Snapshot = { index: compileRules(rows), loadedAt: startedAt, generation: gen };
        if (!snapshot || snapshot.generation <= gen) snapshot = loaded;
        return loaded;
      })
      .finally(() => {
        if (loading?.promise === promise) loading = null;
      });
    loading = { generation: gen, promise };
    return promise;
  };

  const current = async (): Promise<RuleIndex> => {
    const t = now();
    const held = snapshot;
    if (held && held.generation === generation) {
      const age = t - held.loadedAt;
      if (age < REFRESH_AHEAD_MS) return held.index;
      if (age < MAX_AGE_MS) {
        if (t - failedAt >= RETRY_AFTER_FAILURE_MS) {
          reload().catch((err: unknown) => {
            failedAt = now();
            warn(err, 'rules: background reload failed; serving the last copy');
          });
        }
        return held.index;
      }
    }
    if (held && t - failedAt < RETRY_AFTER_FAILURE_MS) return held.index;
    try {
      return (await reload()).index;
    } catch (err) {
      failedAt = now();
      // Without any copy there is nothing safe to answer with: the caller decides (a 503).
      if (!held) throw err;
      warn(err, 'rules: reload failed; serving the last copy');
      return held.index;
    }
  };

  const invalidate = () => {
    generation++;
    failedAt = Number.NEGATIVE_INFINITY;
  };

  const changed = async () => {
    invalidate();
    try {
      await deps.redis.publish(deps.channel, RULES_INVALIDATION);
    } catch (err) {
      // The change is committed; other instances pick it up within 30 s without the message.
      warn(err, 'rules: could not publish the invalidation');
    }
  };

  const handleInvalidation = (message: string) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (typeof parsed === 'object' && parsed !== null && (parsed as { type?: unknown }).type === 'rules') {
      invalidate();
    }
  };

  const onMessage = (channel: string, message: string) => {
    if (channel === deps.channel) handleInvalidation(message);
  };
  // Messages published while the subscriber was reconnecting are lost, so a reconnect counts as one.
  const onReady = () => invalidate();
  let subscribed: Promise<void> = Promise.resolve();
  if (deps.subscriber) {
    deps.subscriber.on('message', onMessage);
    deps.subscriber.on('ready', onReady);
    subscribed = deps.subscriber.subscribe(deps.channel).then(() => undefined);
    subscribed.catch((err: unknown) => warn(err, 'rules: could not subscribe to invalidations'));
  }

  return {
    async create(input, actor) {
      const value = normaliseRuleValue(input.kind, input.value);
      if (!value.ok) return { ok: false, code: 'invalid', field: 'value', message: value.message };
      if (input.expiresAt && input.expiresAt.getTime() <= now()) {
        return { ok: false, code: 'invalid', field: 'expiresAt', message: 'must be in the future' };
      }
      const data = {
        id: newId('rul', now()),
        kind: input.kind,
        mode: input.mode,
        value: value.value,
        note: input.note ?? null,
        expiresAt: input.expiresAt ?? null,
      };
      let row: Row;
      try {
        row = await deps.db.$transaction(async (tx) => {
          const created = await tx.rule.create({ data });
          await deps.audit.record(
            {
              actor: actor.tokenId,
              action: 'rule.created',
              subjectType: 'rule',
              subjectId: created.id,
              data: {
                kind: created.kind,
                mode: created.mode,
                value: created.value,
                note: created.note,
                expiresAt: created.expiresAt?.toISOString() ?? null,
              },
            },
            tx,
          );
          return created;
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        const existing = await deps.db.rule.findUnique({
          where: { kind_value: { kind: input.kind, value: value.value } },
          select: { id: true },
        });
        return {
          ok: false,
          code: 'conflict',
          message: `A ${input.kind} rule for ${value.value} already exists${existing ? ` (${existing.id})` : ''}`,
        };
      }
      await changed();
      return { ok: true, rule: view(row) };
    },

    async list(filter = {}) {
      const rows = await deps.db.rule.findMany({
        where: {
          ...(filter.kind ? { kind: filter.kind } : {}),
          ...(filter.mode ? { mode: filter.mode } : {}),
        },
        orderBy: { createdAt: 'desc' },
        take: 1000,
      });
      return rows.map(view);
    },

    async remove(id, actor) {
      const removed = await deps.db.$transaction(async (tx) => {
        const row = await tx.rule.findUnique({ where: { id } });
        if (!row) return false;
        const { count } = await tx.rule.deleteMany({ where: { id } });
        if (count === 0) return false;
        await deps.audit.record(
          {
            actor: actor.tokenId,
            action: 'rule.deleted',
            subjectType: 'rule',
            subjectId: id,
            data: { kind: row.kind, mode: row.mode, value: row.value },
          },
          tx,
        );
        return true;
      });
      if (removed) await changed();
      return removed;
    },

    async match(subject) {
      return (await current()).match(subject, now());
    },

    handleInvalidation,

    async warm() {
      await subscribed;
      await reload();
    },

    close() {
      deps.subscriber?.off('message', onMessage);
      deps.subscriber?.off('ready', onReady);
    },
  };
}
