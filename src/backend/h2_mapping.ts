/**
 * How a collapsed call maps onto an HTTP/2 stream to the backend and back: the request headers sent (the
 * caller's, minus pseudo and per-hop headers), and the gRPC status of a stream that ended without one, as
 * the gRPC spec says (doc/http-grpc-status-mapping.md) and grpc-js reports it: an HTTP status other than
 * 200, a stream reset by the backend, and whether a stream was refused before the backend processed it
 * (safe to send again).
 *
 * @module
 */

import * as http2 from "node:http2";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { withoutHopHeaders } from "../wire/response.ts";

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
} = http2.constants;

/** The gRPC status for an HTTP status other than 200 (gRPC's http-grpc-status-mapping). */
export function statusForHttp(httpStatus: number): StatusCode {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/** The gRPC status for a stream reset by the backend without a status (as grpc-js reports it). */
export function statusForReset(rstCode: number): StatusCode {
  switch (rstCode) {
    case NGHTTP2_REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case NGHTTP2_CANCEL:
      return Status.CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}

/** Whether a stream ended unprocessed: refused by the backend, or cut off by its GOAWAY. */
export function wasRefused(stream: http2.ClientHttp2Stream, error: Error | undefined): boolean {
  return stream.rstCode === NGHTTP2_REFUSED_STREAM ||
    (error as { code?: string } | undefined)?.code === "ERR_HTTP2_GOAWAY_SESSION";
}

/** Caller headers → request headers for the backend: pseudo and per-hop headers dropped, the rest as is. */
export function forwardedHeaders(
  method: string,
  caller: IncomingHttpHeaders,
  traceparent?: string,
): OutgoingHttpHeaders {
  const out = withoutHopHeaders(caller);
  if (traceparent !== undefined) out["traceparent"] = traceparent;
  out[":method"] = "POST";
  out[":path"] = method;
  out["content-type"] = "application/grpc";
  out["te"] = "trailers";
  out["grpc-accept-encoding"] = "identity,deflate,gzip";
  out["user-agent"] = "collapser";
  return out;
}
