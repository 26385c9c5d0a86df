// Seeded randomness for the linking benchmark's population: the same seed gives the same accounts
// in the same order, so runs on different machines or code versions import comparable data.

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number;
  chance(p: number): boolean;
  pick<T>(list: readonly T[]): T;
  /** Integer in [lo, hi], uniform in log scale: small groups common, large ones rare. */
  logUniform(lo: number, hi: number): number;
  hex(chars: number): string;
  letters(chars: number): string;
  digits(chars: number): string;
}

// FNV-1a: turns the seed text into sfc32 state without any platform dependence.
function hash32(text: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

export function createRng(seed: string): Rng {
  // sfc32: fast, passes PractRand far beyond what a benchmark draws, and easy to seed from 4 words.
  let a = hash32(seed, 0x9e3779b9);
  let b = hash32(seed, 0x243f6a88);
  let c = hash32(seed, 0xb7e15162);
  let d = hash32(seed, 0x85a308d3);
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // sfc32 starts weakly from similar states; the usual remedy is to discard its first outputs.
  for (let i = 0; i < 16; i++) next();
  const int = (n: number): number => Math.floor(next() * n);
  const rng: Rng = {
    next,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    chance: (p) => next() < p,
    pick: <T>(list: readonly T[]): T => list[int(list.length)]!,
    logUniform: (lo, hi) =>
      Math.min(hi, Math.floor(Math.exp(Math.log(lo) + next() * Math.log((hi + 1) / lo)))),
    hex: (chars) => {
      let s = '';
      while (s.length < chars) s += int(0x10000).toString(16).padStart(4, '0');
      return s.slice(0, chars);
    },
    letters: (chars) => {
      let s = '';
      for (let i = 0; i < chars; i++) s += LETTERS[int(26)];
      return s;
    },
    digits: (chars) => {
      let s = '';
      for (let i = 0; i < chars; i++) s += String(int(10));
      return s;
    },
  };
  return rng;
}

/**
 * Picks index i of n with probability proportional to 1 / (i + 1)^s: names, user agents and
 * mailbox providers all follow such a long tail, which decides how large shared buckets grow.
 */
export function zipfPicker(n: number, s: number): (rng: Rng) => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += 1 / (i + 1) ** s;
    cdf[i] = total;
  }
  return (rng) => {
    const x = rng.next() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export function weightedPicker<T>(items: ReadonlyArray<readonly [T, number]>): (rng: Rng) => T {
  const cdf = new Float64Array(items.length);
  let total = 0;
  items.forEach(([, w], i) => {
    total += w;
    cdf[i] = total;
  });
  return (rng) => {
    const x = rng.next() * total;
    let lo = 0;
    let hi = items.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return items[lo]![0];
  };
}
