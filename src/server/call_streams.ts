/**
 * The listeners of a downstream call's HTTP/2 stream, and the per-turn check of calls awaiting END_STREAM.
 *
 * The listeners are module functions, not closures: `this` is the stream, which carries its call under a
 * symbol (as Node's own http2 keeps its state). Three closures and a setImmediate per call were a visible
 * share of the proxy's own garbage on every cache miss (bench/miss-profile.md).
 *
 * @module
 */

import type * as http2 from "node:http2";
import { log } from "../util/log.ts";

/** What the listeners call on the call their stream carries. */
export interface StreamCall {
  /** The stream closed: the client went away (RST_STREAM, connection lost) or the call ended. */
  _closed(): void;
  /** Request bytes. */
  _data(chunk: Uint8Array): void;
  /** The request ended (END_STREAM). */
  _end(): void;
  /** The stream is ready for the trailers of an answer that had headers. */
  _wantTrailers(): void;
  /** The turn its first message came in has passed (see {@linkcode awaitEnd}). */
  _turnPassed(): void;
}

const CALL = Symbol("collapser.downstreamCall");
type TaggedStream = http2.ServerHttp2Stream & { [CALL]?: StreamCall };

/** Lets `stream`'s listeners find `call`. */
export function tagStream(stream: http2.ServerHttp2Stream, call: StreamCall): void {
  (stream as TaggedStream)[CALL] = call;
}

// A call's stream listeners: `this` is the stream, which carries its call.

export function onClose(this: TaggedStream): void {
  const call = this[CALL];
  this[CALL] = undefined; // once: whatever the runtime emits after it finds no call
  call?._closed();
}

export function onData(this: TaggedStream, chunk: Uint8Array): void {
  this[CALL]?._data(chunk);
}

export function onEnd(this: TaggedStream): void {
  this[CALL]?._end();
}

/** Every client stream's errors (they end the call through its `close`). */
export function onError(err: Error): void {
  log.debug("client stream error: {error}", { error: String(err) });
}

export function onWantTrailers(this: TaggedStream): void {
  this[CALL]?._wantTrailers();
}

/**
 * Calls whose first message came without END_STREAM, checked together once this turn has passed (one
 * `setImmediate` per turn, not one per call: it was a timer object and a runtime hop on every miss).
 */
let awaitingEnd: StreamCall[] = [];

export function awaitEnd(call: StreamCall): void {
  if (awaitingEnd.push(call) === 1) setImmediate(checkAwaitingEnd);
}

function checkAwaitingEnd(): void {
  const calls = awaitingEnd;
  awaitingEnd = [];
  for (const call of calls) call._turnPassed();
}
