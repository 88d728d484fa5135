/**
 * A binary min-heap over an array, ordered by a `before` function given at construction. Push and pop are
 * O(log n); peek is O(1). The TTL cache keeps its entries in two of these, by when they stop being fresh and
 * by when they are dropped.
 *
 * @module
 */

/** A binary min-heap: the item for which `before` holds against every other is on top. */
export class MinHeap<T> {
  #items: T[] = [];
  readonly #before: (a: T, b: T) => boolean;

  /** @param before whether `a` must come out before `b` (a strict order: ties must be broken) */
  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
  }

  /** Items held. */
  get size(): number {
    return this.#items.length;
  }

  /** The first item, without taking it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Adds `item`. */
  push(item: T): void {
    const items = this.#items;
    const before = this.#before;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = item;
  }

  /** Takes the first item off. */
  pop(): T | undefined {
    const items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) this.#siftDown(last);
    return top;
  }

  /** Keeps only the items `keep` says, in O(n). */
  filter(keep: (item: T) => boolean): void {
    this.#items = this.#items.filter(keep);
    for (let i = (this.#items.length >> 1) - 1; i >= 0; i--) this.#siftDownFrom(i);
  }

  /** Drops every item. */
  clear(): void {
    this.#items = [];
  }

  #siftDown(item: T): void {
    this.#items[0] = item;
    this.#siftDownFrom(0);
  }

  #siftDownFrom(start: number): void {
    const items = this.#items;
    const before = this.#before;
    const n = items.length;
    const item = items[start];
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && before(items[right], items[left]) ? right : left;
      if (!before(items[child], item)) break;
      items[i] = items[child];
      i = child;
    }
    items[i] = item;
  }
}
