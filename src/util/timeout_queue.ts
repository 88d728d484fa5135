/**
 * Timeouts that all have one delay, on one timer.
 *
 * Every collapsed backend call is bounded by the same backend timeout, and nearly every one is cancelled
 * long before it fires. A `setTimeout` each cost the unique-key load a timer object, a native timer and a
 * `clearTimeout` per miss (bench/miss-profile.md). With one delay, deadlines come in the order timeouts are
 * added, so a FIFO queue holds them sorted for free: one timer is armed for the earliest live deadline, a
 * cancel only marks its entry, and the timer skips marked entries as it reaches them (Envoy and nginx keep
 * their per-connection timeouts the same way, in lists or wheels sorted by construction).
 *
 * No timer is left armed once nothing is waiting, so an idle process holds none.
 *
 * @module
 */

/** A timeout in a {@linkcode TimeoutQueue}. */
export interface QueuedTimeout {
  /** Stops it from firing. Idempotent; a no-op once it has fired. */
  cancel(): void;
}

class Entry implements QueuedTimeout {
  fire: (() => void) | undefined;
  readonly at: number;
  readonly #queue: TimeoutQueue;

  constructor(queue: TimeoutQueue, at: number, fire: () => void) {
    this.#queue = queue;
    this.at = at;
    this.fire = fire;
  }

  cancel(): void {
    if (this.fire === undefined) return;
    this.fire = undefined;
    this.#queue._cancelled();
  }
}

/** Entries skipped at the front before the array is compacted. */
const COMPACT_AFTER = 1024;

/** Timeouts of one fixed delay, fired in order on a single timer. */
export class TimeoutQueue {
  /** The delay of every timeout, in ms. */
  readonly delayMs: number;
  readonly #now: () => number;
  #entries: Entry[] = [];
  #head = 0;
  #live = 0;
  /** Cancelled entries still in the array (behind the head). */
  #dead = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param delayMs the delay of every timeout, in ms (at most 2^31 − 1, setTimeout's bound)
   * @param now clock in ms @default {performance.now}
   */
  constructor(delayMs: number, now: () => number = () => performance.now()) {
    if (!(delayMs >= 0 && delayMs <= 2 ** 31 - 1)) {
      throw new RangeError(`Cannot create TimeoutQueue: delayMs must be 0–2^31-1: received ${delayMs}`);
    }
    this.delayMs = delayMs;
    this.#now = now;
  }

  /** Timeouts added and neither fired nor cancelled. */
  get pending(): number {
    return this.#live;
  }

  /** @internal Entries held, cancelled ones not yet dropped included (for tests). */
  get held(): number {
    return this.#entries.length - this.#head;
  }

  /** Calls `fire` once `delayMs` has passed, unless cancelled first. */
  add(fire: () => void): QueuedTimeout {
    const entry = new Entry(this, this.#now() + this.delayMs, fire);
    this.#entries.push(entry);
    if (this.#live++ === 0) this.#arm(this.delayMs);
    return entry;
  }

  /** @internal An entry was cancelled. */
  _cancelled(): void {
    if (--this.#live > 0) {
      // Under steady load something always waits, so marked entries would stay until the timer reached them
      // (a whole delay later, long enough to reach V8's old generation): drop them once they outnumber the
      // live ones. Each compaction removes at least half the array, so a cancel costs O(1) amortized.
      if (++this.#dead > COMPACT_AFTER && this.#dead > this.#live) {
        this.#entries = this.#entries.slice(this.#head).filter((entry) => entry.fire !== undefined);
        this.#head = 0;
        this.#dead = 0;
      }
      return;
    }
    // Nothing waits: drop the timer and the marked entries, so an idle process holds neither.
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#entries = [];
    this.#head = 0;
    this.#dead = 0;
  }

  #arm(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), Math.max(0, Math.ceil(delayMs)));
  }

  #run(): void {
    this.#timer = undefined;
    const now = this.#now();
    const entries = this.#entries;
    // A timeout that fires may cancel others (the queue resets once none is left) or add new ones.
    while (this.#entries === entries && this.#head < entries.length) {
      const entry = entries[this.#head];
      const fire = entry.fire;
      if (fire !== undefined && entry.at > now) break;
      this.#head++;
      if (fire === undefined) {
        this.#dead--;
        continue;
      }
      entry.fire = undefined;
      this.#live--;
      try {
        fire();
      } catch (err) {
        // One timeout's failure must not strand the ones behind it.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    if (this.#entries === entries && this.#head >= COMPACT_AFTER && this.#head * 2 >= entries.length) {
      this.#entries = entries.slice(this.#head);
      this.#head = 0;
    }
    if (this.#live === 0) {
      this.#entries = [];
      this.#head = 0;
      this.#dead = 0;
    } else if (this.#timer === undefined) {
      while (this.#entries[this.#head].fire === undefined) {
        this.#head++;
        this.#dead--;
      }
      this.#arm(this.#entries[this.#head].at - now);
    }
  }
}
