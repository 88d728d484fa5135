/**
 * The collapse key: which calls may share one answer.
 *
 * Two calls share only if everything the backend could base its answer on is the same: the method, the
 * request message, and the request metadata. So the key covers every metadata entry the backend is sent,
 * except a short, fixed list of per-call entries that cannot change the answer (transport and trace
 * headers) and whatever the operator has declared harmless on purpose (`--ignore-headers`). Sharing is
 * widened by saying so, never by forgetting a header (compare HTTP's `Vary`, which caches must honour).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { hash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http2";
import { HOP_HEADERS } from "../wire/response.ts";

/** Metadata always in the key, whatever is ignored: callers with different credentials never share. */
export const DEFAULT_KEY_HEADERS: readonly string[] = ["authorization"];

/**
 * Per-call metadata left out of the key by default: HTTP/2 and gRPC transport headers (the message is keyed
 * decompressed, the deadline is the caller's own; grpc-js also sends HTTP's `accept-encoding`), the
 * caller's `cache-control` (a directive to the cache, not part of the question: a caller that sends
 * `no-cache` asks for a fresh answer to the same question, see freshness.ts) and trace context. Headers
 * the proxy never forwards to the backend (`HOP_HEADERS`: `te`, `content-type`, `user-agent`, `host`, ...)
 * cannot change the answer either and are left out too.
 */
export const DEFAULT_IGNORED_HEADERS: readonly string[] = [
  "te",
  "content-type",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
  "user-agent",
  "cache-control",
  "traceparent",
  "tracestate",
  "grpc-trace-bin",
  "b3",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-flags",
];

/** A metadata name or name glob that cannot be used; the message says why. */
export class HeaderNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HeaderNameError";
  }
}

/**
 * Checks a metadata name or glob (`x-request-*`) given by the operator and returns it lower-cased.
 *
 * @throws {HeaderNameError} for a name gRPC metadata cannot have
 */
export function headerName(raw: string, options: { glob: boolean }): string {
  const name = raw.trim().toLowerCase();
  const allowed = options.glob ? /^[0-9a-z_.*-]+$/ : /^[0-9a-z_.-]+$/;
  if (!allowed.test(name)) {
    throw new HeaderNameError(
      `invalid metadata name ${JSON.stringify(raw.trim())} (expected lower-case letters, digits, _ . -` +
        (options.glob ? ", and * for any characters)" : ")"),
    );
  }
  return name;
}

/**
 * Checks a name or glob to leave out of the key (`--ignore-headers`, a rule's `ignoreHeaders`).
 *
 * @throws {HeaderNameError} for a bad name, or for `authorization`, which is always keyed
 */
export function ignoredHeaderName(raw: string): string {
  const name = headerName(raw, { glob: true });
  if (DEFAULT_KEY_HEADERS.includes(name)) {
    throw new HeaderNameError(
      `${name} is always part of the key: callers with different credentials never share`,
    );
  }
  return name;
}

/** Most metadata names whose verdict a filter memoizes; past it the memo starts over. */
const MAX_MEMOIZED_NAMES = 1024;

/**
 * Decides which request metadata names are in a key. `authorization` and `keyHeaders` always are; the
 * default per-call headers, the headers never forwarded, and `ignoreHeaders` (exact names or `*` globs) are
 * not; everything else is. A verdict is memoized per name, so a call pays a map lookup per header.
 */
export class KeyFilter {
  /** Names always keyed. */
  readonly keyHeaders: readonly string[];
  /** Names and globs left out on purpose, besides the built-in ones. */
  readonly ignoreHeaders: readonly string[];
  readonly #always: ReadonlySet<string>;
  readonly #ignored: ReadonlySet<string>;
  readonly #ignoredGlobs: readonly RegExp[];
  readonly #memo = new Map<string, boolean>();

