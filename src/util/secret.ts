/**
 * A secret (the admin token) that can be checked but not shown: only its SHA-256 is kept, a comparison takes
 * the same time wherever two values differ and whatever their lengths (both are hashed, then compared with
 * `timingSafeEqual`), and every way of printing it — `JSON.stringify`, string conversion, `console.log` /
 * `Deno.inspect` — gives `[redacted]`. So the token cannot reach a log line, `/status.json` or the page by
 * accident.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";

const REDACTED = "[redacted]";

/** A value that can be checked against, and never printed. */
export class Secret {
  readonly #digest: Uint8Array;

  constructor(value: string) {
    this.#digest = digest(value);
  }

  /** Whether `candidate` is the secret, in constant time. */
  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.#digest);
  }

  /** `[redacted]`. */
  toJSON(): string {
    return REDACTED;
  }

  /** `[redacted]`. */
  toString(): string {
    return REDACTED;
  }

  /** `[redacted]`, for console.log and Deno.inspect. */
  [Symbol.for("Deno.customInspect")](): string {
    return REDACTED;
  }
}

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value, "utf8").digest();
}
