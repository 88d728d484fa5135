/**
 * Go-style durations (`100ms`, `1.5s`, `1m30s`), as the original design's configuration used.
 *
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go-style duration to milliseconds. `0` needs no unit; anything else is one or more
 * `<number><unit>` parts with unit ns, us (µs), ms, s, m or h. Negative durations are rejected.
 *
 * @example
 * ```ts
 * parseDuration("1m30s"); // 90000
 * parseDuration("100ms"); // 100
 * ```
 * @throws {RangeError} when `text` is not a duration
 */
export function parseDuration(text: string): number {
  const input = text.trim();
  if (input === "0") return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let offset = 0;
  while (offset < input.length) {
    part.lastIndex = offset;
    const match = part.exec(input);
    if (!match) break;
    total += Number(match[1]) * UNIT_MS[match[2]];
    offset = part.lastIndex;
  }
  if (input.length === 0 || offset !== input.length || !Number.isFinite(total)) {
    throw new RangeError(`invalid duration ${JSON.stringify(text)} (expected e.g. 100ms, 10s, 1m30s)`);
  }
  return total;
}

/** Formats milliseconds back as a short Go-style duration, for logs and messages. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
