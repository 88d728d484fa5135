/**
 * The flags of a backend with several addresses: how calls are spread, how often names are resolved
 * again, outlier ejection and the retry budget. They change nothing for a single IP address (which has
 * no balancer), so they are not an error there.
 *
 * @module
 */

import type { BalancerOptions } from "../backend/balancer.ts";
import {
  DEFAULT_BASE_EJECTION_MS,
  DEFAULT_CONSECUTIVE_FAILURES,
  DEFAULT_MAX_EJECTED_PERCENT,
} from "../backend/outlier.ts";
import { LB_POLICIES, type LbPolicy } from "../backend/picker.ts";
import { DEFAULT_RESOLVE_INTERVAL_MS } from "../backend/resolver.ts";
import { DEFAULT_RETRY_BUDGET } from "../backend/retry_budget.ts";
import { type FlagTable, type Reader } from "./reader.ts";

/** The balancing flags. */
export const BALANCING_FLAGS = {
  "lb-policy": { type: "string" },
  "resolve-interval": { type: "string" },
  "outlier-failures": { type: "string" },
  "outlier-ejection-time": { type: "string" },
  "outlier-max-ejected": { type: "string" },
  "retry-budget": { type: "string" },
} as const satisfies FlagTable;

/** The balancer's configuration, as the flags give it. */
export type BalancingConfig =
  & Required<
    Pick<BalancerOptions, "lbPolicy" | "resolveIntervalMs" | "retryBudget">
  >
  & {
    outlier: { consecutiveFailures: number; baseEjectionMs: number; maxEjectedPercent: number };
  };

/** A percentage, `20%` or `20`, from 0 to 100. */
function percent(raw: string): number {
  const match = /^(\d{1,3}(?:\.\d+)?)%?$/.exec(raw.trim());
  const value = match === null ? NaN : Number(match[1]);
  if (!(value >= 0 && value <= 100)) {
    throw new Error(`invalid percentage ${JSON.stringify(raw)} (expected 0-100, e.g. 20%)`);
  }
  return value;
}

/** Reads the balancing flags. */
export function balancingConfig(read: Reader): BalancingConfig {
  const lbPolicy = read.parsed("lb-policy", "COLLAPSER_LB_POLICY", (raw) => {
    const policy = raw.trim().toLowerCase() as LbPolicy;
    if (!LB_POLICIES.includes(policy)) {
      throw new Error(`invalid policy ${JSON.stringify(raw)} (expected ${LB_POLICIES.join(" or ")})`);
    }
    return policy;
  }) ?? "least_request";
  return {
    lbPolicy,
    resolveIntervalMs: read.duration(
      "resolve-interval",
      "COLLAPSER_RESOLVE_INTERVAL",
      DEFAULT_RESOLVE_INTERVAL_MS,
      false,
    ),
    outlier: {
      consecutiveFailures: read.count(
        "outlier-failures",
        "COLLAPSER_OUTLIER_FAILURES",
        DEFAULT_CONSECUTIVE_FAILURES,
        1_000_000,
      ),
      baseEjectionMs: read.duration(
        "outlier-ejection-time",
        "COLLAPSER_OUTLIER_EJECTION_TIME",
        DEFAULT_BASE_EJECTION_MS,
        false,
      ),
      maxEjectedPercent: read.parsed("outlier-max-ejected", "COLLAPSER_OUTLIER_MAX_EJECTED", percent) ??
        DEFAULT_MAX_EJECTED_PERCENT,
    },
    retryBudget:
      (read.parsed("retry-budget", "COLLAPSER_RETRY_BUDGET", percent) ?? DEFAULT_RETRY_BUDGET * 100) /
      100,
  };
}
