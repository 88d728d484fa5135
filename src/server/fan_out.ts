/**
 * Fan-out pacing: at most {@linkcode TURN_EVENTS} events of followers' answers are written in one
 * synchronous run; the rest wait their turn, in order, and leave a slice per `setImmediate`
 * ({@linkcode TURN_EVENTS}, or a {@linkcode DRAIN_TURNS}th of what waits if that is more). Only followers
 * are paced (DownstreamCall decides): a leader's answer and a cache hit go out at once, so a herd's queue
 * never holds up a call that shares nothing with it, and under unique keys, where one read from the backend
 * can carry a hundred answers, nothing waits.
 *
 * A flight hands its answer to every subscriber in one loop. For a herd of 10,000 callers that loop made
 * 30,000 stream writes before the event loop could flush any of them (src/wire/cork.ts): even the leader
 * heard back only once the last follower's answer had been written, and nothing else was served meanwhile.
 * Measured with `deno run -A bench/load.ts --only herd --no-nginx --proxy-entry …`, alternating with the
 * unpaced proxy (2026-12-02, two runs each): first answer at 1.70–1.72 s against 2.58–2.78 s, last at
 * 2.77–2.96 s against 3.07–3.12 s, peak RSS 197.7–202.9 against 201.9–206.8 MB. Slices of 1,024 events
 * peaked 12–19 MB higher than unpaced; a 32nd of the queue, 5–10 MB higher. A load where every call is a
 * follower (`--only d --proxy-args="--cache-ttl 0ms"`) ran at 2,944 req/s paced against 2,901 unpaced.
 *
 * The order is one queue for every call: once anything waits, whatever comes next waits behind it, so each
 * call still gets its events in order and its `end()` after them. A call that finished meanwhile (its
 * client left, its deadline passed) ignores what it is handed later. Followers get the headers of a herd's
 * answer first, all of them, then its message, then its status; a follower whose own deadline passes in
 * between ends with DEADLINE_EXCEEDED, as it would have waiting for the backend.
 *
 * @module
 */

import type { ResponseEvent } from "../wire/response.ts";

/**
 * Events (headers, a message, a status: three per answer) written in one synchronous run, at most. An end is
 * not counted, but waits its turn like the rest.
 */
export const TURN_EVENTS = 64;

/** A slice is at least this share of what waits (1/128): see {@linkcode drain}. */
export const DRAIN_TURNS = 128;

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

/**
 * Hands out one turn's slice: {@linkcode TURN_EVENTS}, or a {@linkcode DRAIN_TURNS}th of what waits if that
 * is more, so that a queue fed faster than one slice a turn (followers of a stream, or a load where most calls
 * are followers) still empties geometrically instead of growing.
 */
function drain(): void {
  const queue = waiting;
  const slice = Math.max(TURN_EVENTS, Math.ceil((queue.length - head) / 2 / DRAIN_TURNS));
  const end = Math.min(queue.length, head + 2 * slice);
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
    if (head >= 2 * 4_096 && head * 2 >= queue.length) {
      // A queue that never empties must not keep what it has handed out.
      waiting = queue.slice(head);
      head = 0;
    }
    setImmediate(drain); // still armed: a paced() during the loop above did not arm another
  } else {
    waiting = [];
    head = 0;
    drainArmed = false;
  }
}
