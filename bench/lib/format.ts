/**
 * Number formatting shared by the console output and the reports: `fmt` (en-US grouping, "—" for no value),
 * `ratio` (`1.23x`) and a target's display name.
 *
 * @module
 */

import type { TargetName } from "./types.ts";

export function fmt(n: number | null | undefined, digits: number): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const ratio = (
  n: number | null,
) => (n === null || !Number.isFinite(n) ? "—" : `${fmt(n, n < 10 ? 2 : 1)}x`);

/** A display name: `proxy`, or `proxy @ 4,000 req/s` for an open-loop row. */
export function targetLabel(row: { target: TargetName; rate?: number }): string {
  return row.rate ? `${row.target.replace("@rate", "")} @ ${fmt(row.rate, 0)} req/s` : row.target;
}
