import { describe, expect, it } from 'vitest';
import { mapLimit } from '../../src/lib/map-limit.ts';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('mapLimit', () => {
  it('keeps the items order whatever order the calls finish in, with at most `limit` in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const out = await mapLimit([30, 5, 20, 1, 10, 2], 3, async (ms, i) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await tick(ms);
      inFlight--;
      return `${i}:${ms}`;
    });
    expect(out).toEqual(['0:30', '1:5', '2:20', '3:1', '4:10', '5:2']);
    expect(most).toBe(3);
  });

  it('rejects with the first failure and starts nothing after it', async () => {
    const started: number[] = [];
    await expect(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (n) => {
        started.push(n);
        await tick(5);
        if (n === 1) throw new Error('boom');
        return n;
      }),
    ).rejects.toThrow('boom');
    await tick(30);
    // 0 and 1 ran together; 1 failed as 0 finished, so at most 2 more had been taken.
    expect(started.length).toBeLessThanOrEqual(4);
    expect(started.slice(0, 2)).toEqual([0, 1]);
  });

  it('answers an empty list at once and refuses a limit below one', async () => {
    expect(await mapLimit([], 4, async () => 1)).toEqual([]);
    await expect(mapLimit([1], 0, async () => 1)).rejects.toThrow(RangeError);
  });
});
