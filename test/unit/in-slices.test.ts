import { describe, expect, it } from 'vitest';
import { inSlices } from '../../src/lib/in-slices.ts';

describe('inSlices', () => {
  it('reads every id once, a slice at a time and one slice after another, results in order', async () => {
    const ids = Array.from({ length: 23 }, (_, i) => `id${i}`);
    const slices: string[][] = [];
    let inFlight = 0;
    const out = await inSlices(ids, 10, async (slice) => {
      expect(++inFlight).toBe(1);
      slices.push(slice);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      return slice.map((id) => id.toUpperCase());
    });
    expect(slices.map((s) => s.length)).toEqual([10, 10, 3]);
    expect(out).toEqual(ids.map((id) => id.toUpperCase()));
  });

  it('reads nothing for no ids, and refuses a size that is not a positive integer', async () => {
    let calls = 0;
    expect(await inSlices([], 10, async () => [++calls])).toEqual([]);
    expect(calls).toBe(0);
    await expect(inSlices(['a'], 0, async () => [])).rejects.toThrow(RangeError);
    await expect(inSlices(['a'], 1.5, async () => [])).rejects.toThrow(RangeError);
  });
});
