/**
 * HTTP/2 written by hand for the fuzz-case library (see `tests/_fuzz.ts`): the connection preface, frame
 * types and flags, frames (whose length field may lie), HPACK literal header blocks, HEADERS split into
 * CONTINUATIONs; and {@linkcode rawH2Unary}, one well-formed unary call over a plain TCP socket. The raw
 * HTTP/2 case generator built on these is `tests/_fuzz_h2_case.ts`.
 *
 * @module
 */

import * as net from "node:net";
import { concat, GRPC, grpcFrame, Rng } from "./_fuzz_core.ts";

// ---------------------------------------------------------------------------------------------------------
// HTTP/2 frames

export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const END_STREAM = 0x1;
export const ACK = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY_FLAG = 0x20;
const MAX_FRAME_PAYLOAD = 16_384;

/** An HTTP/2 frame; `declared` lies about the payload length when given. */
export function h2Frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
  declared?: number,
): Uint8Array {
  const out = new Uint8Array(9 + payload.byteLength);
  const length = (declared ?? payload.byteLength) & 0xffffff;
  out[0] = length >>> 16;
  out[1] = (length >>> 8) & 0xff;
  out[2] = length & 0xff;
  out[3] = type & 0xff;
  out[4] = flags & 0xff;
  new DataView(out.buffer).setUint32(5, stream >>> 0);
  out.set(payload, 9);
  return out;
}

export function u32s(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(i * 4, v >>> 0));
  return out;
}

/** An HPACK integer with an `n`-bit prefix, the rest of the first byte being `high` (RFC 7541 §5.1). */
function hpackInt(value: number, n: number, high: number): number[] {
  const limit = (1 << n) - 1;
  if (value < limit) return [high | value];
  const out = [high | limit];
  value -= limit;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function hpackString(text: string): number[] {
  const bytes = [...text].flatMap((ch) => {
    const code = ch.charCodeAt(0);
    return code < 256 ? [code] : [...new TextEncoder().encode(ch)];
  });
  return [...hpackInt(bytes.length, 7, 0), ...bytes];
}

/** A header block of literals (no Huffman), in one of the three literal representations. */
export function hpackBlock(rng: Rng, fields: readonly (readonly [string, string])[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    if (name === ":method" && value === "POST" && rng.chance(0.5)) out.push(0x83);
    else if (name === ":scheme" && value === "http" && rng.chance(0.5)) out.push(0x86);
    else out.push(rng.pick([0x00, 0x10, 0x40]), ...hpackString(name), ...hpackString(value));
  }
  return Uint8Array.from(out);
}

/** HEADERS (+ CONTINUATIONs when the block is larger than a frame) for `block` on `stream`. */
export function headerFrames(block: Uint8Array, stream: number, flags: number): Uint8Array[] {
  if (block.byteLength <= MAX_FRAME_PAYLOAD) {
    return [h2Frame(FrameType.HEADERS, flags | END_HEADERS, stream, block)];
  }
  const out = [
    h2Frame(FrameType.HEADERS, flags & ~END_HEADERS, stream, block.subarray(0, MAX_FRAME_PAYLOAD)),
  ];
  for (let at = MAX_FRAME_PAYLOAD; at < block.byteLength; at += MAX_FRAME_PAYLOAD) {
    const last = at + MAX_FRAME_PAYLOAD >= block.byteLength;
    out.push(
      h2Frame(
        FrameType.CONTINUATION,
        last ? END_HEADERS : 0,
        stream,
        block.subarray(at, at + MAX_FRAME_PAYLOAD),
      ),
    );
  }
  return out;
}

/**
 * One well-formed unary call over a plain TCP socket, HTTP/2 written by hand: resolves true once the call's
 * stream ends (its trailers), false on a reset, a closed connection or after `timeoutMs`; then destroys the
 * socket. For measuring the proxy's side of a connection: unlike node:http2's client, a node:net socket
 * leaves nothing behind in this process once closed.
 */
export function rawH2Unary(
  port: number,
  path: string,
  message: Uint8Array,
  timeoutMs = 5_000,
): Promise<boolean> {
  const block = hpackBlock(new Rng(1), [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "127.0.0.1"],
    ["content-type", GRPC],
    ["te", "trailers"],
  ]);
  const request = concat([
    PREFACE,
    h2Frame(FrameType.SETTINGS, 0, 0, new Uint8Array()),
    ...headerFrames(block, 1, 0),
    h2Frame(FrameType.DATA, END_STREAM, 1, grpcFrame(0, message)),
  ]);
  const socket = net.connect({ port, host: "127.0.0.1" });
  return new Promise<boolean>((resolve) => {
    let pending: Uint8Array = new Uint8Array();
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ended);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("error", () => finish(false));
    socket.on("close", () => finish(false));
    socket.on("data", (chunk: Uint8Array) => {
      pending = concat([pending, chunk]);
      while (pending.byteLength >= 9) {
        const length = (pending[0] << 16) | (pending[1] << 8) | pending[2];
        if (pending.byteLength < 9 + length) return;
        const [type, flags] = [pending[3], pending[4]];
        const stream = new DataView(pending.buffer, pending.byteOffset + 5, 4).getUint32(0) & 0x7fffffff;
        pending = pending.subarray(9 + length);
        if (stream === 1 && (type === FrameType.HEADERS || type === FrameType.DATA) && (flags & END_STREAM)) {
          return finish(true);
        }
        if (type === FrameType.GOAWAY || (stream === 1 && type === FrameType.RST_STREAM)) {
          return finish(false);
        }
      }
    });
    socket.write(request);
  });
}
