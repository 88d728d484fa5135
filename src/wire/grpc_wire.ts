/**
 * The parts of the gRPC-over-HTTP/2 wire format the proxy speaks itself: status codes, the 5-byte
 * length-prefixed message framing, `grpc-timeout` and `grpc-message` encoding.
 *
 * See https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
 *
 * @module
 */

import { gunzipSync, inflateSync } from "node:zlib";

/** gRPC status codes (the numbers are the protocol's). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC status code. */
export type StatusCode = typeof Status[keyof typeof Status];

/** Length of the prefix in front of every gRPC message: 1 flag byte + 4 length bytes. */
export const FRAME_HEADER_BYTES = 5;

/** Default largest message the proxy accepts from a client, as grpc's own default: 4 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** A protocol violation by the peer; `code` is the status to answer with. */
export class GrpcWireError extends Error {
  /** The gRPC status that describes this error. */
  readonly code: StatusCode;
  constructor(code: StatusCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GrpcWireError";
    this.code = code;
  }
}

/** Prefixes one message with its uncompressed 5-byte gRPC frame header. */
export function encodeFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + message.byteLength);
  new DataView(out.buffer).setUint32(1, message.byteLength);
  out.set(message, FRAME_HEADER_BYTES);
  return out;
}

/**
 * `message` as an uncompressed frame. A message decoded from a whole frame (most requests) still has its own
 * header in the 5 bytes before it: then the frame is those bytes, viewed, not copied. Anything else gets a
 * new header and a copy ({@linkcode encodeFrame}). Either way the bytes are the same.
 */
export function frameOf(message: Uint8Array): Uint8Array {
  const offset = message.byteOffset;
  if (offset >= FRAME_HEADER_BYTES) {
    const frame = new Uint8Array(
      message.buffer,
      offset - FRAME_HEADER_BYTES,
      FRAME_HEADER_BYTES + message.byteLength,
    );
    if (frame[0] === 0 && frameLength(frame) === message.byteLength) return frame;
  }
  return encodeFrame(message);
}

/** The message length in a frame header (big-endian, bytes 1–4), read without a DataView. */
function frameLength(head: Uint8Array): number {
  return ((head[1] << 24) | (head[2] << 16) | (head[3] << 8) | head[4]) >>> 0;
}

/** `frame` itself, or a copy when it is a small part of a larger buffer (which keeping it would pin). */
function keepable(frame: Uint8Array): Uint8Array {
  return frame.byteLength * 2 >= frame.buffer.byteLength ? frame : frame.slice();
}

/**
 * Splits a byte stream into gRPC messages, however the chunks fall, and undoes per-message compression.
 *
 * @example
 * ```ts
 * const decoder = new FrameDecoder({ encoding: undefined });
 * for (const message of decoder.push(chunk)) use(message);
 * decoder.finish(); // throws if the stream ended inside a message
 * ```
 */
export class FrameDecoder {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  readonly #maxMessageBytes: number;
  readonly #encoding: string | undefined;

