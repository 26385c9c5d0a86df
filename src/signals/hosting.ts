// Classifies autonomous systems as cloud, hosting or VPN/proxy networks: places from which real
// people rarely sign up or call an API directly, and from which account farms usually do.
//
// The list in data/hosting-asns.json is curated, not exhaustive: it covers the large clouds and the
// hosting and VPN networks most used for automation. `kind` lets policy weigh them differently:
// 'vpn' includes privacy relays (iCloud Private Relay, Cloudflare WARP) with many legitimate users,
// so it should count for less than 'cloud' or 'hosting'. Entries with a `note` explain such mixes.
import hostingData from '../../data/hosting-asns.json' with { type: 'json' };

export type HostingKind = 'cloud' | 'hosting' | 'vpn';

export interface HostingAsn {
  readonly asn: number;
  readonly name: string;
  readonly kind: HostingKind;
  readonly note?: string;
}

export interface HostingClassifier {
  /** True for any listed ASN, whatever its kind. Null/undefined (unknown ASN) is false. */
  isHosting(asn: number | null | undefined): boolean;
  kindOf(asn: number | null | undefined): HostingKind | null;
  entryOf(asn: number | null | undefined): HostingAsn | null;
  readonly size: number;
}

const KINDS: ReadonlySet<string> = new Set<HostingKind>(['cloud', 'hosting', 'vpn']);

function isAsn(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 0xffffffff;
}

function validate(raw: unknown): HostingAsn[] {
  const list = (raw as { asns?: unknown } | null)?.asns;
  if (!Array.isArray(list)) throw new Error('data/hosting-asns.json: "asns" must be an array');
  return list.map((e: unknown, i): HostingAsn => {
    const r = e as Record<string, unknown>;
    if (!isAsn(r.asn) || typeof r.name !== 'string' || typeof r.kind !== 'string' || !KINDS.has(r.kind)) {
      throw new Error(`data/hosting-asns.json: entry ${i} is malformed`);
    }
    const entry: HostingAsn = { asn: r.asn, name: r.name, kind: r.kind as HostingKind };
    return typeof r.note === 'string' ? { ...entry, note: r.note } : entry;
  });
}

/** The bundled list, validated once at import so a bad edit fails at start-up, not per request. */
export const BUNDLED_HOSTING_ASNS: readonly HostingAsn[] = Object.freeze(validate(hostingData));

/**
 * `extra` comes from operator configuration: bare numbers are taken as kind 'hosting'; full entries
 * may set the kind, and override a bundled entry for the same ASN. Invalid values throw, so that a
 * configuration typo stops start-up instead of silently matching nothing.
 */
export function createHostingClassifier(extra: readonly (number | HostingAsn)[] = []): HostingClassifier {
  const byAsn = new Map<number, HostingAsn>();
  for (const e of BUNDLED_HOSTING_ASNS) byAsn.set(e.asn, e);
  for (const e of extra) {
    if (typeof e === 'number') {
      if (!isAsn(e)) throw new Error(`invalid extra hosting ASN: ${e}`);
      if (!byAsn.has(e)) byAsn.set(e, { asn: e, name: `AS${e}`, kind: 'hosting' });
    } else {
      if (!isAsn(e.asn) || !KINDS.has(e.kind)) throw new Error(`invalid extra hosting ASN entry: ${e.asn}`);
      byAsn.set(e.asn, e);
    }
  }
  const entryOf = (asn: number | null | undefined): HostingAsn | null =>
    asn == null ? null : (byAsn.get(asn) ?? null);
  return {
    isHosting: (asn) => asn != null && byAsn.has(asn),
    kindOf: (asn) => entryOf(asn)?.kind ?? null,
    entryOf,
    size: byAsn.size,
  };
}

// Whole words only, matched case-insensitively. "dedicated" alone is left out ("Dedicated Freight
// Corridor Corporation"); "dedicated server" is caught by "server".
const HOSTING_WORDS =
  /(?<![a-z])(?:web ?)?(?:hosting|hoster|servers?|data ?cent(?:er|re)s?|colo(?:cation)?|vps|vds|cloud)(?![a-z])/i;

/**
 * Secondary heuristic on the AS organisation name, for networks the list does not know. Separate on
 * purpose, and weaker: it matches ~1,460 of the ~91,000 organisation names in the bundled data,
 * mostly real hosting companies, but also eyeball networks and enterprises with such words in their
 * names, e.g. "The Cloud Networks Limited" (BT's public Wi-Fi, real users), "BBDO-COLO" (an ad
 * agency), regional "Cloud" ISPs, and carriers' "Internet Data Center" ASNs. Use it to add a little
 * risk, never to block on its own.
 */
export function orgLooksLikeHosting(org: string | null | undefined): boolean {
  return typeof org === 'string' && HOSTING_WORDS.test(org);
}