  /**
   * @param options.keyHeaders names always in the key, besides `authorization` @default {[]}
   * @param options.ignoreHeaders names or globs left out of the key (never `authorization`) @default {[]}
   */
  constructor(options: { keyHeaders?: readonly string[]; ignoreHeaders?: readonly string[] } = {}) {
    this.keyHeaders = [...new Set([...DEFAULT_KEY_HEADERS, ...options.keyHeaders ?? []])];
    this.ignoreHeaders = options.ignoreHeaders ?? [];
    this.#always = new Set(this.keyHeaders);
    this.#ignored = new Set([
      ...DEFAULT_IGNORED_HEADERS,
      ...HOP_HEADERS,
      ...this.ignoreHeaders.filter((n) => !n.includes("*")),
    ]);
    this.#ignoredGlobs = this.ignoreHeaders.filter((n) => n.includes("*")).map((glob) =>
      new RegExp(`^${glob.split("*").map((part) => part.replace(/[.\-]/g, "\\$&")).join(".*")}$`)
    );
  }

  /** Whether the metadata entry `name` (lower case, not a pseudo-header) is part of the key. */
  keyed(name: string): boolean {
    let verdict = this.#memo.get(name);
    if (verdict === undefined) {
      verdict = this.#always.has(name) ||
        !(this.#ignored.has(name) || this.#ignoredGlobs.some((glob) => glob.test(name)));
      if (this.#memo.size >= MAX_MEMOIZED_NAMES) this.#memo.clear();
      this.#memo.set(name, verdict);
    }
    return verdict;
  }
}

/** The filter of a proxy with no key settings: everything but the built-in per-call headers. */
export const DEFAULT_KEY_FILTER: KeyFilter = new KeyFilter();

const encoder = new TextEncoder();
/** Reused between calls (the hash is synchronous, so there is no interleaving); grows when needed. */
let scratch = new Uint8Array(4096);
let view = new DataView(scratch.buffer);
const names: string[] = [];

/**
 * SHA-256 over the method, the request metadata in the key (see {@linkcode KeyFilter}) and the
 * (decompressed) request message, as hex.
 *
 * Metadata entries are taken in name order, so the order a client sends them in does not matter; `-bin`
 * values are keyed as the bytes they carry, so two base64 spellings of the same bytes share. Every field is
 * length-prefixed and the entries are counted, so no two different inputs produce the same byte stream; an
 * absent entry differs from an empty one. The fields are laid out in one reused buffer and hashed with a
 * single `update`: on Deno every allocation and native call here costs about a microsecond (see
 * bench/key_bench.ts). `node:crypto` rather than Web Crypto: the synchronous hash is several times faster
 * for small messages, and this runs once per request.
 *
 * @param method the request's `:path`, e.g. `/pkg.Service/Method`
 * @param headers the request's headers as node:http2 gives them
 * @param message the request message bytes
 * @param filter which metadata is in the key @default {DEFAULT_KEY_FILTER}
 * @param identity the caller's verified TLS identity (mTLS), appended as one more length-prefixed field
 */
export function collapseKey(
  method: string,
  headers: IncomingHttpHeaders,
  message: Uint8Array,
  filter: KeyFilter = DEFAULT_KEY_FILTER,
  identity?: string,
): string {
  names.length = 0;
  // UTF-8 takes at most 3 bytes per UTF-16 code unit; base64 decodes to fewer bytes than it has characters.
  let bound = 16 + method.length * 3 + message.byteLength + (identity?.length ?? 0) * 3;
  // Object.keys rather than for-in: ~25% faster over node:http2's null-prototype header objects here.
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a /* ':' */ || !filter.keyed(name)) continue;
    names.push(name);
    // A -bin value decodes to fewer bytes than it has characters, but each comma-separated part gets a
    // 4-byte length of its own: at most 8 + 5 bytes per character (`,,,,` is all prefixes).
    bound += 16 + name.length * 3 + valueOf(headers[name]).length * 5;
  }
  if (names.length > 1) names.sort();
  if (bound > scratch.byteLength) {
    scratch = new Uint8Array(Math.max(bound, scratch.byteLength * 2));
    view = new DataView(scratch.buffer);
  }
  let offset = putString(0, method);
  view.setUint32(offset, names.length);
  offset += 4;
  for (const name of names) {
    offset = putString(offset, name);
    const value = valueOf(headers[name]);
    offset = name.endsWith("-bin") ? putBinary(offset, value) : putString(offset, value);
  }
  view.setUint32(offset, message.byteLength);
  scratch.set(message, offset + 4);
  offset += 4 + message.byteLength;
  // After the message's own length prefix, a trailing field cannot be mistaken for message bytes.
  if (identity !== undefined) offset = putString(offset, identity);
  // One-shot: one native call instead of three (create, update, digest): 0.85 against 1.29 µs for 200 bytes.
  return hash("sha256", scratch.subarray(0, offset), "hex");
}

/** One header's value; repeated values are joined with a newline, which no header value contains. */
function valueOf(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join("\n") : value ?? "";
}

function putString(offset: number, value: string): number {
  const { written } = encoder.encodeInto(value, scratch.subarray(offset + 4));
  view.setUint32(offset, written);
  return offset + 4 + written;
}

/** A `-bin` value (base64, repeated values comma-separated) as the bytes it carries. */
function putBinary(offset: number, value: string): number {
  let at = offset + 4;
  for (const part of value.split(/[,\n]/)) {
    const bytes = Buffer.from(part.trim(), "base64");
    view.setUint32(at, bytes.byteLength);
    scratch.set(bytes, at + 4);
    at += 4 + bytes.byteLength;
  }
  view.setUint32(offset, at - offset - 4);
  return at;
}
