import { randomBytes } from 'node:crypto';

// Prefixed, sortable-enough identifiers: `acc_` + 10 chars of time + 12 chars of randomness
// (base32, Crockford alphabet), so ids sort by creation time and never reveal a counter.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

export type IdPrefix = 'acc' | 'sig' | 'ver' | 'key' | 'tok' | 'clu' | 'rul' | 'aud' | 'run' | 'evt';

function encode(value: bigint, length: number): string {
  let out = '';
  let v = value;
  for (let i = 0; i < length; i++) {
    out = ALPHABET[Number(v & 31n)] + out;
    v >>= 5n;
  }
  return out;
}

export function newId(prefix: IdPrefix, now: number = Date.now()): string {
  const random = BigInt(`0x${randomBytes(8).toString('hex')}`);
  return `${prefix}_${encode(BigInt(now), 10)}${encode(random, 12)}`;
}
