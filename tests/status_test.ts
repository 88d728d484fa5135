/**
 * StatusBoard: what `GET /status.json` is built from, with a fake clock (the `now` option), a fake
 * {@linkcode StatusSource} and samples taken by the test. No network.
 */

import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import type { CollapserStats } from "../src/core/collapser.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import type { ProxyStats } from "../src/server/proxy.ts";
import type { CallReport, Outcome } from "../src/server/observer.ts";
import { StatusBoard, type StatusSource } from "../src/admin/status.ts";
import { VERSION } from "../src/util/version.ts";

const METHOD = "/inventory.v1.InventoryService/GetItem";
const KEY_A = "a1b2c3d4e5f6".padEnd(64, "0");
const KEY_B = "0123456789ab".padEnd(64, "f");

interface FakeFlight {
  key: string;
  tag: string | undefined;
  subscribers: number;
  startedAt: number;
}

/** A proxy as the board sees it: counters the test sets, and readiness probes it answers. */
class FakeProxy {
  readonly proxy: ProxyStats = {
    backendCalls: 0,
    backendInflight: 0,
    passthrough: 0,
    activeCalls: 0,
    connections: 0,
    queued: 0,
    shedQueueFull: 0,
    shedQueueTimeout: 0,
  };
  readonly collapser: CollapserStats = {
    leaders: 0,
    followers: 0,
    cacheHits: 0,
    refreshes: 0,
    inflight: 0,
    waiting: 0,
    cacheEntries: 0,
    cacheBytes: 0,
    cacheEvictions: 0,
  };
  flights: FakeFlight[] = [];
  draining = false;
  /** Readiness probes asked for, oldest first. */
  readonly probes: (PromiseWithResolvers<boolean> & { timeoutMs: number })[] = [];
  readonly config: Record<string, unknown> = { backend: "127.0.0.1:50051", cacheTtlMs: 100, hotKeys: 10 };
  readonly source: StatusSource = {
    proxyStats: () => ({ ...this.proxy }),
    collapserStats: () => ({ ...this.collapser }),
    flights: () => this.flights,
    draining: () => this.draining,
    backendReady: (timeoutMs) => {
      const probe = { ...Promise.withResolvers<boolean>(), timeoutMs };
      this.probes.push(probe);
      return probe.promise;
    },
    backendTarget: "127.0.0.1:50051",
    config: this.config,
  };
}

/** A fake clock for the `now` option. */
class Clock {
  at = 0;
  readonly now = (): number => this.at;
}

const report = (outcome: Outcome, key?: string): CallReport => ({
  method: METHOD,
  outcome,
  code: Status.OK,
  durationMs: 1,
  key,
});

interface Second {
  leaders?: number;
  followers?: number;
  cacheHits?: number;
  refreshes?: number;
  passthrough?: number;
}

/**
 * One second of traffic: the calls are reported to the board and counted as the proxy would (a backend call
 * per leader, refresh and passed-through call), then the clock moves on by 1 s and the board samples.
 */
function second(board: StatusBoard, fake: FakeProxy, clock: Clock, traffic: Second): void {
  const { leaders = 0, followers = 0, cacheHits = 0, refreshes = 0, passthrough = 0 } = traffic;
  const outcomes: [Outcome, number][] = [
    ["leader", leaders],
    ["follower", followers],
    ["cache", cacheHits],
    ["passthrough", passthrough],
  ];
  for (const [outcome, count] of outcomes) {
    for (let i = 0; i < count; i++) board.call(report(outcome));
  }
  fake.collapser.leaders += leaders;
  fake.collapser.followers += followers;
  fake.collapser.cacheHits += cacheHits;
  fake.collapser.refreshes += refreshes;
  fake.proxy.passthrough += passthrough;
  fake.proxy.backendCalls += leaders + refreshes + passthrough;
  clock.at += 1_000;
  board.sample();
}

