import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { TimeoutQueue } from "../src/util/timeout_queue.ts";

/** Runs `fn` with a queue on a fake clock (its timer and its `now` both come from `clock`), then uninstalls it. */
function withFakeQueue(
  delayMs: number,
  fn: (clock: ReturnType<typeof FakeTimers.install>, queue: TimeoutQueue) => void,
) {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    fn(clock, new TimeoutQueue(delayMs, () => clock.now));
  } finally {
    clock.uninstall();
  }
}

Deno.test("TimeoutQueue: each timeout fires once, delayMs after it was added, in order", () => {
  withFakeQueue(100, (clock, queue) => {
    const fired: string[] = [];
    queue.add(() => fired.push("a"));
    clock.tick(30);
    queue.add(() => fired.push("b"));
    clock.tick(69);
    assert.deepEqual(fired, []);
    clock.tick(1); // a: 100 ms
    assert.deepEqual(fired, ["a"]);
    clock.tick(29);
    assert.deepEqual(fired, ["a"]);
    clock.tick(1); // b: 30 + 100 ms
    assert.deepEqual(fired, ["a", "b"]);
    assert.equal(queue.pending, 0);
    assert.equal(clock.countTimers(), 0);
    clock.tick(1_000);
    assert.deepEqual(fired, ["a", "b"]);
  });
});

Deno.test("TimeoutQueue: a cancelled timeout never fires, and the ones behind it still do on time", () => {
  withFakeQueue(100, (clock, queue) => {
    const fired: string[] = [];
    const a = queue.add(() => fired.push("a"));
    clock.tick(10);
    queue.add(() => fired.push("b"));
    clock.tick(10);
    const c = queue.add(() => fired.push("c"));
    a.cancel();
    a.cancel(); // idempotent
    c.cancel();
    assert.equal(queue.pending, 1);
    clock.tick(89);
    assert.deepEqual(fired, []);
    clock.tick(1); // b: 10 + 100 ms
    assert.deepEqual(fired, ["b"]);
    clock.tick(1_000);
    assert.deepEqual(fired, ["b"]);
    assert.equal(clock.countTimers(), 0);
  });
});

Deno.test("TimeoutQueue: no timer is left once every timeout is cancelled", () => {
  withFakeQueue(10_000, (clock, queue) => {
    const timeouts = Array.from({ length: 5 }, () => queue.add(() => assert.fail("cancelled")));
    assert.equal(clock.countTimers(), 1);
    for (const t of timeouts) t.cancel();
    assert.equal(queue.pending, 0);
    assert.equal(clock.countTimers(), 0);
    // And the queue works again afterwards.
    let fired = 0;
    queue.add(() => fired++);
    clock.tick(10_000);
    assert.equal(fired, 1);
  });
});

Deno.test("TimeoutQueue: a timeout that fires may cancel later ones or add new ones", () => {
  withFakeQueue(50, (clock, queue) => {
    const fired: string[] = [];
    const later = queue.add(() => fired.push("later"));
    const cancelsLater = () => {
      fired.push("first");
      later.cancel();
      queue.add(() => fired.push("added"));
    };
    later.cancel();
    const again = queue.add(() => fired.push("never"));
    queue.add(cancelsLater);
    again.cancel();
    clock.tick(50);
    assert.deepEqual(fired, ["first"]);
    clock.tick(50);
    assert.deepEqual(fired, ["first", "added"]);
    assert.equal(clock.countTimers(), 0);
  });
});

Deno.test("TimeoutQueue: thousands of timeouts, most cancelled, fire exactly the others on time", () => {
  withFakeQueue(1_000, (clock, queue) => {
    const fired: number[] = [];
    const kept = new Set<number>();
    const all = [];
    for (let i = 0; i < 5_000; i++) {
      all.push(queue.add(() => fired.push(i)));
      if (i % 7 === 0) kept.add(i);
      // Most end 500 ms into their 1,000 (a call answered in time); every 7th runs out.
      if (i >= 500 && !kept.has(i - 500)) all[i - 500].cancel();
      clock.tick(1);
      // Each fires exactly 1,000 ms after it was added: by now, those added up to i - 999.
      assert.equal(fired.at(-1) ?? -1, Math.max(-1, ...[...kept].filter((k) => k <= i - 999)));
    }
    for (let i = 4_500; i < all.length; i++) if (!kept.has(i)) all[i].cancel();
    clock.tick(1_000);
    assert.deepEqual(fired, [...kept]);
    assert.equal(queue.pending, 0);
    assert.equal(clock.countTimers(), 0);
  });
});

Deno.test("TimeoutQueue: a delay a timer cannot wait is refused", () => {
  assert.throws(() => new TimeoutQueue(2 ** 31), RangeError);
  assert.throws(() => new TimeoutQueue(-1), RangeError);
});

Deno.test("TimeoutQueue: under steady load, cancelled timeouts do not pile up until the timer reaches them", () => {
  withFakeQueue(10_000, (clock, queue) => {
    let fired = 0;
    queue.add(() => fired++); // one call always in flight: the queue never empties
    for (let i = 0; i < 100_000; i++) queue.add(() => assert.fail("cancelled")).cancel();
    assert.equal(queue.pending, 1);
    assert.ok(queue.held <= 2 * 1024 + 2, `${queue.held} entries held for 1 pending`);
    clock.tick(10_000);
    assert.equal(fired, 1);
    assert.equal(clock.countTimers(), 0);
  });
});
