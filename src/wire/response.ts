/**
 * A gRPC response as the proxy passes it on: wire-ready events (headers, framed messages, the status with its
 * trailers) that can be replayed to many callers at no cost, and the headers that describe one hop rather
 * than the call. Both backend clients produce these events, and the server writes them.
 *
 * @module
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import type { SpanContext } from "@opentelemetry/api";
import { encodeGrpcMessage, type StatusCode } from "./grpc_wire.ts";

/** The last part of a gRPC response. */
export interface StatusEvent {
  readonly type: "status";
  readonly code: StatusCode;
  readonly details: string;
  /** Trailing metadata plus `grpc-status` and `grpc-message`, ready to send. */
  readonly trailers: OutgoingHttpHeaders;
}

/**
 * One part of a gRPC response, already in wire form so replaying it to many callers costs nothing. An
 * `origin` event is not sent: it names the backend call's trace span, so that followers and cache hits can
 * link to it.
 */
export type ResponseEvent =
  | { readonly type: "origin"; readonly spanContext: SpanContext }
  | {
    readonly type: "headers";
    readonly headers: OutgoingHttpHeaders;
    /** Set on the headers of an answer served stale because the backend failed (stale-if-error). */
    readonly stale?: true;
    /** With `stale`: the failure it stands in for, and its freshness left in ms (negative), for `cache-status`. */
    readonly staleness?: { readonly code: StatusCode; readonly freshMs: number };
  }
  | { readonly type: "message"; readonly frame: Uint8Array }
  | StatusEvent;

/** Receives one call's response as it arrives. */
export interface ResponseSink {
  /** Each event in order; the `status` event is the last. */
  (event: ResponseEvent): void;
}

/** Request and response headers that describe one hop's HTTP/2 stream, not the call: never forwarded. */
export const HOP_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "content-length",
  "te",
  "user-agent",
  "host",
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "date",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-status",
  "grpc-message",
]);

/**
 * Response headers that describe one hop: as {@linkcode HOP_HEADERS}, but `content-type` passes (the
 * backend's `application/grpc+proto` reaches the caller as it was sent).
 */
export const RESPONSE_HOP_HEADERS: ReadonlySet<string> = new Set(
  [...HOP_HEADERS].filter((name) => name !== "content-type"),
);

/** Headers without pseudo-headers and per-hop headers (`hop`), values as they came. */
export function withoutHopHeaders(
  headers: IncomingHttpHeaders,
  hop: ReadonlySet<string> = HOP_HEADERS,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (key.charCodeAt(0) === 0x3a /* ':' */ || hop.has(key)) continue;
    const value = headers[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** The first value of a header that may have been repeated. */
export function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Builds the final event of a call. */
export function statusEvent(
  code: StatusCode,
  details: string,
  metadata?: OutgoingHttpHeaders,
): StatusEvent {
  const trailers: OutgoingHttpHeaders = { ...metadata };
  trailers["grpc-status"] = String(code);
  if (details) trailers["grpc-message"] = encodeGrpcMessage(details);
  return { type: "status", code, details, trailers };
}

/** A backend call in progress. */
export interface UpstreamCall {
  /** Cancels the call; no event is reported after this. */
  cancel(): void;
}

/** A passthrough call: messages go up as they come, responses are reported to the sink. */
export interface UpstreamStream extends UpstreamCall {
  /** Sends one message; returns false when the caller should wait for `onDrain` before sending more. */
  write(message: Uint8Array): boolean;
  /** Half-closes: no more messages. */
  end(): void;
  /** Called once when writing may go on after `write` returned false. */
  onDrain(listener: () => void): void;
  /** Stops reading responses (HTTP/2 flow control then holds the backend back) until `resume`. */
  pause(): void;
  /** Reads responses again after `pause`. */
  resume(): void;
}

/** Bytes a cached event holds, for the cache's byte bound (messages dominate; headers counted roughly). */
export function responseEventBytes(event: ResponseEvent): number {
  return event.type === "message" ? event.frame.byteLength : 128;
}