/** Lets the board's reaction to a settled probe run (it was registered before ours). */
async function settled(promise: Promise<boolean>): Promise<void> {
  await promise.catch(() => {});
}

Deno.test("StatusBoard.snapshot() before start() throws", () => {
  using board = new StatusBoard({ now: new Clock().now });
  board.sample();
  assert.throws(() => board.snapshot(), { message: "StatusBoard.snapshot() before start()" });
});

Deno.test("StatusBoard.snapshot(): rates over the last 10 s, totals since start, history", async (t) => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now });
  board.start(fake.source);

  await t.step("just after start, over the seconds there are", () => {
    for (let i = 0; i < 3; i++) second(board, fake, clock, { leaders: 4, followers: 12, passthrough: 2 });
    const { now } = board.snapshot();
    assert.deepEqual(now, {
      windowSeconds: 3,
      requestsPerSecond: 18,
      backendCallsPerSecond: 6,
      collapseRatio: 4,
      savedPerSecond: 12,
    });
  });

  // 5 busy seconds (3 above, 2 more), then 10 quiet ones: "now" sees only the quiet ones.
  for (let i = 0; i < 2; i++) second(board, fake, clock, { leaders: 4, followers: 12, passthrough: 2 });
  for (let i = 0; i < 10; i++) {
    second(board, fake, clock, { leaders: 2, followers: 5, cacheHits: 3, refreshes: 1 });
  }

  await t.step("now: the last 10 s", () => {
    assert.equal(clock.at, 15_000);
    assert.deepEqual(board.snapshot().now, {
      windowSeconds: 10,
      requestsPerSecond: 10,
      backendCallsPerSecond: 3,
      collapseRatio: 10 / 3,
      savedPerSecond: 8,
    });
  });

  await t.step("now: between samples, back to the oldest sample at most 10 s old, with calls since", () => {
    clock.at = 15_500;
    for (let i = 0; i < 5; i++) board.call(report("passthrough"));
    fake.proxy.passthrough += 5;
    fake.proxy.backendCalls += 5;
    const { now } = board.snapshot();
    // Samples at 6 s … 15 s; the one at 5 s is 10.5 s old.
    assert.equal(now.windowSeconds, 9.5);
    assert.equal(now.requestsPerSecond, (9 * 10 + 5) / 9.5);
    assert.equal(now.backendCallsPerSecond, (9 * 3 + 5) / 9.5);
    assert.equal(now.collapseRatio, 10 / 3);
    assert.equal(now.savedPerSecond, (9 * 8) / 9.5);
    board.sample(); // at 15.5 s: the last history entry covers 0.5 s
  });

  await t.step("sinceStart: totals", () => {
    assert.deepEqual(board.snapshot().sinceStart, {
      requests: 5 * 18 + 10 * 10 + 5,
      collapsible: 5 * 16 + 10 * 10,
      backendCalls: 5 * 6 + 10 * 3 + 5,
      saved: 5 * 12 + 10 * 8,
      collapseRatio: (5 * 16 + 10 * 10) / (5 * 4 + 10 * 3),
    });
  });

  await t.step("history: one rate per sampled second, oldest first", () => {
    const { history } = board.snapshot();
    assert.equal(history.intervalSeconds, 1);
    assert.deepEqual(history.requestsPerSecond, [...Array(5).fill(18), ...Array(10).fill(10), 5 / 0.5]);
    assert.deepEqual(history.backendCallsPerSecond, [...Array(5).fill(6), ...Array(10).fill(3), 5 / 0.5]);
  });
});

Deno.test("StatusBoard: collapseRatio is null while no backend call was made for collapsible calls", () => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now });
  board.start(fake.source);
  for (let i = 0; i < 3; i++) second(board, fake, clock, { passthrough: 7 });
  const snapshot = board.snapshot();
  assert.equal(snapshot.now.collapseRatio, null);
  assert.equal(snapshot.now.backendCallsPerSecond, 7);
  assert.equal(snapshot.now.savedPerSecond, 0);
  assert.equal(snapshot.sinceStart.collapseRatio, null);
  assert.equal(snapshot.sinceStart.backendCalls, 21);
});

