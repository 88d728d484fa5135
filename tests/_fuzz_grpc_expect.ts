/**
 * The oracle of the gRPC-level fuzz cases (see `tests/_fuzz_grpc.ts`): what the gRPC spec and the README say
 * the proxy must answer a complete request with, as far as the request alone decides it. The message framing
 * is decoded here from scratch, independently of `src/wire/grpc_wire.ts`.
 *
 * @module
 */

import { gunzipSync, inflateSync } from "node:zlib";
import { type Expectation, type FuzzTarget, GRPC } from "./_fuzz_core.ts";

/**
 * Odd metadata that HTTP/2 still carries, so that what the proxy decides before calling the backend (415,
 * a bad grpc-timeout or encoding, a malformed frame) is still certain.
 */
export const EARLY_SAFE_METADATA: ReadonlySet<string> = new Set([
  "badBin",
  "binList",
  "upperName",
  "emptyValue",
  "keyHeaders",
]);

/**
 * What the gRPC spec (PROTOCOL-HTTP2.md) and the README say the proxy answers a complete request with, as
 * far as it is certain; undefined when it depends on more than the request (timing, the client library).
 */
export function expectation(request: {
  method: string;
  contentType: string | readonly string[] | undefined;
  timeout: string | undefined;
  encoding: string | undefined;
  pathKind: string;
  /** Which answers the metadata leaves certain: all, those decided before the backend, or none. */
  metadata: "any" | "early" | "none";
  body: Uint8Array;
  target: FuzzTarget;
}): Expectation | undefined {
  const { method, contentType, timeout, encoding, pathKind, metadata, body, target } = request;
  // nghttp2 resets a stream whose :path does not start with "/" before the proxy sees it; a very long or
  // non-ASCII one depends on the client library.
  if (!["unary", "serverStream", "bidi", "clientStream", "health", "unknown"].includes(pathKind)) {
    return undefined;
  }
  if (metadata === "none") return undefined; // the server may refuse the headers at the HTTP/2 level
  if (method !== "POST" || typeof contentType !== "string" || !contentType.startsWith(GRPC)) {
    return { httpStatus: 415 };
  }
  if (timeout !== undefined && !/^\d{1,8}[HMSmun]$/.test(timeout)) return { grpcStatus: 13 };
  if (encoding !== undefined && !["identity", "gzip", "deflate"].includes(encoding)) {
    return { grpcStatus: 12 };
  }
  // A short or zero deadline races the answer; a long one never fires during a case. (Not the longest ones:
  // grpc-js 1.14.7's server truncates a timeout to 32 bits, so a passed-through 99999999M expires at once
  // at the backend itself, proxy or not.)
  if (
    timeout !== undefined &&
    !["5S", "30S", "1H", "1M"].includes(timeout)
  ) {
    return undefined;
  }
  const decoded = referenceDecode(body, encoding, target.maxMessageBytes);
  if (decoded.error !== undefined) {
    // Once a whole message has arrived in an earlier chunk, the call may already be with the backend, which
    // answers an unknown method (and, here, the health service it lacks) at once, and a server stream as
    // soon as it has its message: that answer may beat the error in the bytes still to come.
    const early =
      { unknown: 12, health: 12, serverStream: 0 }[pathKind as "unknown" | "health" | "serverStream"];
    if (early !== undefined && decoded.messages.length > 0) return { anyOf: [decoded.error, early] };
    return { grpcStatus: decoded.error };
  }
  if (metadata === "early") return undefined; // the backend's answer may depend on odd metadata
  const messages = decoded.messages;
  if (pathKind === "unknown") return { grpcStatus: 12 };
  if (pathKind === "unary") {
    return messages.length === 1 ? { grpcStatus: 0, messages } : { notOk: true };
  }
  if (pathKind === "bidi") return { grpcStatus: 0, messages };
  if (pathKind === "serverStream" && messages.length === 1) {
    return { grpcStatus: 0, messages: [Uint8Array.of(0x61), Uint8Array.of(0x62)] };
  }
  return undefined;
}

/** The gRPC message framing, decoded from scratch: the messages, or the status a server must answer. */
function referenceDecode(
  body: Uint8Array,
  encoding: string | undefined,
  max: number,
): { messages: Uint8Array[]; error?: number } {
  const messages: Uint8Array[] = [];
  let at = 0;
  while (body.byteLength - at >= 5) {
    const flag = body[at];
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    if (length > max) return { messages, error: 8 };
    if (body.byteLength - at - 5 < length) break;
    const payload = body.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if (flag === 0) messages.push(payload);
    else if (flag !== 1 || (encoding !== "gzip" && encoding !== "deflate")) return { messages, error: 13 };
    else {
      try {
        const inflate = encoding === "gzip" ? gunzipSync : inflateSync;
        messages.push(new Uint8Array(inflate(payload, { maxOutputLength: max })));
      } catch (err) {
        return { messages, error: (err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? 8 : 13 };
      }
    }
  }
  return at === body.byteLength ? { messages } : { messages, error: 13 };
}
