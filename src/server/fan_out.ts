/**
 * Fan-out pacing: at most {@linkcode TURN_EVENTS} answer events are written in one synchronous run; the
 * rest wait their turn, in order, and leave {@linkcode TURN_EVENTS} per `setImmediate`.
 *
 * A flight hands its answer to every subscriber in one loop. For a herd of 10,000 callers that loop made
 * 30,000 stream writes before the event loop could flush any of them (src/wire/cork.ts), so the first caller
 * heard back only once the last answer had been written, and nothing else was served meanwhile: a health
 * check sent during the herd waited up to 1.0–1.4 s (paced: 0.38–0.41 s). Paced, each slice leaves while the
 * next is written. Measured with `deno run -A bench/load.ts --only herd --no-nginx --proxy-entry …`, four
 * runs each, alternating with the unpaced proxy (2026-12-02): first answer at 2.17–2.36 s against 2.63–3.12
 * s, last at 2.76–3.06 s against 2.97–3.45 s, peak RSS alike (197–206 against 198–204 MB). Slices of 1,024
 * events answered sooner too (2.45–2.53 s) but peaked 12–19 MB higher; 256 peaked about 5 MB higher.
 *
 * The order is one queue for every call: once anything waits, whatever comes next waits behind it, so each
 * call still gets its events in order and its `end()` after them. A call that finished meanwhile (its
 * client left, its deadline passed) ignores what it is handed later. Under unique keys a read from the
 * backend that carries many answers does fill a slice; the rest then leave a turn later, with no more writes.
 * `bench/load.ts --only a,d` and `--only b,c`, two runs each against the unpaced proxy, moved nothing beyond
 * the runs' spread: CPU per cache hit 1.22x and 1.23x the echo server's (before: 1.21x, 1.30x), per miss
 * 1.30x and 1.68x the relay's (before: 1.61x, 1.53x).
 *
 * @module
 */

import type { ResponseEvent } from "../wire/response.ts";

/** Events (headers, a message, a status: three per answer) written in one synchronous run, at most. An end
 * is not counted, but waits its turn like the rest. */
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
