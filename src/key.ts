/**
 * The collapse key: which calls may share one answer.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Metadata keys that are always part of the key: callers with different credentials never share. */
export const DEFAULT_KEY_HEADERS: readonly string[] = ["authorization"];

/**
 * SHA-256 over the method, the values of the key metadata and the (decompressed) request message, as hex.
 *
 * Every field is length-prefixed, so no two different inputs produce the same byte stream. A key header
 * that is absent hashes differently from one that is present but empty. `node:crypto` is used rather than
 * Web Crypto: measured on Deno 2.8.3 (see bench/key_bench.ts) the synchronous hash is ~70x faster for
 * small messages, and this runs once per request on the hot path.
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
  const hash = createHash("sha256");
  const prefix = new Uint8Array(4);
  const view = new DataView(prefix.buffer);
  const field = (bytes: Uint8Array | string) => {
    const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    view.setUint32(0, data.byteLength);
    hash.update(prefix);
    hash.update(data);
  };
  field(method);
  for (const value of keyValues) {
    if (value === undefined) {
      view.setUint32(0, 0xffffffff);
      hash.update(prefix);
    } else field(value);
  }
  field(message);
  return hash.digest("hex");
}
