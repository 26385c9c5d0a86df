/**
 * First in, first out, on one array read from a moving head: O(1) amortised per item, with the
 * slot of a taken item cleared at once (nothing stays reachable through the queue) and the array
 * compacted once more than half of it lies behind the head.
 *
 * For the per-request queues of the enforcement path (commands waiting for Redis, requests waiting
 * for their deadline). Not a Set or a Map: a small, busy Set is rehashed every few additions, and V8
 * keeps each replaced table's entries and a link to the next table. Once one table is in the old
 * generation, every entry that passes through keeps its whole request alive past the next
 * scavenge (src/enforce/http.ts has the figures).
 */
export class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, left in place. */
  peek(): T | undefined {
    return this.items[this.head];
  }

  /** Takes the oldest item. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Every item still queued, oldest first; the queue is left empty. */
  drain(): T[] {
    const rest = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return rest;
  }

  /** Oldest first, without taking anything. */
  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i] as T;
  }
}