Deno.test("StatusBoard history keeps the last 300 seconds after 400 samples", () => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now, hotKeys: 0 });
  board.start(fake.source); // sample 1
  for (let s = 1; s < 400; s++) second(board, fake, clock, { leaders: s % 7, passthrough: s % 3 });
  const { history } = board.snapshot();
  const seconds = Array.from({ length: 300 }, (_, i) => 100 + i);
  assert.deepEqual(history.requestsPerSecond, seconds.map((s) => (s % 7) + (s % 3)));
  assert.deepEqual(history.backendCallsPerSecond, seconds.map((s) => (s % 7) + (s % 3)));
});

Deno.test("StatusBoard hotKeys", async (t) => {
  await t.step("counts keyed leader, follower and cache calls, with the leader's backend duration", () => {
    const clock = new Clock();
    const fake = new FakeProxy();
    using board = new StatusBoard({ now: clock.now, hotKeys: 10 });
    board.start(fake.source);
    // A leader's backend call ends before its call report.
    board.backendCall({ method: METHOD, code: Status.OK, durationMs: 25, key: KEY_A });
    board.call(report("leader", KEY_A));
    for (let i = 0; i < 5; i++) board.call(report("follower", KEY_A));
    for (let i = 0; i < 2; i++) board.call(report("cache", KEY_A));
    board.call(report("leader", KEY_B));
    board.call(report("follower", KEY_B));
    // Not counted: calls that were not collapsed, and calls without a key.
    board.call(report("passthrough", KEY_B));
    board.call(report("rejected", KEY_B));
    board.call(report("health", KEY_B));
    board.call(report("follower"));
    clock.at = 2_000;
    const { hotKeys, sinceStart } = board.snapshot();
    assert.equal(sinceStart.requests, 14);
    assert.deepEqual(hotKeys, {
      enabled: true,
      capacity: 10,
      keys: [
        {
          method: METHOD,
          key: "a1b2c3d4e5f6",
          callsPerSecond: 4,
          leader: 1 / 8,
          follower: 5 / 8,
          cache: 2 / 8,
          lastBackendMs: 25,
        },
        {
          method: METHOD,
          key: "0123456789ab",
          callsPerSecond: 1,
          leader: 0.5,
          follower: 0.5,
          cache: 0,
          lastBackendMs: undefined,
        },
      ],
    });
  });

  await t.step("at most 20 keys, the hottest first", () => {
    const clock = new Clock();
    using board = new StatusBoard({ now: clock.now, hotKeys: 100 });
    board.start(new FakeProxy().source);
    for (let k = 0; k < 30; k++) {
      const key = k.toString(16).padStart(12, "0").padEnd(64, "9");
      for (let i = 0; i <= k; i++) board.call(report("follower", key));
    }
    const { keys } = board.snapshot().hotKeys;
    assert.equal(keys.length, 20);
    assert.deepEqual(keys.map((h) => h.callsPerSecond), Array.from({ length: 20 }, (_, i) => 30 - i));
  });

  await t.step("the sampler moves the windows on: a key not seen for two windows (10 s) is gone", () => {
    const clock = new Clock();
    const fake = new FakeProxy();
    using board = new StatusBoard({ now: clock.now, hotKeys: 10 });
    board.start(fake.source);
    board.call(report("leader", KEY_A));
    for (let s = 0; s < 9; s++) second(board, fake, clock, {});
    assert.equal(board.snapshot().hotKeys.keys.length, 1, "at 9 s, in the previous window");
    second(board, fake, clock, {});
    assert.deepEqual(board.snapshot().hotKeys.keys, [], "at 10 s");
  });

  await t.step("hotKeys: 0 turns them off", () => {
    using board = new StatusBoard({ now: new Clock().now, hotKeys: 0 });
    board.start(new FakeProxy().source);
    board.backendCall({ method: METHOD, code: Status.OK, durationMs: 25, key: KEY_A });
    board.call(report("leader", KEY_A));
    assert.deepEqual(board.snapshot().hotKeys, { enabled: false, capacity: 0, keys: [] });
  });

  await t.step("on by default, 1,000 counters", () => {
    using board = new StatusBoard({ now: new Clock().now });
    board.start(new FakeProxy().source);
    assert.deepEqual(board.snapshot().hotKeys, { enabled: true, capacity: 1_000, keys: [] });
  });
});

