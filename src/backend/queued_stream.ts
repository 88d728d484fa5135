/**
 * A passthrough call that waits for a concurrency slot (`--max-backend-concurrency`): it opens when the
 * limiter grants one, and what the caller does meanwhile (messages sent, half-close, pause) is kept and
 * replayed onto the real call; a shed call is answered by `shed`, and a caller that gives up while queued
 * gives its place back.
 *
 * @module
 */

import type { Limiter } from "./limiter.ts";
import type { UpstreamStream } from "../wire/response.ts";

/** Opens `open` once `limiter` grants a slot (passing the slot's release); `shed` if it never does. */
export function queuedStream(
  limiter: Limiter,
  open: (release: () => void) => UpstreamStream,
  shed: () => void,
): UpstreamStream {
  let real: UpstreamStream | undefined;
  const pending: Uint8Array[] = [];
  const drains: (() => void)[] = [];
  let ended = false;
  let paused = false;
  const ticket = limiter.acquire((release) => {
    const stream = real = open(release);
    for (const message of pending.splice(0)) stream.write(message);
    if (ended) stream.end();
    if (paused) stream.pause();
    for (const drain of drains.splice(0)) drain();
  }, shed);
  return {
    write: (message) => real ? real.write(message) : (pending.push(message), false),
    end: () => real ? real.end() : ended = true,
    onDrain: (listener) => real ? real.onDrain(listener) : drains.push(listener),
    pause: () => real ? real.pause() : paused = true,
    resume: () => real ? real.resume() : paused = false,
    cancel: () => real ? real.cancel() : ticket.release(),
  };
}
