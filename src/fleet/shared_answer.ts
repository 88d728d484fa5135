/**
 * A finished answer (the events of a collapsed call's recording) as bytes, so one proxy can hand it to
 * others through Redis, and back. Only complete, first-hand answers travel: response headers, the response
 * messages and the final status. A trace origin stays with the proxy that made the call, and an answer
 * served stale (stale-if-error) is never passed on as if it were fresh.
 *
 * Layout: `u32 length` of a JSON head `{ h: headers, c: code, d: details, t: trailers, m: [frame lengths],
 * k: ms the backend call took, s: the fleet purge number its flight started with, a: its age when stored
 * in ms, l: the TTL it was stored for in ms }` (s, a and l optional: an answer without them predates every
 * purge),
 * the head, then the message frames (already in gRPC wire form) back to back. Frames go as raw bytes
 * rather than base64 inside the JSON: most of an answer is its messages.
 *
 * @module
 */

import type { OutgoingHttpHeaders } from "node:http2";
import type { StatusCode } from "../wire/grpc_wire.ts";
import type { ResponseEvent } from "../wire/response.ts";

interface Head {
  /** Response headers; null for a trailers-only answer. */
  h: OutgoingHttpHeaders | null;
  c: number;
  d: string;
  t: OutgoingHttpHeaders;
  m: number[];
  /** How long the backend call that produced it took, in ms. */
  k: number;
  /** The fleet's purge number when its flight started (purges.ts). */
  s?: number;
  /** Its age when stored, in ms (the backend's `age`). */
  a?: number;
  /** The TTL it was stored for in Redis, in ms. */
  l?: number;
}

/** What a shared answer says of itself besides its events. */
export interface AnswerStamp {
  /** The fleet's purge number when its flight started: later purges may name it. @default {0} */
  readonly stamp: number;
  /** Its age when stored, in ms. @default {0} */
  readonly ageMs: number;
  /** The TTL it was stored for in Redis, in ms (its age there is this less what is left). */
  readonly ttlMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The recording `events` as bytes, or undefined when it is not an answer that may be shared: no final
 * status, or served stale.
 */
export function encodeAnswer(
  events: readonly ResponseEvent[],
  tookMs: number,
  stamp?: AnswerStamp,
): Uint8Array | undefined {
  let headers: OutgoingHttpHeaders | null = null;
  const frames: Uint8Array[] = [];
  let status: Extract<ResponseEvent, { type: "status" }> | undefined;
  for (const event of events) {
    if (event.type === "headers") {
      if (event.stale) return undefined;
      headers = event.headers;
    } else if (event.type === "message") frames.push(event.frame);
    else if (event.type === "status") status = event;
  }
  if (status === undefined) return undefined;
  const head: Head = {
    h: headers,
    c: status.code,
    d: status.details,
    t: status.trailers,
    m: frames.map((frame) => frame.byteLength),
    k: tookMs,
  };
  if (stamp !== undefined) {
    head.s = stamp.stamp;
    head.a = stamp.ageMs;
    if (stamp.ttlMs !== undefined) head.l = stamp.ttlMs;
  }
  const json = encoder.encode(JSON.stringify(head));
  let size = 4 + json.byteLength;
  for (const frame of frames) size += frame.byteLength;
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, json.byteLength);
  out.set(json, 4);
  let offset = 4 + json.byteLength;
  for (const frame of frames) {
    out.set(frame, offset);
    offset += frame.byteLength;
  }
  return out;
}

/**
 * The events of an answer made by {@linkcode encodeAnswer}.
 *
 * @throws {RangeError} when `bytes` is not such an answer (truncated, or not this layout)
 */
export function decodeAnswer(
  bytes: Uint8Array,
): { events: ResponseEvent[]; tookMs: number } & AnswerStamp {
  if (bytes.byteLength < 4) throw new RangeError("shared answer: shorter than its head's length");
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + length > bytes.byteLength) throw new RangeError("shared answer: head runs past the end");
  let head: Head;
  try {
    head = JSON.parse(decoder.decode(bytes.subarray(4, 4 + length)));
  } catch (err) {
    throw new RangeError(`shared answer: head is not JSON (${err})`);
  }
  if (
    typeof head !== "object" || head === null || typeof head.c !== "number" || !Array.isArray(head.m) ||
    typeof head.h !== "object" || typeof head.t !== "object" || head.t === null || typeof head.d !== "string"
  ) throw new RangeError("shared answer: head lacks its fields");
  const events: ResponseEvent[] = head.h === null ? [] : [{ type: "headers", headers: head.h }];
  let offset = 4 + length;
  for (const size of head.m) {
    if (!Number.isInteger(size) || size < 0 || offset + size > bytes.byteLength) {
      throw new RangeError("shared answer: a message runs past the end");
    }
    events.push({ type: "message", frame: bytes.slice(offset, offset + size) });
    offset += size;
  }
  if (offset !== bytes.byteLength) throw new RangeError("shared answer: bytes left after the messages");
  events.push({ type: "status", code: head.c as StatusCode, details: head.d, trailers: head.t });
  const number = (value: unknown) => typeof value === "number" && value >= 0 ? value : undefined;
  return {
    events,
    tookMs: number(head.k) ?? 0,
    stamp: number(head.s) ?? 0,
    ageMs: number(head.a) ?? 0,
    ttlMs: number(head.l),
  };
}
