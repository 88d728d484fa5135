import assert from "node:assert/strict";
import { OutlierDetector, type OutlierState, outlierState } from "../src/backend/outlier.ts";
import { RetryBudget } from "../src/backend/retry_budget.ts";

/** A detector on a clock the test moves, and `n` addresses' states. */
function setup(n: number, options: { consecutiveFailures?: number; maxEjectedPercent?: number } = {}) {
  let now = 1_000;
  const detector = new OutlierDetector({ baseEjectionMs: 30_000, ...options, now: () => now });
  const states: OutlierState[] = Array.from({ length: n }, outlierState);
  return { detector, states, advance: (ms: number) => now += ms, now: () => now };
}

Deno.test("OutlierDetector ejects after N UNAVAILABLE in a row, for a growing time, then lets the address back", () => {
  const { detector, states, advance } = setup(4);
  const [a] = states;
  for (let i = 0; i < 4; i++) assert.equal(detector.failure(a, states, 4), false);
  detector.success(a); // the run is broken
  for (let i = 0; i < 4; i++) assert.equal(detector.failure(a, states, 4), false);
  assert.equal(detector.failure(a, states, 4), true, "the 5th in a row ejects");
  assert.equal(detector.ejected(a), true);
  advance(29_999);
  assert.equal(detector.ejected(a), true);
  advance(1);
  assert.equal(detector.ejected(a), false, "back after 30 s");
  assert.equal(detector.eject(a, states, 4), true, "a refused connection ejects at once");
  advance(59_999);
  assert.equal(detector.ejected(a), true, "the second ejection lasts 60 s");
  advance(1);
  assert.equal(detector.ejected(a), false);
  advance(10 * 60_000); // healthy for long: the count decays
  assert.equal(detector.eject(a, states, 4), true);
  advance(30_000);
  assert.equal(detector.ejected(a), false, "back to 30 s");
  assert.equal(detector.ejectionsTotal, 3);
});

Deno.test("OutlierDetector ejects at most half the set (--outlier-max-ejected), and never a lone address", () => {
  const { detector, states } = setup(4);
  const [a, b, c] = states;
  assert.equal(detector.eject(a, states, 4), true);
  assert.equal(detector.eject(b, states, 4), true, "2 of 4 may be ejected");
  assert.equal(detector.eject(c, states, 4), false, "not a third");
  assert.equal(detector.ejected(c), false);
  const single = [outlierState()];
  assert.equal(detector.eject(single[0], single, 1), false, "one address is never ejected");
  const { detector: strict, states: three } = setup(3, { maxEjectedPercent: 100 });
  assert.equal(three.every((s) => strict.eject(s, three, 3)), true, "--outlier-max-ejected 100%: all");
  const { detector: off, states: two } = setup(2, { consecutiveFailures: 0 });
  for (let i = 0; i < 100; i++) assert.equal(off.failure(two[0], two, 2), false, "--outlier-failures 0");
});

Deno.test("OutlierDetector: an ejection grows with repeated ejections up to the cap", () => {
  const { detector, states, advance, now } = setup(2);
  const lengths: number[] = [];
  for (let i = 0; i < 12; i++) {
    detector.eject(states[0], states, 2);
    lengths.push(states[0].ejectedUntil - now());
    advance(states[0].ejectedUntil - now()); // back, and failing again at once
  }
  assert.deepEqual(lengths.slice(0, 4), [30_000, 60_000, 90_000, 120_000]);
  assert.equal(Math.max(...lengths), 300_000);
});

Deno.test("RetryBudget allows retries of at most its share of calls, plus what was saved", () => {
  const budget = new RetryBudget(0.2);
  let retries = 0;
  // A backend failing everything: every call wants a retry.
  for (let call = 0; call < 1000; call++) {
    budget.earn();
    if (budget.spend()) retries++;
  }
  assert.ok(retries <= 10 + 0.2 * 1000, `${retries} retries for 1000 calls`);
  assert.ok(retries >= 0.2 * 1000, `${retries}: the share is there to be used`);
  assert.ok(budget.exhausted > 0);
  const none = new RetryBudget(0);
  none.earn();
  assert.equal(none.spend(), false, "0 = no retries at all");
  assert.throws(() => new RetryBudget(2), RangeError);
  const saved = new RetryBudget(0.2);
  for (let i = 0; i < 100_000; i++) saved.earn();
  assert.equal(saved.tokens, 100, "at most 100 saved up");
});
