/**
 * Fan-out pacing: at most {@linkcode TURN_EVENTS} events of followers' answers are written in one
 * synchronous run; the rest wait their turn, in order, and leave {@linkcode TURN_EVENTS} per `setImmediate`.
 * Only followers are paced (DownstreamCall decides): a leader's answer and a cache hit go out at once, so a
 * herd's queue never holds up a call that shares nothing with it, and under unique keys, where one read from
 * the backend can carry a hundred answers, nothing waits.
 *
 * A flight hands its answer to every subscriber in one loop. For a herd of 10,000 callers that loop made
 * 30,000 stream writes before the event loop could flush any of them (src/wire/cork.ts): even the leader
 * heard back only once the last follower's answer had been written, and nothing else was served meanwhile.
 * Measured with `deno run -A bench/load.ts --only herd --no-nginx --proxy-entry …`, three runs each,
 * alternating with the unpaced proxy (2026-12-02): first answer at 1.75–1.78 s against 2.61–2.88 s, last at
 * 2.68–2.89 s against 2.87–3.22 s, peak RSS 192.6–202.0 against 201.6–208.5 MB. A health check sent every 5
 * ms during the herd (an ad-hoc probe on its own connection) waited at most 0.76–0.86 s against 1.00–1.03 s.
 * Slices of 1,024 events peaked 12–19 MB higher than unpaced; 256, about 5 MB higher.
 *
 * The order is one queue for every call: once anything waits, whatever comes next waits behind it, so each
 * call still gets its events in order and its `end()` after them. A call that finished meanwhile (its
 * client left, its deadline passed) ignores what it is handed later. What waits belongs to calls whose
 * streams are open, so the queue is bounded by the calls in flight.
 *
 * @module
 */

import type { ResponseEvent } from "../wire/response.ts";

/**
 * Events (headers, a message, a status: three per answer) written in one synchronous run, at most. An end is
 * not counted, but waits its turn like the rest.
 */
export const TURN_EVENTS = 64;

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
