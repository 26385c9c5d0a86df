import { readFileSync } from 'node:fs';

// Summary of a V8 .cpuprofile (node --cpu-prof): where the server's CPU time went, by function
// (self time), by package or source folder, and inclusive time of Gatehouse's own functions.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  name: string;
  ms: number;
  /** Share of busy (non-idle) time. */
  pct: number;
}

export interface ProfileSummary {
  wallMs: number;
  busyMs: number;
  topSelf: ProfileRow[];
  byPackage: ProfileRow[];
  /** Functions under src/: time spent in them and everything they called synchronously. */
  srcInclusive: ProfileRow[];
}

const IDLE = new Set(['(idle)']);

function shortUrl(url: string, root: string): string {
  let u = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  if (u.startsWith(root)) u = u.slice(root.length).replace(/^\/+/, '');
  const nm = u.lastIndexOf('node_modules/');
  return nm === -1 ? u : u.slice(nm + 'node_modules/'.length);
}

function packageOf(frame: CallFrame, root: string): string {
  if (frame.url === '') {
    return frame.functionName.startsWith('(') ? frame.functionName : '(V8 builtins / native)';
  }
  if (frame.url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([a-z_]+)/.exec(frame.url);
    const mod = (m?.[1] ?? 'core').replace(/^_/, '').replace(/^(http|https)_.*/, '$1');
    return `node:${mod}`;
  }
  const u = frame.url.startsWith('file://') ? decodeURIComponent(frame.url.slice(7)) : frame.url;
  const nm = u.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const parts = u.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? '?');
  }
  const rel = shortUrl(frame.url, root);
  const src = /^(src|workers)\/([^/]+)/.exec(rel);
  if (src) return `gatehouse ${src[1]}/${src[2]}`;
  return rel;
}

const frameName = (f: CallFrame, root: string) =>
  `${f.functionName || '(anonymous)'}${f.url ? ` ${shortUrl(f.url, root)}:${f.lineNumber + 1}` : ''}`;

/**
 * `window` limits the summary to samples taken between two instants, in µs of the monotonic clock
 * (process.hrtime.bigint() / 1000n in any process on the machine: V8 stamps samples with it), so
 * that start-up and shutdown do not dilute the steady state.
 */
export function summariseProfile(
  path: string,
  root: string,
  window?: { fromUs: number; toUs: number },
  top = 25,
): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  let at = profile.startTime;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    first = Math.min(first, at);
    last = Math.max(last, at);
    // timeDeltas[i] is the gap before sample i, so sample i lasted until the next one.
    const dt = timeDeltas[i + 1] ?? 0;
    const id = samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  let busyUs = 0;
  const selfByName = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame || IDLE.has(frame.functionName)) continue;
    busyUs += us;
    const name = frameName(frame, root);
    selfByName.set(name, (selfByName.get(name) ?? 0) + us);
    const pkg = packageOf(frame, root);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
  }

  // Inclusive time per src/ function, counting a function once per stack even when it recurses.
  const inclusive = new Map<string, number>();
  const total = new Map<number, number>();
  const totalOf = (id: number): number => {
    const known = total.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    let sum = selfUs.get(id) ?? 0;
    for (const child of node?.children ?? []) sum += totalOf(child);
    total.set(id, sum);
    return sum;
  };
  const root0 = profile.nodes[0]?.id;
  if (root0 !== undefined) {
    const onStack = new Map<string, number>();
    const walk = (id: number) => {
      const node = byId.get(id);
      if (!node) return;
      const rel = shortUrl(node.callFrame.url, root);
      const isSrc = /^(src|workers)\//.test(rel);
      const name = frameName(node.callFrame, root);
      if (isSrc && !onStack.get(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + totalOf(id));
      if (isSrc) onStack.set(name, (onStack.get(name) ?? 0) + 1);
      for (const child of node.children ?? []) walk(child);
      if (isSrc) onStack.set(name, (onStack.get(name) ?? 1) - 1);
    };
    walk(root0);
  }

  const rows = (m: Map<string, number>, n: number): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: busyUs > 0 ? (100 * us) / busyUs : 0 }));
  return {
    wallMs: last > first ? (last - first) / 1000 : 0,
    busyMs: busyUs / 1000,
    topSelf: rows(selfByName, top),
    byPackage: rows(byPackage, top),
    srcInclusive: rows(inclusive, top),
  };
}
