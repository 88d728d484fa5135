/**
 * The collapse key: which calls may share one answer.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Metadata keys that are always part of the key: callers with different credentials never share. */
export const DEFAULT_KEY_HEADERS: readonly string[] = ["authorization"];

const encoder = new TextEncoder();
/** Marks an absent key header; a present one has a length prefix < 2^32 - 1. */
const ABSENT = 0xffffffff;
/** Reused between calls (the hash is synchronous, so there is no interleaving); grows when needed. */
let scratch = new Uint8Array(4096);
let view = new DataView(scratch.buffer);

/**
 * SHA-256 over the method, the values of the key metadata and the (decompressed) request message, as hex.
 *
 * Every field is length-prefixed, so no two different inputs produce the same byte stream; a key header
 * that is absent hashes differently from one that is present but empty. The fields are laid out in one
 * reused buffer and hashed with a single `update`: on Deno every allocation and native call here costs
 * about a microsecond (see bench/key_bench.ts). `node:crypto` rather than Web Crypto: the synchronous hash
 * is several times faster for small messages and this runs once per request.
 *
 * @param method the request's `:path`, e.g. `/pkg.Service/Method`
 * @param keyValues the value of each key header, in a fixed order, undefined when absent
 * @param message the request message bytes
 */
export function collapseKey(
  method: string,
  keyValues: readonly (string | undefined)[],
  message: Uint8Array,
): string {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  let bound = 8 + method.length * 3 + message.byteLength;
  for (const value of keyValues) bound += 4 + (value === undefined ? 0 : value.length * 3);
  if (bound > scratch.byteLength) {
    scratch = new Uint8Array(Math.max(bound, scratch.byteLength * 2));
    view = new DataView(scratch.buffer);
  }
  let offset = putString(0, method);
  for (const value of keyValues) {
    if (value === undefined) {
      view.setUint32(offset, ABSENT);
      offset += 4;
    } else offset = putString(offset, value);
  }
  view.setUint32(offset, message.byteLength);
  scratch.set(message, offset + 4);
  offset += 4 + message.byteLength;
  return createHash("sha256").update(scratch.subarray(0, offset)).digest("hex");
}

function putString(offset: number, value: string): number {
  const { written } = encoder.encodeInto(value, scratch.subarray(offset + 4));
  view.setUint32(offset, written);
  return offset + 4 + written;
}
