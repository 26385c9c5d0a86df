// Clusters: connected components of the link graph (union-find), with ids that stay stable across
// runs when membership changes a little. Pure.

export class UnionFind {
  private readonly parent = new Map<string, string>();
  private readonly rank = new Map<string, number>();

  find(x: string): string {
    let root = x;
    for (;;) {
      const p = this.parent.get(root);
      if (p === undefined || p === root) break;
      root = p;
    }
    // Path compression keeps later finds near O(1).
    let node = x;
    while (node !== root) {
      const next = this.parent.get(node) ?? root;
      this.parent.set(node, root);
      node = next;
    }
    if (!this.parent.has(root)) this.parent.set(root, root);
    return root;
  }

  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra === rb) return;
    const ka = this.rank.get(ra) ?? 0;
    const kb = this.rank.get(rb) ?? 0;
    if (ka < kb) this.parent.set(ra, rb);
    else if (ka > kb) this.parent.set(rb, ra);
    else {
      this.parent.set(rb, ra);
      this.rank.set(ra, ka + 1);
    }
  }

  /** Components with at least `minSize` members, each sorted, largest first (then by first member). */
  components(minSize: number): string[][] {
    const groups = new Map<string, string[]>();
    for (const node of this.parent.keys()) {
      const root = this.find(node);
      const list = groups.get(root);
      if (list) list.push(node);
      else groups.set(root, [node]);
    }
    return [...groups.values()]
      .filter((g) => g.length >= minSize)
      .map((g) => g.sort())
      .sort((x, y) => y.length - x.length || (x[0]! < y[0]! ? -1 : 1));
  }
}

export function componentsOf(links: ReadonlyArray<{ a: string; b: string }>, minSize: number): string[][] {
  const uf = new UnionFind();
  for (const l of links) uf.union(l.a, l.b);
  return uf.components(minSize);
}

/**
 * Gives each component the id of the previous cluster most of its members belonged to, when that
 * cluster keeps at least half of them and no larger component claimed it first; otherwise a new id.
 * So a farm that gains or loses a few members keeps its id, its label and its history.
 */
export function assignClusterIds(
  components: readonly string[][],
  previous: ReadonlyMap<string, string>,
  newId: () => string,
): Array<{ id: string; members: string[]; reused: boolean }> {
  const claimed = new Set<string>();
  return components.map((members) => {
    const votes = new Map<string, number>();
    for (const m of members) {
      const old = previous.get(m);
      if (old) votes.set(old, (votes.get(old) ?? 0) + 1);
    }
    let best: string | null = null;
    let bestVotes = 0;
    for (const [id, n] of [...votes].sort((x, y) => (x[0] < y[0] ? -1 : 1))) {
      if (n > bestVotes && !claimed.has(id)) {
        best = id;
        bestVotes = n;
      }
    }
    if (best && bestVotes * 2 >= members.length) {
      claimed.add(best);
      return { id: best, members, reused: true };
    }
    return { id: newId(), members, reused: false };
  });
}
