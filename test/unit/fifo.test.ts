import { describe, expect, it } from 'vitest';
import { Fifo } from '../../src/lib/fifo.ts';

describe('Fifo', () => {
  it('gives items back oldest first, and nothing once empty', () => {
    const q = new Fifo<number>();
    expect(q.shift()).toBeUndefined();
    for (const n of [1, 2, 3]) q.push(n);
    expect(q.size).toBe(3);
    expect(q.peek()).toBe(1);
    expect(q.shift()).toBe(1);
    expect([...q]).toEqual([2, 3]);
    expect(q.shift()).toBe(2);
    expect(q.shift()).toBe(3);
    expect(q.size).toBe(0);
    expect(q.peek()).toBeUndefined();
    q.push(4);
    expect(q.shift()).toBe(4);
  });

  it('keeps order across compactions, with many items in and out', () => {
    const q = new Fifo<number>();
    let next = 0;
    let expected = 0;
    // Pushes run ahead of shifts, so the head passes 1,024 with items still queued behind it.
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 300; i++) q.push(next++);
      for (let i = 0; i < 200; i++) expect(q.shift()).toBe(expected++);
      expect(q.size).toBe(next - expected);
    }
    expect(q.drain()).toEqual(Array.from({ length: next - expected }, (_, i) => expected + i));
    expect(q.size).toBe(0);
    expect(q.shift()).toBeUndefined();
  });
});
