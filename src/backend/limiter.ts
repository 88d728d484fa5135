/**
 * Backend protection: at most N backend calls at once; calls beyond that wait in a bounded FIFO queue for
 * a bounded time, and past either bound are shed at once. The proxy then answers `RESOURCE_EXHAUSTED`
 * itself instead of passing a flood of unique keys on to a backend that is already at its limit (compare
 * Envoy's circuit breakers: max_requests, max_pending_requests).
 *
 * @module
 */

/** Why a call was shed. */
export type ShedReason = "queue_full" | "queue_timeout";

/** Options for {@linkcode Limiter}. */
export interface LimiterOptions {
  /** Most backend calls at once. */
  maxConcurrent: number;
  /** Most calls waiting for a slot; 0 = shed at once when all slots are taken. @default {1024} */
  maxQueue?: number;
  /** Longest wait for a slot, in ms. @default {1000} */
  queueTimeoutMs?: number;
}

/** A place in the limiter: granted now or later, or shed. */
export interface Ticket {
  /** Gives up the slot (once granted) or the place in the queue (before). Idempotent. */
  release(): void;
}

interface Waiter {
  grant: () => void;
  shed: (reason: ShedReason) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  done: boolean;
}

/** Default queue bound when concurrency is limited. */
export const DEFAULT_MAX_QUEUE = 1024;
/** Default longest wait in the queue, in ms. */
export const DEFAULT_QUEUE_TIMEOUT_MS = 1_000;

/** Counts slots; see the module comment. */
export class Limiter {
  readonly maxConcurrent: number;
  readonly #maxQueue: number;
  readonly #queueTimeoutMs: number;
  #active = 0;
  /** FIFO with a moving head; entries that left are skipped when they reach the front. */
  #queue: (Waiter | undefined)[] = [];
  #head = 0;
  #queued = 0;
  /** Calls shed since start, by reason. */
  readonly shed: Record<ShedReason, number> = { queue_full: 0, queue_timeout: 0 };

  constructor(options: LimiterOptions) {
    const { maxConcurrent, maxQueue = DEFAULT_MAX_QUEUE, queueTimeoutMs = DEFAULT_QUEUE_TIMEOUT_MS } =
      options;
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new RangeError(
        `Cannot create Limiter: maxConcurrent must be an integer >= 1: received ${maxConcurrent}`,
      );
    }
    if (!Number.isInteger(maxQueue) || maxQueue < 0) {
      throw new RangeError(`Cannot create Limiter: maxQueue must be an integer >= 0: received ${maxQueue}`);
    }
    this.maxConcurrent = maxConcurrent;
    this.#maxQueue = maxQueue;
    this.#queueTimeoutMs = queueTimeoutMs;
  }

  /** Calls holding a slot now. */
  get active(): number {
    return this.#active;
  }

  /** Calls waiting for a slot now. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Asks for a slot: `grant` runs now if one is free (before this returns), or later in arrival order,
   * and is handed the slot's `release` (usable at once, even before `acquire` has returned); `shed` runs
   * instead when the queue is full (now) or the wait times out. Exactly one of them runs, unless the
   * ticket is released first. A `grant` that throws gives its slot back.
   */
  acquire(grant: (release: () => void) => void, shed: (reason: ShedReason) => void): Ticket {
    if (this.#active < this.maxConcurrent && this.#queued === 0) {
      this.#active++;
      const slot = this.#slot();
      try {
        grant(slot.release);
      } catch (err) {
        slot.release();
        throw err;
      }
      return slot;
    }
    if (this.#queued >= this.#maxQueue) {
      this.shed.queue_full++;
      shed("queue_full");
      return NOTHING;
    }
    const waiter: Waiter = { grant: () => {}, shed, timer: undefined, done: false };
    let slot: Ticket | undefined;
    waiter.grant = () => {
      const granted = slot = this.#slot();
      try {
        grant(granted.release);
      } catch (err) {
        granted.release();
        throw err;
      }
    };
    waiter.timer = setTimeout(() => {
      this.#leave(waiter);
      this.shed.queue_timeout++;
      shed("queue_timeout");
    }, this.#queueTimeoutMs);
    this.#queue.push(waiter);
    this.#queued++;
    return {
      release: () => {
        if (slot !== undefined) slot.release();
        else this.#leave(waiter);
      },
    };
  }

  /** A granted slot; releasing it passes it to the next waiter. */
  #slot(): Ticket {
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#active--;
        this.#next();
      },
    };
  }

  /** Takes `waiter` out of the queue if it is still there. */
  #leave(waiter: Waiter): void {
    if (waiter.done) return;
    waiter.done = true;
    clearTimeout(waiter.timer);
    this.#queued--;
  }

  /** Grants free slots to waiters, oldest first. */
  #next(): void {
    while (this.#active < this.maxConcurrent && this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined;
      if (waiter.done) continue;
      this.#leave(waiter);
      this.#active++;
      waiter.grant();
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

const NOTHING: Ticket = Object.freeze({ release: () => {} });