Deno.test("StatusBoard flights: the 20 with the most waiters, 12-hex key prefixes, the tag as method", () => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now });
  board.start(fake.source);
  // 25 flights; waiters a permutation of 1…25; every fifth flight has no tag.
  fake.flights = Array.from({ length: 25 }, (_, i) => ({
    key: i.toString(16).padStart(12, "0") + "e".repeat(52),
    tag: i % 5 === 0 ? undefined : `/svc.S/M${i}`,
    subscribers: ((i * 7) % 25) + 1,
    startedAt: i * 10,
  }));
  fake.collapser.waiting = 300;
  clock.at = 1_000;
  const { flights } = board.snapshot();
  assert.equal(flights.inProgress, 25);
  assert.equal(flights.waiting, 300);
  const expected = [...fake.flights]
    .sort((a, b) => b.subscribers - a.subscribers)
    .slice(0, 20)
    .map((f) => ({
      method: f.tag ?? "",
      key: f.key.slice(0, 12),
      waiters: f.subscribers,
      ageMs: 1_000 - f.startedAt,
    }));
  assert.deepEqual(flights.top, expected);
  assert.deepEqual(flights.top.map((f) => f.waiters), Array.from({ length: 20 }, (_, i) => 25 - i));
  assert.ok(flights.top.every((f) => /^[0-9a-f]{12}$/.test(f.key)));
  assert.ok(flights.top.some((f) => f.method === ""), "an untagged flight shows an empty method");
});

Deno.test("StatusBoard cache, config, draining, version: from the source", async (t) => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now });
  board.start(fake.source);

  await t.step("cache: collapser stats; misses are the calls not served from the cache", () => {
    Object.assign(fake.collapser, {
      leaders: 5,
      followers: 13,
      cacheHits: 11,
      refreshes: 2,
      cacheEntries: 7,
      cacheBytes: 4_096,
      cacheEvictions: 3,
    });
    assert.deepEqual(board.snapshot().cache, {
      entries: 7,
      bytes: 4_096,
      evictions: 3,
      hits: 11,
      misses: 18,
      refreshes: 2,
    });
  });

  await t.step("config: passed through as it is; showConfig() replaces it", () => {
    assert.equal(board.snapshot().config, fake.config);
    const reloaded = { ...fake.config, cacheTtlMs: 250 };
    board.showConfig(reloaded);
    assert.equal(board.snapshot().config, reloaded);
    assert.equal(board.snapshot().backend.target, "127.0.0.1:50051");
  });

  await t.step("draining, version and times", () => {
    assert.equal(board.snapshot().draining, false);
    fake.draining = true;
    const snapshot = board.snapshot();
    assert.equal(snapshot.draining, true);
    assert.equal(snapshot.version, VERSION);
    assert.ok(Math.abs(Date.parse(snapshot.generatedAt) - Date.now()) < 60_000);
    assert.ok(Date.parse(snapshot.startedAt) <= Date.parse(snapshot.generatedAt));
    assert.ok(snapshot.uptimeSeconds >= 0 && snapshot.uptimeSeconds < 60);
  });
});

