/**
 * The shared base of the fuzz-case library (`tests/_fuzz.ts` is its entry point): the seeded
 * {@linkcode Rng} and the per-case seeds, the case types every part of the library passes around, and the
 * constants and byte helpers (gRPC framing, concatenation, random cuts) both case generators use. It imports
 * nothing, so every other `_fuzz_*.ts` file can import it without a cycle.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------------------
// Seeded randomness

/** A seeded PRNG (mulberry32) with the draws the generators need. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** A uniformly random unsigned 32-bit integer. */
  u32(): number {
    return (this.int(0x10000) * 0x10000 + this.int(0x10000)) >>> 0;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** One of `table`'s values, each with its weight. */
  weighted<T>(table: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [weight] of table) total += weight;
    let r = this.next() * total;
    for (const [weight, value] of table) {
      if ((r -= weight) < 0) return value;
    }
    return table[table.length - 1][1];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A string of `n` characters drawn from `alphabet`. */
  text(n: number, alphabet: string): string {
    let out = "";
    for (let i = 0; i < n; i++) out += alphabet[this.int(alphabet.length)];
    return out;
  }
}

/** The seed of case `index` of a run seeded with `seed` (so any one case can be rebuilt alone). */
export function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A seed from an environment variable or flag value (decimal or 0x hex); `fallback` when absent. */
export function parseSeed(value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const seed = Number(value);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`invalid seed ${JSON.stringify(value)} (expected an integer in [0, 2^32))`);
  }
  return seed;
}

// ---------------------------------------------------------------------------------------------------------
// Cases

/** What the generators need to know about the proxy under test. */
export interface FuzzTarget {
  /** The proxy's `maxMessageBytes` (`--max-message-size`); keep it small so "over the limit" is cheap. */
  maxMessageBytes: number;
}

/** The answer a gRPC-level case must get, where the protocol alone says. */
export interface Expectation {
  httpStatus?: number;
  grpcStatus?: number;
  /** Any gRPC status but OK. */
  notOk?: boolean;
  /** One of these gRPC statuses (a race the protocol allows). */
  anyOf?: readonly number[];
  /** The response messages (uncompressed), in order. */
  messages?: Uint8Array[];
}

/** A call over a raw node:http2 client. */
export interface GrpcCase {
  readonly kind: "grpc";
  readonly seed: number;
  readonly index: number;
  /** Short tags saying what was chosen, for reports and tallies. */
  readonly labels: readonly string[];
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Request body, written chunk by chunk after the delay before each (ms). */
  readonly chunks: readonly Uint8Array[];
  readonly gapsMs: readonly number[];
  readonly endStream: boolean;
  readonly reset: {
    readonly at: "none" | "beforeBody" | "midBody" | "afterHeaders" | "destroySession";
    /** midBody / destroySession: after how many chunks. */
    readonly afterChunks: number;
    readonly code: number;
  };
  readonly expect: Expectation | undefined;
}

/** Bytes written to a plain TCP socket: a preface (or not) and HTTP/2 frames. */
export interface H2Case {
  readonly kind: "h2";
  readonly seed: number;
  readonly index: number;
  readonly labels: readonly string[];
  readonly chunks: readonly Uint8Array[];
  readonly gapsMs: readonly number[];
}

/** One fuzz case. */
export type FuzzCase = GrpcCase | H2Case;

// ---------------------------------------------------------------------------------------------------------
// Shared by the generators

export const UNARY = "/test.Test/Unary";
export const GRPC = "application/grpc";
export const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
export const TOKEN = "abcdefghijklmnopqrstuvwxyz0123456789-_.";

/** A gRPC length-prefixed frame; `declared` lies about the length when given. */
export function grpcFrame(flag: number, payload: Uint8Array, declared = payload.byteLength): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  out[0] = flag;
  new DataView(out.buffer).setUint32(1, declared >>> 0);
  out.set(payload, 5);
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** `bytes` cut at up to `pieces - 1` random points (an empty body stays one empty chunk). */
export function splitBytes(rng: Rng, bytes: Uint8Array, pieces: number): Uint8Array[] {
  if (bytes.byteLength <= 1 || pieces <= 1) return [bytes];
  const cuts = [...new Set(Array.from({ length: pieces - 1 }, () => rng.range(1, bytes.byteLength - 1)))]
    .sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const cut of cuts) {
    out.push(bytes.subarray(at, cut));
    at = cut;
  }
  out.push(bytes.subarray(at));
  return out;
}
