/**
 * JSON-lines logging through LogTape, to standard error.
 *
 * @module
 */

import {
  configureSync,
  getLogger,
  jsonLinesFormatter,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

/** Levels the `--log-level` flag accepts. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A level the `--log-level` flag accepts. */
export type ProxyLogLevel = typeof LOG_LEVELS[number];

/** The proxy's logger; child categories hang below `collapser`. */
export const log = getLogger(["collapser"]);

const encoder = new TextEncoder();
const LOGTAPE_LEVEL: Record<ProxyLogLevel, LogLevel> = {
  debug: "debug",
  info: "info",
  warn: "warning",
  error: "error",
};

/**
 * Sends every `collapser` log record at `level` or above to `write` (standard error by default) as one JSON
 * line. Calling it again replaces the configuration.
 */
export function setupLogging(
  level: ProxyLogLevel,
  write: (line: string) => void = (line) => Deno.stderr.writeSync(encoder.encode(line)),
): void {
  configureSync({
    reset: true,
    sinks: { json: (record: LogRecord) => write(jsonLinesFormatter(record)) },
    loggers: [
      { category: ["collapser"], lowestLevel: LOGTAPE_LEVEL[level], sinks: ["json"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["json"] },
    ],
  });
}
