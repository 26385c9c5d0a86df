// MinHash signatures of query text, so detection can compare prompts across accounts (a farm
// sends the same templates) without Gatehouse ever storing what users asked.

export const MINHASH_SIZE = 32;
const MAX_TEXT = 16_384;
const PRIME = 2_147_483_647; // 2^31 - 1

// Fixed coefficients (a, b) for the hash family h_i(x) = (a_i * x + b_i) mod p: signatures made by
// different instances and releases must stay comparable, so they are constants, not random.
const COEFFS: ReadonlyArray<readonly [number, number]> = Array.from({ length: MINHASH_SIZE }, (_, i) => {
  const a = (((i + 1) * 2_654_435_761) % 1_048_573) + 1;
  const b = ((i + 7) * 40_503) % 1_048_573;
  return [a, b] as const;
});

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Word 3-grams of the normalised text (character 4-grams for texts of fewer than three words). */
export function shingles(text: string): string[] {
  const normalised = text.slice(0, MAX_TEXT).toLowerCase().replace(/\s+/g, ' ').trim();
  if (normalised === '') return [];
  const words = normalised.split(' ');
  const out: string[] = [];
  if (words.length >= 3) {
    for (let i = 0; i + 2 < words.length; i++) out.push(`${words[i]} ${words[i + 1]} ${words[i + 2]}`);
  } else {
    for (let i = 0; i + 4 <= normalised.length; i++) out.push(normalised.slice(i, i + 4));
    if (out.length === 0) out.push(normalised);
  }
  return out;
}

/** The signature: for each hash function, the smallest hash over the text's shingles. Empty text → []. */
export function minhash(text: string): number[] {
  const grams = shingles(text);
  if (grams.length === 0) return [];
  const sig = new Array<number>(MINHASH_SIZE).fill(PRIME);
  for (const gram of new Set(grams)) {
    const x = fnv1a(gram) % PRIME;
    for (let i = 0; i < MINHASH_SIZE; i++) {
      const [a, b] = COEFFS[i]!;
      // a < 2^21 and x < 2^31: the product stays below 2^53, exact in a double.
      const h = (a * x + b) % PRIME;
      if (h < sig[i]!) sig[i] = h;
    }
  }
  return sig;
}

/** Estimated Jaccard similarity of the two texts' shingle sets. */
export function similarity(a: readonly number[], b: readonly number[]): number {
  if (a.length === 0 || a.length !== b.length) return 0;
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}
