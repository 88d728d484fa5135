/**
 * The JSON report (bench/results.json): the Report as it is, non-integer numbers rounded to 3 decimals.
 *
 * @module
 */

import type { Report } from "./types.ts";

/** The report as pretty-printed JSON, with a final newline. */
export function json(report: Report): string {
  return JSON.stringify(
    report,
    (_k, v) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v),
    2,
  ) + "\n";
}