Deno.test("StatusBoard.showConfig() keeps sampling a StatusSource whose methods live on its prototype", () => {
  // Fails: showConfig() stores `{ ...source, config }`; spreading a class instance copies only its own
  // properties, so proxyStats()/collapserStats()/flights()/draining()/backendReady() are lost and the next
  // sample() (from the interval, after a SIGHUP reload) throws "source.collapserStats is not a function".
  const fake = new FakeProxy();
  class ClassSource implements StatusSource {
    backendTarget = "127.0.0.1:50051";
    config: Record<string, unknown> = fake.config;
    proxyStats(): ProxyStats {
      return fake.source.proxyStats();
    }
    collapserStats(): CollapserStats {
      return fake.source.collapserStats();
    }
    flights(): Iterable<FakeFlight> {
      return fake.source.flights();
    }
    draining(): boolean {
      return fake.source.draining();
    }
    backendReady(timeoutMs: number): Promise<boolean> {
      return fake.source.backendReady(timeoutMs);
    }
  }
  const clock = new Clock();
  using board = new StatusBoard({ now: clock.now });
  board.start(new ClassSource());
  const reloaded = { ...fake.config, cacheTtlMs: 250 };
  board.showConfig(reloaded);
  clock.at = 1_000;
  board.sample();
  const snapshot = board.snapshot();
  assert.equal(snapshot.config, reloaded);
  assert.equal(snapshot.history.requestsPerSecond.length, 1);
});

Deno.test("StatusBoard backend.ready: null until the first probe answers, then the latest answer", async (t) => {
  const clock = new Clock();
  const fake = new FakeProxy();
  using board = new StatusBoard({ now: clock.now });
  board.start(fake.source);
  const ready = () => board.snapshot().backend.ready;

  await t.step("start() probes once, with a 500 ms timeout", () => {
    assert.equal(fake.probes.length, 1);
    assert.equal(fake.probes[0].timeoutMs, 500);
    assert.equal(ready(), null);
  });

  await t.step("the probe's answer", async () => {
    fake.probes[0].resolve(true);
    await settled(fake.probes[0].promise);
    assert.equal(ready(), true);
  });

  await t.step("probed every 5th sample, not per sample", () => {
    for (let i = 0; i < 4; i++) second(board, fake, clock, {});
    assert.equal(fake.probes.length, 1);
    second(board, fake, clock, {});
    assert.equal(fake.probes.length, 2);
    assert.equal(ready(), true, "the last answer until the next one comes");
  });

  await t.step("a probe that fails counts as not ready", async () => {
    fake.probes[1].reject(new Error("connect ECONNREFUSED"));
    await settled(fake.probes[1].promise);
    assert.equal(ready(), false);
  });

  await t.step("ready again", async () => {
    for (let i = 0; i < 5; i++) second(board, fake, clock, {});
    assert.equal(fake.probes.length, 3);
    fake.probes[2].resolve(true);
    await settled(fake.probes[2].promise);
    assert.equal(ready(), true);
  });
});

Deno.test("StatusBoard.start() samples once a second until disposed", () => {
  // Deno's sanitizers do not report an unref'd interval left running, so this checks the timer itself.
  const timers = FakeTimers.install({ toFake: ["setInterval", "clearInterval"] });
  try {
    const fake = new FakeProxy();
    const samples = (board: StatusBoard) => board.snapshot().history.requestsPerSecond.length + 1;
    {
      using board = new StatusBoard({ now: () => timers.now, hotKeys: 0 });
      assert.equal(timers.countTimers(), 0, "no timer before start()");
      board.start(fake.source);
      assert.equal(samples(board), 1, "one sample at start");
      assert.equal(timers.countTimers(), 1);
      timers.tick(3_000);
      assert.equal(samples(board), 4);
      board[Symbol.dispose]();
      assert.equal(timers.countTimers(), 0, "disposed: the interval is cleared");
      timers.tick(3_000);
      assert.equal(samples(board), 4, "no samples after dispose");
    } // disposed again by `using`: harmless
    using never = new StatusBoard({ hotKeys: 0 });
    never[Symbol.dispose](); // never started: harmless
  } finally {
    timers.uninstall();
  }
});
