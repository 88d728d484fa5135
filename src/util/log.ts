/**
 * JSON-lines logging through LogTape, to standard error.
 *
 * @module
 */

import { configureSync, getLogger, type LogLevel, type LogRecord } from "@logtape/logtape";

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
    sinks: { json: (record: LogRecord) => write(jsonLine(record)) },
    loggers: [
      { category: ["collapser"], lowestLevel: LOGTAPE_LEVEL[level], sinks: ["json"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["json"] },
    ],
  });
}

const LEVEL_NAMES: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/**
 * One record as a JSON line: `@timestamp`, `level`, `message`, `logger`, `properties`. The message reads as
 * plain text — a string value appears as itself (`listening on 0.0.0.0:50052`), other values as JSON — while
 * `properties` carries every value with its type. (LogTape's own JSON formatter renders string values
 * quoted inside the message: `listening on "0.0.0.0":50052`.)
 */
export function jsonLine(record: LogRecord): string {
  let message = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    message += i % 2 === 0 || typeof part === "string" ? String(part) : JSON.stringify(part) ?? String(part);
  }
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: LEVEL_NAMES[record.level],
    message,
    logger: record.category.join("."),
    properties: record.properties,
  }) + "\n";
}
