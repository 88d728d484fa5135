import assert from "node:assert/strict";
import { parseDuration } from "../src/util/duration.ts";

Deno.test("parseDuration() reads Go-style durations", async (t) => {
  const ok: [string, number][] = [
    ["0", 0],
    ["100ms", 100],
    ["10s", 10_000],
    ["1m30s", 90_000],
    ["1.5s", 1_500],
    ["2h", 7_200_000],
    ["500us", 0.5],
    ["0s", 0],
  ];
  for (const [text, ms] of ok) {
    await t.step(`${text} = ${ms} ms`, () => assert.equal(parseDuration(text), ms));
  }
  for (const bad of ["", "10", "-1s", "1x", "s", "1s2", "1 s", "ten"]) {
    await t.step(
      `${JSON.stringify(bad)} is rejected`,
      () => assert.throws(() => parseDuration(bad), RangeError),
    );
  }
});
