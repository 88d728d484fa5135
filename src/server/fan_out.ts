/**
 * Fan-out pacing: at most {@linkcode TURN_EVENTS} answer events are written in one synchronous run; the
 * rest wait their turn, in order, and leave {@linkcode TURN_EVENTS} per `setImmediate`.
 *
 * A flight hands its answer to every subscriber in one loop. For a herd of 10,000 callers that loop wrote
 * 30,000 stream operations before the event loop could flush any of them: every answer sat corked in the
 * sockets' buffers at once, and the first caller heard back only when the last had been written. Measured
 * with 10,000 identical calls held for 1 s (`bench/load.ts --only herd`): RSS climbed another 35 MB after the
 * answer came, and the first caller got it 1.5 s after the backend gave it. Paced, each slice is flushed
 * (src/wire/cork.ts) and its garbage collected before the next is written.
 *
 * The order is one queue for every call: once anything waits, whatever comes next waits behind it, so each
 * call still gets its events in order and its `end()` after them. A call that finished meanwhile (its
 * client left, its deadline passed) ignores what it is handed later. Ordinary load never fills a slice: a
 * call's few events are delivered as they come, with one microtask per synchronous run to reset the count.
 *
 * @module
 */

import type { ResponseEvent } from "../wire/response.ts";

/** Events (headers, a message, a status: three per answer) written in one synchronous run, at most. An end
 * is not counted, but waits its turn like the rest. */
export const TURN_EVENTS = 1_024;

/** Takes a paced event; `undefined` stands for the end of the shared answer. Must not throw. */
export interface Paced {
  deliver(event: ResponseEvent | undefined): void;
}

let spent = 0;
let resetArmed = false;
/** Waiting calls and their events, flat: call, event, call, event, … from `head` on. */
let waiting: (Paced | ResponseEvent | undefined)[] = [];
let head = 0;
let drainArmed = false;
/** Events that ever waited. */
let waited = 0;

function reset(): void {
  spent = 0;
  resetArmed = false;
}

/**
 * Whether `call` may write `event` now. If not, it is queued and handed to `call.deliver` in a later turn,
 * after everything queued before it.
 */
export function paced(call: Paced, event: ResponseEvent | undefined): boolean {
  if (head === waiting.length && (event === undefined || spent < TURN_EVENTS)) {
    if (event !== undefined) spent++;
    if (!resetArmed) {
      resetArmed = true;
      queueMicrotask(reset);
    }
    return true;
  }
  waiting.push(call, event);
  waited++;
  if (!drainArmed) {
    drainArmed = true;
    setImmediate(drain);
  }
  return false;
}

/** How many events wait now, and how many ever waited (ends included). */
export function fanOutStats(): { waiting: number; waited: number } {
  return { waiting: (waiting.length - head) / 2, waited };
}

function drain(): void {
  drainArmed = false;
  const queue = waiting;
  const end = Math.min(queue.length, head + 2 * TURN_EVENTS);
  while (head < end) {
    const call = queue[head] as Paced;
    const event = queue[head + 1] as ResponseEvent | undefined;
    queue[head] = queue[head + 1] = undefined;
    head += 2;
    try {
      call.deliver(event);
    } catch {
      // A call that fails here has only its own answer to lose.
    }
  }
  if (head < queue.length) {
    drainArmed = true;
    setImmediate(drain);
  } else {
    waiting = [];
    head = 0;
  }
}
