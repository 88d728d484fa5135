/**
 * Counters whose value the proxy keeps elsewhere (the core's, the balancer's, the shared tier's stats):
 * exported as Prometheus counters set at scrape time (reset, then the value read now), unlabelled or with one
 * label whose values are the keys of what `read` returns.
 *
 * @module
 */

import client from "prom-client";

/** An unlabelled counter whose value is `read()` at each scrape. */
export function scrapedCounter(
  registers: client.Registry[],
  name: string,
  help: string,
  read: () => number,
): client.Counter;
/** A counter with one label: each key of `read()`'s record is a label value, its number the count. */
export function scrapedCounter(
  registers: client.Registry[],
  name: string,
  help: string,
  read: () => Readonly<Record<string, number>> | undefined,
  label: string,
): client.Counter<string>;
export function scrapedCounter(
  registers: client.Registry[],
  name: string,
  help: string,
  read: () => number | Readonly<Record<string, number>> | undefined,
  label?: string,
): client.Counter<string> {
  return new client.Counter({
    name,
    help,
    labelNames: label === undefined ? [] : [label],
    registers,
    collect() {
      this.reset();
      const value = read();
      if (label === undefined) this.inc(value as number);
      else for (const [key, n] of Object.entries(value ?? {})) this.inc({ [label]: key }, n);
    },
  });
}
