/**
 * Metrics of a backend with several addresses, read from the balancer at scrape time: per address (calls,
 * errors, in flight, ejected; the label bounded by the balancer: past its bound addresses share `other`),
 * and for the set (addresses by state, ejections, retries, retries the budget refused, resolutions).
 *
 * @module
 */

import client from "prom-client";
import { scrapedCounter } from "./scraped.ts";
import { type BalancerStats, OTHER_ADDRESS } from "../backend/balancer.ts";

/** Per-label sums of the addresses' counters (several `other` addresses fold into one series). */
function byLabel(stats: BalancerStats) {
  const out = new Map<string, { calls: number; errors: number; inflight: number; ejected: number }>();
  for (const a of stats.addresses) {
    const sum = out.get(a.label) ?? { calls: 0, errors: 0, inflight: 0, ejected: 0 };
    sum.calls += a.calls;
    sum.errors += a.errors;
    sum.inflight += a.inflight;
    sum.ejected += a.state === "ejected" ? 1 : 0;
    out.set(a.label, sum);
  }
  const gone = stats.otherGone;
  if (gone.calls > 0 || gone.errors > 0) {
    const other = out.get(OTHER_ADDRESS) ?? { calls: 0, errors: 0, inflight: 0, ejected: 0 };
    other.calls += gone.calls;
    other.errors += gone.errors;
    out.set(OTHER_ADDRESS, other);
  }
  return out;
}

/** Registers the balancer's metrics in `registry`; `read` is called once per metric at scrape. */
export function addressMetrics(registry: client.Registry, read: () => BalancerStats): void {
  const registers = [registry];
  const perAddress = (
    kind: "counter" | "gauge",
    name: string,
    help: string,
    field: "calls" | "errors" | "inflight" | "ejected",
  ) => {
    const Metric = kind === "counter" ? client.Counter : client.Gauge;
    new Metric({
      name,
      help,
      labelNames: ["address"],
      registers,
      collect() {
        this.reset();
        for (const [address, sums] of byLabel(read())) {
          if (this instanceof client.Counter) this.inc({ address }, sums[field]);
          else (this as client.Gauge<"address">).set({ address }, sums[field]);
        }
      },
    });
  };
  perAddress(
    "counter",
    "collapser_backend_address_calls_total",
    "Backend calls (attempts) per backend address; past the label bound, addresses count under other.",
    "calls",
  );
  perAddress(
    "counter",
    "collapser_backend_address_errors_total",
    "Backend calls per address that failed there: unreached (refused connection or stream), or UNAVAILABLE, UNKNOWN, INTERNAL, DATA_LOSS.",
    "errors",
  );
  perAddress(
    "gauge",
    "collapser_backend_address_inflight",
    "Backend calls running now, per address.",
    "inflight",
  );
  perAddress(
    "gauge",
    "collapser_backend_address_ejected",
    "1 while the address is ejected (outlier detection); for other, how many of its addresses are.",
    "ejected",
  );
  new client.Gauge({
    name: "collapser_backend_addresses",
    help:
      "Backend addresses now, by state: active, ejected, draining (left the resolved set, finishing calls).",
    labelNames: ["state"],
    registers,
    collect() {
      const counts = { active: 0, ejected: 0, draining: 0 };
      for (const a of read().addresses) counts[a.state]++;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  const counter = (name: string, help: string, value: (s: BalancerStats) => number) =>
    scrapedCounter(registers, name, help, () => value(read()));
  counter(
    "collapser_backend_ejections_total",
    "Backend addresses ejected by outlier detection.",
    (s) => s.ejections,
  );
  scrapedCounter(
    registers,
    "collapser_backend_retries_total",
    "Backend calls sent again to another address, by reason: transparent (never reached a backend), idempotent (may have; the method allows it).",
    () => read().retries,
    "reason",
  );
  counter(
    "collapser_backend_retries_exhausted_total",
    "Retries not made because the retry budget (--retry-budget) was spent.",
    (s) => s.retriesExhausted,
  );
  scrapedCounter(
    registers,
    "collapser_backend_resolutions_total",
    "Resolutions of the backend's names, by result: ok, error (the addresses it had were kept).",
    () => read().resolutions,
    "result",
  );
}
