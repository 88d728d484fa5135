import assert from "node:assert/strict";
import client from "prom-client";
import { talliedCounter, talliedHistogram } from "../src/admin/scraped.ts";

/** The value of one exposition line, by its name and labels as printed. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("talliedCounter: counts per label combination, handed to prom-client at each scrape", async () => {
  const registry = new client.Registry();
  const tally = talliedCounter([registry], "t_calls_total", "Calls.", ["method", "code"]);
  tally.inc("/a", "OK");
  tally.inc("/a", "OK");
  tally.inc("/b", "UNAVAILABLE");
  let text = await registry.metrics();
  assert.equal(sample(text, `t_calls_total{method="/a",code="OK"}`), 2);
  assert.equal(sample(text, `t_calls_total{method="/b",code="UNAVAILABLE"}`), 1);
  // A second scrape adds only what came since: counts are never handed over twice.
  tally.inc("/a", "OK");
  text = await registry.metrics();
  assert.equal(sample(text, `t_calls_total{method="/a",code="OK"}`), 3);
  text = await registry.metrics();
  assert.equal(sample(text, `t_calls_total{method="/a",code="OK"}`), 3);
  assert.equal(sample(text, `t_calls_total{method="/b",code="UNAVAILABLE"}`), 1);
});

Deno.test("talliedHistogram: prom-client's exposition, buckets cumulative and inclusive of their bound", async () => {
  const registry = new client.Registry();
  const mine = talliedHistogram([registry], "t_seconds", "Durations.", "outcome", [0.1, 0.01, 1]);
  const theirs = new client.Histogram({
    name: "p_seconds",
    help: "Durations.",
    labelNames: ["outcome"],
    buckets: [0.01, 0.1, 1],
    registers: [registry],
  });
  for (const [outcome, v] of [["a", 0.01], ["a", 0.05], ["a", 0.1], ["a", 3], ["b", 0.5]] as const) {
    mine.observe(outcome, v);
    theirs.observe({ outcome }, v);
  }
  const text = await registry.metrics();
  const lines = (prefix: string) =>
    text.split("\n").filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  // Line for line what prom-client's own Histogram prints for the same observations.
  assert.deepEqual(lines("t_seconds"), lines("p_seconds"));
  assert.equal(sample(text, `t_seconds_bucket{le="0.01",outcome="a"}`), 1);
  assert.equal(sample(text, `t_seconds_bucket{le="0.1",outcome="a"}`), 3);
  assert.equal(sample(text, `t_seconds_bucket{le="+Inf",outcome="a"}`), 4);
  assert.equal(sample(text, `t_seconds_count{outcome="b"}`), 1);
  assert.ok(text.includes("# TYPE t_seconds histogram"));
});
