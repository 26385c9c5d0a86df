import type { Db } from '../db/client.ts';

// Networks a suspended farm has taken over. A farm that keeps making accounts from its own rack of
// modems or proxies leaves its newest accounts without usage, and so without links, when a run
// looks at them; but they sign up from the addresses its suspended members used. An address (or
// /24) counts as the farm's only when most accounts ever seen on it are that farm's suspended
// members: a carrier's CGNAT or a university NAT, shared with many real people, never does. New
// accounts from such a network are challenged (the phone step-up), not suspended: a person who
// happens to share it passes with their own phone.

/** Members of the suspended farm on a network before it counts as the farm's. */
export const FARM_NETWORK_MIN_MEMBERS = 3;
/** Share of the accounts seen on a network that must be the farm's suspended members. */
export const FARM_NETWORK_MIN_SHARE = 0.5;
/** Accounts counted per signal value: past this a network is shared far too widely to be a farm's. */
const HOLDERS_CAP = 1_000;

const NETWORK_KINDS: Readonly<Record<string, 'ip' | 'net'>> = {
  ip: 'ip',
  usage_ip: 'ip',
  subnet: 'net',
  usage_subnet: 'net',
};

export interface FarmNetwork {
  /** `ip:<address>` or `net:<subnet>`. */
  network: string;
  clusterId: string;
  farmMembers: number;
  accounts: number;
  /** Event time the farm was first seen on it. */
  since: Date;
}

/** A newer account that signed up from a farm's network, and the farm it is held to. */
export interface FarmNetworkArrival {
  accountId: string;
  clusterId: string;
  network: string;
}

const keyOf = (kind: string, value: string): string | null => {
  const family = NETWORK_KINDS[kind];
  return family ? `${family}:${value}` : null;
};

/**
 * The networks (addresses and /24s, from signup and from usage) that suspended farms dominate, and
 * the accounts outside those farms that signed up from one of them after the farm appeared there.
 * `farms` maps each suspended cluster to its members.
 */
export async function farmNetworkArrivals(
  db: Db,
  farms: ReadonlyMap<string, readonly string[]>,
  asOf: Date,
): Promise<{ networks: FarmNetwork[]; arrivals: FarmNetworkArrival[] }> {
  const clusterOf = new Map<string, string>();
  for (const [clusterId, members] of farms) for (const m of members) clusterOf.set(m, clusterId);
  if (clusterOf.size === 0) return { networks: [], arrivals: [] };

  // Every network the farms' members were seen on, with the members and when.
  const held = await db.$queryRaw<Array<{ kind: string; value: string; account_id: string; at: Date }>>`
    SELECT kind, value, account_id, at FROM signals
    WHERE account_id = ANY(${[...clusterOf.keys()]}::text[])
      AND kind = ANY(${Object.keys(NETWORK_KINDS)}::text[]) AND at <= ${asOf}`;
  const byNetwork = new Map<string, { members: Map<string, Set<string>>; since: number }>();
  for (const r of held) {
    const key = keyOf(r.kind, r.value);
    const clusterId = clusterOf.get(r.account_id);
    if (!key || !clusterId) continue;
    const entry = byNetwork.get(key) ?? { members: new Map<string, Set<string>>(), since: r.at.getTime() };
    const set = entry.members.get(clusterId) ?? new Set<string>();
    set.add(r.account_id);
    entry.members.set(clusterId, set);
    entry.since = Math.min(entry.since, r.at.getTime());
    byNetwork.set(key, entry);
  }
  const candidates = [...byNetwork].filter(([, e]) =>
    [...e.members.values()].some((s) => s.size >= FARM_NETWORK_MIN_MEMBERS),
  );
  if (candidates.length === 0) return { networks: [], arrivals: [] };

  // Everyone seen on those networks (each value counted up to the cap), farm or not.
  const kinds: string[] = [];
  const values: string[] = [];
  for (const [key] of candidates) {
    const [family, value] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
    for (const [kind, f] of Object.entries(NETWORK_KINDS)) {
      if (f !== family) continue;
      kinds.push(kind);
      values.push(value);
    }
  }
  const holders = await db.$queryRaw<Array<{ kind: string; value: string; account_id: string; at: Date }>>`
    SELECT q.kind, q.value, h.account_id, h.at
    FROM unnest(${kinds}::text[], ${values}::text[]) AS q(kind, value)
    CROSS JOIN LATERAL (
      SELECT s.account_id, s.at FROM signals s
      WHERE s.kind = q.kind AND s.value = q.value AND s.at <= ${asOf}
      ORDER BY s.at LIMIT ${HOLDERS_CAP + 1}
    ) h`;
  const accountsOn = new Map<string, Set<string>>();
  const signedUpOn = new Map<string, Array<{ accountId: string; at: number }>>();
  for (const r of holders) {
    const key = keyOf(r.kind, r.value);
    if (!key) continue;
    const set = accountsOn.get(key) ?? new Set<string>();
    set.add(r.account_id);
    accountsOn.set(key, set);
    // Arrivals are judged by where they signed up: the signup kinds only.
    if (r.kind === 'ip' || r.kind === 'subnet') {
      const list = signedUpOn.get(key) ?? [];
      list.push({ accountId: r.account_id, at: r.at.getTime() });
      signedUpOn.set(key, list);
    }
  }

  const networks: FarmNetwork[] = [];
  const arrivals = new Map<string, FarmNetworkArrival>();
  for (const [key, entry] of candidates.sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const [clusterId, members] = [...entry.members].sort(
      (a, b) => b[1].size - a[1].size || (a[0] < b[0] ? -1 : 1),
    )[0]!;
    const farmMembers = [...entry.members.values()].reduce((n, s) => n + s.size, 0);
    const accounts = Math.max(accountsOn.get(key)?.size ?? 0, farmMembers);
    if (members.size < FARM_NETWORK_MIN_MEMBERS || farmMembers / accounts < FARM_NETWORK_MIN_SHARE) continue;
    networks.push({ network: key, clusterId, farmMembers, accounts, since: new Date(entry.since) });
    for (const s of signedUpOn.get(key) ?? []) {
      if (clusterOf.has(s.accountId) || s.at < entry.since || arrivals.has(s.accountId)) continue;
      arrivals.set(s.accountId, { accountId: s.accountId, clusterId, network: key });
    }
  }
  return { networks, arrivals: [...arrivals.values()].sort((a, b) => (a.accountId < b.accountId ? -1 : 1)) };
}
