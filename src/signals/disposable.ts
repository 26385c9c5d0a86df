import { createRequire } from 'node:module';
import { domainToASCII } from 'node:url';
import { isPrivacyRelay, isPublicProvider } from './email.ts';

export interface DisposableCheckerOptions {
  /** Operator rule: always disposable, even a public provider or a relay. */
  extraBlock?: readonly string[];
  /** Operator rule: never disposable, whatever the lists say (extraBlock still wins). */
  extraAllow?: readonly string[];
}

export interface DisposableChecker {
  isDisposable(domain: string): boolean;
  /** Distinct domains in the merged lists plus the operator's extra blocks. */
  readonly size: number;
}

// The lists are ~4 MB of source and ~150k domains: load them on first use, synchronously, because the
// checker's API is synchronous. Static `import ... with { type: 'json' }` would pay that at import time
// for every process that merely imports this module, and dynamic import() would force an async API.
const require = createRequire(import.meta.url);

const PLAIN_DOMAIN = /^[a-z0-9-]+(?:\.[a-z0-9-]+)+$/;
const PLAIN_DOMAIN_OR_TLD = /^[a-z0-9-]+(?:\.[a-z0-9-]+)*$/;

// Second-level public suffixes that slipped into the lists (edu.pl, nom.za, net.ee...). With parent
// matching they would flag every university in Poland, so they are dropped rather than trusted.
const SUFFIX_LIKE =
  /^(?:ac|co|com|edu|gov|net|org|nom|biz|info|mil|int|gen|ltd|plc|sch|web|ne|or|go)\.[a-z]{2}$/;

/** Lowercase ASCII domain, or '' when it is not one. Tolerates `@`, `*.`, a trailing dot and IDNs. */
function normalizeDomain(raw: string, allowTld = false): string {
  const shape = allowTld ? PLAIN_DOMAIN_OR_TLD : PLAIN_DOMAIN;
  let d = raw.trim().toLowerCase();
  if (shape.test(d)) return d;
  d = d
    .replace(/^@/, '')
    .replace(/^\*?\./, '')
    .replace(/\.$/, '');
  if (d.length === 0 || /[\s/@%:[\]]/.test(d)) return '';
  const ascii = domainToASCII(d);
  return shape.test(ascii) ? ascii : '';
}

export interface DisposableListStats {
  size: number;
  droppedSuffixLike: string[];
  sources: Record<string, number>;
}

let merged: { set: ReadonlySet<string>; stats: DisposableListStats } | undefined;

function addAll(target: Set<string>, value: unknown, source: string, stats: DisposableListStats): void {
  if (!Array.isArray(value) && !(value instanceof Set)) {
    throw new Error(`disposable list ${source} has an unexpected shape`);
  }
  let count = 0;
  for (const entry of value) {
    if (typeof entry !== 'string') continue;
    count++;
    const domain = normalizeDomain(entry);
    if (domain === '') continue;
    if (SUFFIX_LIKE.test(domain)) {
      if (!stats.droppedSuffixLike.includes(domain)) stats.droppedSuffixLike.push(domain);
      continue;
    }
    target.add(domain);
  }
  stats.sources[source] = count;
}

function mailcheckerList(): unknown {
  const mod: unknown = require('mailchecker');
  if (typeof mod === 'object' && mod !== null && 'blacklist' in mod && typeof mod.blacklist === 'function') {
    const list: unknown = mod.blacklist();
    return list;
  }
  return undefined;
}

function mergedList(): { set: ReadonlySet<string>; stats: DisposableListStats } {
  if (merged) return merged;
  const set = new Set<string>();
  const stats: DisposableListStats = { size: 0, droppedSuffixLike: [], sources: {} };
  // disposable-email-domains: exact list plus its wildcard list. Every entry below matches its
  // subdomains too (mailchecker's semantics), so both go into the same set.
  addAll(set, require('disposable-email-domains/index.json'), 'disposable-email-domains', stats);
  addAll(set, require('disposable-email-domains/wildcard.json'), 'disposable-email-domains/wildcard', stats);
  addAll(
    set,
    require('disposable-email-domains-js/dist/dict/disposable_email_blocklist.json'),
    'disposable-email-domains-js',
    stats,
  );
  addAll(set, mailcheckerList(), 'mailchecker', stats);
  stats.size = set.size;
  merged = { set, stats };
  return merged;
}

/** Size and provenance of the merged lists; builds them if needed (also a way to warm up at boot). */
export function disposableListStats(): DisposableListStats {
  return mergedList().stats;
}

function operatorRules(entries: readonly string[] | undefined, name: string): ReadonlySet<string> {
  const out = new Set<string>();
  for (const entry of entries ?? []) {
    // A bare TLD is accepted here on purpose: blocking a whole TLD is an operator's explicit call.
    const domain = normalizeDomain(entry, true);
    // A silently ignored typo in an operator rule is worse than a failed start.
    if (domain === '') throw new TypeError(`${name}: "${entry}" is not a domain`);
    out.add(domain);
  }
  return out;
}

function suffixes(domain: string): string[] {
  const out = [domain];
  for (let i = domain.indexOf('.'); i >= 0; i = domain.indexOf('.', i + 1)) out.push(domain.slice(i + 1));
  return out;
}

/**
 * Precedence: operator block > operator allow > privacy relays and public providers (guards against
 * list mistakes) > the lists. Every rule matches the domain itself and all its subdomains.
 */
export function createDisposableChecker(opts: DisposableCheckerOptions = {}): DisposableChecker {
  const block = operatorRules(opts.extraBlock, 'extraBlock');
  const allow = operatorRules(opts.extraAllow, 'extraAllow');
  let size: number | undefined;

  return {
    isDisposable(raw: string): boolean {
      if (typeof raw !== 'string') return false;
      const domain = normalizeDomain(raw);
      if (domain === '') return false;
      const chain = suffixes(domain);
      if (chain.some((d) => block.has(d))) return true;
      if (chain.some((d) => allow.has(d))) return false;
      if (isPrivacyRelay(domain) || chain.some(isPublicProvider)) return false;
      const { set } = mergedList();
      return chain.some((d) => set.has(d));
    },
    get size(): number {
      if (size === undefined) {
        const { set } = mergedList();
        size = set.size + [...block].filter((d) => !set.has(d)).length;
      }
      return size;
    },
  };
}
