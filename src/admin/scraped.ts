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

/** One label combination of a {@linkcode talliedCounter}: its labels, and what it gained since a scrape. */
interface Cell {
  readonly labels: Record<string, string>;
  pending: number;
}

/** What {@linkcode talliedCounter} returns: count with `inc`, read through the Counter. */
export interface Tally {
  /** Adds one for these label values (in the order of the label names; unused ones left out). */
  inc(a: string, b?: string, c?: string): void;
}

/**
 * A counter of up to three labels counted on the hot path in plain maps, and handed to prom-client when it
 * is scraped. prom-client's own `inc({ ...labels })` builds a label hash string, validates the labels and
 * allocates per call: three of them on every cache miss were 0.8 KB of garbage and the largest npm cost in
 * the unique-key profile. Here a call is three Map lookups of the label values, and nothing is allocated
 * once a combination has been seen (label values are bounded: methods by MethodLabels, the rest are enums).
 */
export function talliedCounter(
  registers: client.Registry[],
  name: string,
  help: string,
  labelNames: readonly string[],
): Tally {
  if (labelNames.length < 1 || labelNames.length > 3) throw new RangeError("talliedCounter: 1 to 3 labels");
  const root = new Map<string, Map<string, Map<string, Cell>>>();
  let dirty: Cell[] = [];
  new client.Counter({
    name,
    help,
    labelNames: [...labelNames],
    registers,
    collect() {
      const cells = dirty;
      dirty = [];
      for (const cell of cells) {
        // Zeroed first: should inc throw, the cell counts on and is listed again at its next inc.
        const n = cell.pending;
        cell.pending = 0;
        this.inc(cell.labels, n);
      }
    },
  });
  return {
    inc(a: string, b = "", c = ""): void {
      let level1 = root.get(a);
      if (level1 === undefined) root.set(a, level1 = new Map());
      let level2 = level1.get(b);
      if (level2 === undefined) level1.set(b, level2 = new Map());
      let cell = level2.get(c);
      if (cell === undefined) {
        const values = [a, b, c];
        const labels: Record<string, string> = {};
        labelNames.forEach((label, i) => labels[label] = values[i]);
        level2.set(c, cell = { labels, pending: 0 });
      }
      if (cell.pending++ === 0) dirty.push(cell);
    },
  };
}

/** What {@linkcode talliedHistogram} returns. */
export interface TalliedHistogram {
  /** Counts one observation of `value` under this label value. */
  observe(labelValue: string, value: number): void;
}

/** One label value's buckets. */
interface Buckets {
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram of one label, counted in plain arrays and exported in prom-client's shape when scraped (for
 * the reason given at {@linkcode talliedCounter}: prom-client's `observe` builds and validates a label string
 * per call, and two of them ran on every cache miss). The exposition is a histogram's: cumulative `_bucket`
 * lines with `le`, then `_sum` and `_count`, per label value.
 */
export function talliedHistogram(
  registers: client.Registry[],
  name: string,
  help: string,
  labelName: string,
  buckets: readonly number[],
): TalliedHistogram {
  const bounds = [...buckets].sort((a, b) => a - b);
  const cells = new Map<string, Buckets>();
  const metric = {
    name,
    help,
    type: "histogram" as const,
    aggregator: "sum" as const,
    get() {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const [labelValue, cell] of cells) {
        let cumulative = 0;
        bounds.forEach((le, i) => {
          cumulative += cell.counts[i];
          values.push({
            labels: { le, [labelName]: labelValue },
            value: cumulative,
            metricName: `${name}_bucket`,
          });
        });
        values.push({
          labels: { le: "+Inf", [labelName]: labelValue },
          value: cell.count,
          metricName: `${name}_bucket`,
        });
        values.push({ labels: { [labelName]: labelValue }, value: cell.sum, metricName: `${name}_sum` });
        values.push({ labels: { [labelName]: labelValue }, value: cell.count, metricName: `${name}_count` });
      }
      return { name, help, type: "histogram", values, aggregator: "sum" };
    },
    reset() {
      cells.clear();
    },
  };
  for (const registry of registers) registry.registerMetric(metric as unknown as client.Metric);
  return {
    observe(labelValue: string, value: number): void {
      let cell = cells.get(labelValue);
      if (cell === undefined) {
        cells.set(labelValue, cell = { counts: new Float64Array(bounds.length), sum: 0, count: 0 });
      }
      // Bucket i counts values in (bounds[i-1], bounds[i]]; past the last bound only +Inf (count) has it.
      let i = 0;
      while (i < bounds.length && value > bounds[i]) i++;
      if (i < bounds.length) cell.counts[i]++;
      cell.sum += value;
      cell.count++;
    },
  };
}
