import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const sha256Hex = (value: string): string => createHash('sha256').update(value).digest('hex');

export const hmacHex = (pepper: string, value: string): string =>
  createHmac('sha256', pepper).update(value).digest('hex');

/** A secret with a recognisable prefix and `bytes` bytes of randomness (base64url). */
export const newSecret = (prefix: string, bytes = 32): string =>
  `${prefix}${randomBytes(bytes).toString('base64url')}`;

/** Compares two strings in time that depends only on their hashed length, not on where they differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}
