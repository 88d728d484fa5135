/**
 * SHA-256 for the collapse key: Web Crypto (`crypto.subtle.digest`, asynchronous) vs `node:crypto`
 * (`createHash`, synchronous) vs the project's {@linkcode collapseKey} (`node:crypto` over the length-prefixed
 * method, the request metadata in the key and message, as hex), on request messages of 100 B, 4 KiB and 1 MiB.
 *
 * `createHash` and Web Crypto return raw digests and the one-shot `hash()` hex; `collapseKey` adds its
 * prefixes and the hex encoding.
 *
 * @module
 */

import { createHash, hash } from "node:crypto";
import { collapseKey } from "../src/policy/key.ts";
import { METHOD, REQUEST_HEADERS } from "./_fixtures.ts";

/** Fills `bytes` with random data; getRandomValues takes at most 64 KiB at a time. */
function randomBytes(bytes: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  for (let offset = 0; offset < bytes; offset += 65_536) {
    crypto.getRandomValues(out.subarray(offset, offset + 65_536));
  }
  return out;
}

const SIZES: readonly [label: string, bytes: number][] = [
  ["100 B", 100],
  ["4 KiB", 4 * 1024],
  ["1 MiB", 1024 * 1024],
];

for (const [label, bytes] of SIZES) {
  const payload = randomBytes(bytes);
  const group = `sha256 ${label}`;

  Deno.bench({
    name: `node:crypto createHash("sha256") ${label}`,
    group,
    baseline: true,
    fn() {
      createHash("sha256").update(payload).digest();
    },
  });

  Deno.bench({
    name: `node:crypto hash("sha256", …, "hex") one-shot ${label}`,
    group,
    fn() {
      hash("sha256", payload, "hex");
    },
  });

  Deno.bench({
    name: `crypto.subtle.digest("SHA-256") ${label}`,
    group,
    async fn() {
      await crypto.subtle.digest("SHA-256", payload);
    },
  });

  Deno.bench({
    name: `collapseKey ${label}`,
    group,
    fn() {
      collapseKey(METHOD, REQUEST_HEADERS, payload);
    },
  });
}