  /**
   * @param options.encoding the request's `grpc-encoding` (`gzip`, `deflate`, `identity` or none)
   * @param options.maxMessageBytes largest message accepted, after decompression
   *   @default {DEFAULT_MAX_MESSAGE_BYTES}
   */
  constructor(options: { encoding?: string; maxMessageBytes?: number } = {}) {
    this.#encoding = options.encoding;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** Adds a chunk and returns the messages it completed (decompressed). */
  push(chunk: Uint8Array): Uint8Array[] {
    return this.#push(chunk, false);
  }

  /**
   * Adds a chunk and returns the messages it completed as uncompressed frames (header and message), ready
   * to send on. An uncompressed frame is returned as it came, without a copy, unless it is a small part of a
   * larger buffer (which keeping it would pin): a collapsed call's answer is passed on and cached as the
   * backend's own bytes (the re-framing copy was 1% of a cache miss's CPU, and its garbage).
   */
  pushFrames(chunk: Uint8Array): Uint8Array[] {
    return this.#push(chunk, true);
  }

  #push(chunk: Uint8Array, frames: boolean): Uint8Array[] {
    if (this.#pendingBytes === 0 && chunk.byteLength >= FRAME_HEADER_BYTES && chunk[0] === 0) {
      // The common case, a unary request or answer: one whole uncompressed message in one chunk.
      const length = frameLength(chunk);
      if (chunk.byteLength === FRAME_HEADER_BYTES + length && length <= this.#maxMessageBytes) {
        return [frames ? keepable(chunk) : chunk.subarray(FRAME_HEADER_BYTES)];
      }
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    const out: Uint8Array[] = [];
    while (this.#pendingBytes >= FRAME_HEADER_BYTES) {
      const head = this.#peek(FRAME_HEADER_BYTES);
      const flag = head[0];
      const length = frameLength(head);
      if (length > this.#maxMessageBytes) {
        throw new GrpcWireError(
          Status.RESOURCE_EXHAUSTED,
          `Received message larger than max (${length} vs. ${this.#maxMessageBytes})`,
        );
      }
      if (this.#pendingBytes < FRAME_HEADER_BYTES + length) break;
      const frame = this.#take(FRAME_HEADER_BYTES + length);
      if (!frames) out.push(this.#decode(flag, frame.subarray(FRAME_HEADER_BYTES)));
      else if (flag !== 0) out.push(encodeFrame(this.#decode(flag, frame.subarray(FRAME_HEADER_BYTES))));
      else out.push(keepable(frame));
    }
    return out;
  }

  /** Throws unless the bytes seen so far ended on a message boundary. */
  finish(): void {
    if (this.#pendingBytes !== 0) {
      throw new GrpcWireError(
        Status.INTERNAL,
        `Stream ended inside a message (${this.#pendingBytes} bytes left)`,
      );
    }
  }

  #decode(flag: number, payload: Uint8Array): Uint8Array {
    if (flag === 0) return payload;
    if (flag !== 1) throw new GrpcWireError(Status.INTERNAL, `Invalid message flag ${flag}`);
    let inflated: Uint8Array;
    // zlib refuses a non-finite maxOutputLength.
    const limit = Number.isFinite(this.#maxMessageBytes) ? { maxOutputLength: this.#maxMessageBytes } : {};
    try {
      if (this.#encoding === "gzip") {
        inflated = gunzipSync(payload, limit);
      } else if (this.#encoding === "deflate") {
        inflated = inflateSync(payload, limit);
      } else {
        throw new GrpcWireError(
          Status.INTERNAL,
          `Compressed message with grpc-encoding ${this.#encoding ?? "(none)"}`,
        );
      }
    } catch (err) {
      if (err instanceof GrpcWireError) throw err;
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
        throw new GrpcWireError(
          Status.RESOURCE_EXHAUSTED,
          `Received message larger than max after decompression (> ${this.#maxMessageBytes})`,
        );
      }
      throw new GrpcWireError(Status.INTERNAL, `Cannot decompress message: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new Uint8Array(inflated.buffer, inflated.byteOffset, inflated.byteLength);
  }

  #peek(n: number): Uint8Array {
    const first = this.#pending[0];
    if (first.byteLength >= n) return first;
    return this.#concat(n, false);
  }

  #take(n: number): Uint8Array {
    const first = this.#pending[0];
    if (first.byteLength === n) {
      this.#pending.shift();
      this.#pendingBytes -= n;
      return first;
    }
    if (first.byteLength > n) {
      this.#pending[0] = first.subarray(n);
      this.#pendingBytes -= n;
      return first.subarray(0, n);
    }
    return this.#concat(n, true);
  }

  #concat(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let offset = 0;
    let i = 0;
    while (offset < n) {
      const part = this.#pending[i];
      const use = Math.min(part.byteLength, n - offset);
      out.set(part.subarray(0, use), offset);
      offset += use;
      if (consume) {
        if (use === part.byteLength) this.#pending.shift();
        else this.#pending[0] = part.subarray(use);
      } else i++;
    }
    if (consume) this.#pendingBytes -= n;
    return out;
  }
}

const TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * Parses a `grpc-timeout` header value (`100m`, `5S`, at most 8 digits and one unit) to milliseconds.
 * Returns undefined when the header is absent; throws {@linkcode GrpcWireError} when it is malformed.
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) {
    throw new GrpcWireError(Status.INTERNAL, `Invalid grpc-timeout header: ${JSON.stringify(value)}`);
  }
  return Number(match[1]) * TIMEOUT_UNIT_MS[match[2]];
}

/** Percent-encodes a status message for the `grpc-message` trailer, as the spec asks. */
export function encodeGrpcMessage(message: string): string {
  // Printable ASCII except '%' goes as is; everything else is percent-encoded UTF-8.
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Decodes a percent-encoded `grpc-message` value; malformed escapes are kept as they are. */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    // decodeURIComponent rejects a lone '%' or bytes that are not UTF-8: decode escape by escape instead.
    const bytes: number[] = [];
    for (let i = 0; i < value.length; i++) {
      const hex = value[i] === "%" ? value.slice(i + 1, i + 3) : "";
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else bytes.push(value.charCodeAt(i) & 0xff);
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
}
