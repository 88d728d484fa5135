import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Collapser, type Flight, type Subscriber } from "../src/core/collapser.ts";

/** A subscriber that records what it got. */
function recorder(): Subscriber<string> & { events: string[]; ended: number } {
  const r = {
    events: [] as string[],
    ended: 0,
    event(e: string) {
      r.events.push(e);
    },
    end() {
      r.ended++;
    },
  };
  return r;
}

/** Go singleflight's TestDoDupSuppress: hold the producer, fire N callers, release, exactly one call. */
Deno.test("Collapser.join() shares one producer among 1000 subscribers", () => {
  const collapser = new Collapser<string>({ ttlMs: 0 });
  let started = 0;
  let held: Flight<string> | undefined;
  const subscribers = Array.from({ length: 1000 }, () => recorder());
  const roles = subscribers.map((s) =>
    collapser.join("k", s, (flight) => {
      started++;
      held = flight;
    }).role
  );
  assert.equal(started, 1);
  assert.deepEqual(roles.filter((r) => r === "leader").length, 1);
  assert.equal(collapser.stats().waiting, 1000);
  held!.emit("answer");
  held!.finish({ cache: false });
  for (const s of subscribers) {
    assert.deepEqual(s.events, ["answer"]);
    assert.equal(s.ended, 1);
  }
  assert.deepEqual(
    { ...collapser.stats() },
    {
      leaders: 1,
      followers: 999,
      cacheHits: 0,
      refreshes: 0,
      inflight: 0,
      waiting: 0,
      cacheEntries: 0,
      cacheBytes: 0,
      cacheEvictions: 0,
    },
  );
});

Deno.test("Collapser.join() replays events recorded so far to a late follower, then live ones", () => {
  const collapser = new Collapser<string>();
  let flight: Flight<string> | undefined;
  const early = recorder();
  collapser.join("k", early, (f) => flight = f);
  flight!.emit("headers");
  const late = recorder();
  assert.equal(collapser.join("k", late, () => assert.fail("no second producer")).role, "follower");
  assert.deepEqual(late.events, ["headers"]);
  flight!.emit("message");
  flight!.finish({ cache: false });
  assert.deepEqual(early.events, ["headers", "message"]);
  assert.deepEqual(late.events, ["headers", "message"]);
});

Deno.test("Collapser caches a finished recording for the TTL, using the given clock", async (t) => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now, sizeOf: (e) => e.length });
  let produced = 0;
  const produce = (flight: Flight<string>) => {
    produced++;
    flight.emit(`answer ${produced}`);
    flight.finish({ cache: true });
  };
  await t.step("the first subscriber leads", () => {
    const r = recorder();
    assert.equal(collapser.join("k", r, produce).role, "leader");
    assert.deepEqual(r.events, ["answer 1"]);
  });
  await t.step("within the TTL subscribers get the recording", () => {
    clock.tick(99);
    const r = recorder();
    assert.equal(collapser.join("k", r, produce).role, "cache");
    assert.deepEqual(r.events, ["answer 1"]);
    assert.equal(r.ended, 1);
    assert.equal(collapser.stats().cacheBytes, "answer 1".length);
  });
  await t.step("at the TTL the recording has expired", () => {
    clock.tick(1);
    const r = recorder();
    assert.equal(collapser.join("k", r, produce).role, "leader");
    assert.deepEqual(r.events, ["answer 2"]);
    assert.equal(produced, 2);
  });
  await t.step("forget() drops it early", () => {
    collapser.forget("k");
    assert.equal(collapser.join("k", recorder(), produce).role, "leader");
  });
});

Deno.test("Collapser does not cache a flight finished with cache: false, nor with TTL 0", async (t) => {
  for (const ttlMs of [0, 100]) {
    await t.step(`ttlMs ${ttlMs}`, () => {
      const collapser = new Collapser<string>({ ttlMs });
      collapser.join("k", recorder(), (f) => f.finish({ cache: ttlMs === 0 }));
      assert.equal(collapser.join("k", recorder(), (f) => f.finish({ cache: false })).role, "leader");
      assert.equal(collapser.stats().cacheEntries, 0);
    });
  }
});

Deno.test("Collapser: a subscriber that leaves stops receiving; the producer goes on for the others", () => {
  const collapser = new Collapser<string>();
  let flight: Flight<string> | undefined;
  let idle = 0;
  const leader = recorder();
  const follower = recorder();
  const membership = collapser.join("k", leader, (f) => {
    flight = f;
    f.onIdle = () => idle++;
  });
  collapser.join("k", follower, () => {});
  membership.leave();
  membership.leave();
  assert.equal(collapser.stats().waiting, 1);
  assert.equal(idle, 0);
  flight!.emit("answer");
  flight!.finish({ cache: true });
  assert.deepEqual(leader.events, []);
  assert.deepEqual(follower.events, ["answer"]);
  assert.equal(
    collapser.join("k", recorder(), () => {}).role,
    "cache",
    "the leader's result is still cached",
  );
});

Deno.test("Collapser calls onIdle when the last subscriber leaves an unfinished flight", () => {
  const collapser = new Collapser<string>();
  let idle = 0;
  const a = collapser.join("k", recorder(), (f) => f.onIdle = () => idle++);
  const b = collapser.join("k", recorder(), () => {});
  a.leave();
  assert.equal(idle, 0);
  b.leave();
  assert.equal(idle, 1);
  assert.equal(collapser.stats().waiting, 0);
});

Deno.test("Flight.unshare() lets nobody else join and caches nothing, but keeps serving its subscribers", () => {
  const collapser = new Collapser<string>();
  let flight: Flight<string> | undefined;
  const first = recorder();
  collapser.join("k", first, (f) => flight = f);
  flight!.emit("m1");
  flight!.unshare();
  assert.equal(flight!.shared, false);
  let second: Flight<string> | undefined;
  const other = recorder();
  assert.equal(collapser.join("k", other, (f) => second = f).role, "leader");
  flight!.emit("m2");
  flight!.finish({ cache: true });
  assert.deepEqual(first.events, ["m1", "m2"]);
  assert.deepEqual(other.events, []);
  assert.equal(collapser.inflight("k"), second, "the finished unshared flight did not remove the new one");
  assert.equal(collapser.stats().cacheEntries, 0);
});

Deno.test("Collapser drops a subscriber whose callback throws and serves the rest", () => {
  const collapser = new Collapser<string>();
  let flight: Flight<string> | undefined;
  let ended = 0;
  const bad: Subscriber<string> = {
    event() {
      throw new Error("broken pipe");
    },
    end() {
      ended++;
    },
  };
  const good = recorder();
  collapser.join("k", bad, (f) => flight = f);
  collapser.join("k", good, () => {});
  flight!.emit("x");
  assert.equal(ended, 1);
  assert.equal(collapser.stats().waiting, 1);
  flight!.finish({ cache: false });
  assert.deepEqual(good.events, ["x"]);
});

Deno.test("Collapser keeps keys apart", () => {
  const collapser = new Collapser<string>({ ttlMs: 0 });
  let started = 0;
  for (const key of ["a", "b", "a", "c", "b"]) collapser.join(key, recorder(), () => started++);
  assert.equal(started, 3);
  assert.equal(collapser.stats().inflight, 3);
});

Deno.test("new Collapser() rejects a negative or non-finite TTL", () => {
  for (const ttlMs of [-1, NaN, Infinity]) {
    assert.throws(() => new Collapser({ ttlMs }), RangeError);
  }
});

Deno.test("Collapser.join() finishes the flight of a producer that throws on start, so nobody waits on it", () => {
  const collapser = new Collapser<string>();
  assert.throws(() =>
    collapser.join("k", recorder(), () => {
      throw new Error("cannot start");
    }), /cannot start/);
  assert.equal(collapser.stats().inflight, 0);
  assert.equal(collapser.stats().waiting, 0);
  let started = 0;
  assert.equal(collapser.join("k", recorder(), () => started++).role, "leader");
  assert.equal(started, 1);
});

Deno.test("Collapser refreshes a hot recording in the background shortly before it expires", async (t) => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  const flights: Flight<string>[] = [];
  const start = (flight: Flight<string>) => flights.push(flight);
  const answer = (flight: Flight<string>, value: string) => {
    flight.emit(value);
    flight.finish({ cache: true });
  };

  await t.step("a producer that takes 20 ms is cached when it finishes", () => {
    collapser.join("k", recorder(), start);
    clock.tick(20);
    answer(flights[0], "v1");
  });
  await t.step("hits with more than 20 ms of life left start nothing", () => {
    clock.tick(79); // 21 ms left
    const r = recorder();
    assert.equal(collapser.join("k", r, start).role, "cache");
    assert.deepEqual(r.events, ["v1"]);
    assert.equal(flights.length, 1);
  });
  await t.step(
    "the first hit in the last 20 ms starts one refresh and is still answered from the cache",
    () => {
      clock.tick(1); // 20 ms left
      for (let i = 0; i < 3; i++) {
        const r = recorder();
        assert.equal(collapser.join("k", r, start).role, "cache");
        assert.deepEqual(r.events, ["v1"]);
      }
      assert.equal(flights.length, 2, "one refresh, not one per hit");
      assert.equal(collapser.stats().refreshes, 1);
    },
  );
  await t.step("after the old recording expires, callers join the refresh rather than start another", () => {
    clock.tick(20); // the old recording has expired
    const r = recorder();
    assert.equal(collapser.join("k", r, start).role, "follower");
    assert.equal(flights.length, 2);
    answer(flights[1], "v2");
    assert.deepEqual(r.events, ["v2"]);
    assert.equal(collapser.join("k", recorder(), start).role, "cache");
  });
  await t.step(
    "a refresh that fails leaves the old recording to expire, and is not retried on every hit",
    () => {
      clock.tick(81); // v2: 19 ms left
      collapser.join("k", recorder(), start);
      assert.equal(flights.length, 3);
      flights[2].emit("error");
      flights[2].finish({ cache: false });
      const r = recorder();
      assert.equal(collapser.join("k", r, start).role, "cache");
      assert.deepEqual(r.events, ["v2"]);
      assert.equal(flights.length, 3, "no second refresh of the same recording");
    },
  );
});

Deno.test("Collapser with refreshAhead: false never calls the producer before the TTL ends", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now, refreshAhead: false });
  let started = 0;
  const start = (flight: Flight<string>) => {
    started++;
    clock.tick(50);
    flight.emit("v");
    flight.finish({ cache: true });
  };
  collapser.join("k", recorder(), start);
  clock.tick(99);
  assert.equal(collapser.join("k", recorder(), start).role, "cache");
  assert.equal(started, 1);
});

Deno.test("Collapser refresh-ahead: a burst answered in the first half of the TTL never refreshes, however slow the producer", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 200, now: () => clock.now });
  const flights: Flight<string>[] = [];
  const start = (flight: Flight<string>) => flights.push(flight);
  collapser.join("k", recorder(), start);
  clock.tick(313); // the producer took longer than the TTL (a herd kept the event loop busy)
  flights[0].emit("v1");
  flights[0].finish({ cache: true });
  for (let i = 0; i < 99; i++) {
    assert.equal(collapser.join("k", recorder(), start).role, "cache");
    clock.tick(1); // the tail of the herd, 99 ms of it
  }
  assert.equal(flights.length, 1, "no refresh in the first half of the recording's life");
  clock.tick(1); // 100 ms: half the TTL left, and the producer took longer than that
  assert.equal(collapser.join("k", recorder(), start).role, "cache");
  assert.equal(flights.length, 2, "a key still asked for at half-life is hot: one refresh");
});

Deno.test("Collapser.join() with refreshAhead: false never refreshes that join's hit", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  let started = 0;
  const start = (flight: Flight<string>) => {
    started++;
    clock.tick(20);
    flight.emit("v");
    flight.finish({ cache: true });
  };
  collapser.join("k", recorder(), start);
  clock.tick(90);
  assert.equal(collapser.join("k", recorder(), start, { refreshAhead: false }).role, "cache");
  assert.equal(started, 1);
  assert.equal(collapser.join("k", recorder(), start, { refreshAhead: true }).role, "cache");
  assert.equal(started, 2);
});

Deno.test("Collapser caches each recording for the TTL its finish names", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  const finishWith = (ttlMs: number | undefined) => (flight: Flight<string>) => {
    flight.emit(`ttl ${ttlMs}`);
    flight.finish({ cache: true, ttlMs });
  };
  collapser.join("default", recorder(), finishWith(undefined));
  collapser.join("long", recorder(), finishWith(1_000));
  collapser.join("none", recorder(), finishWith(0));
  clock.tick(100);
  assert.equal(collapser.join("default", recorder(), finishWith(undefined)).role, "leader");
  assert.equal(collapser.join("none", recorder(), finishWith(0)).role, "leader");
  const r = recorder();
  assert.equal(collapser.join("long", r, finishWith(1_000), { refreshAhead: false }).role, "cache");
  assert.deepEqual(r.events, ["ttl 1000"]);
});

Deno.test("Collapser.stale() returns a recording past its TTL and within its grace, for that key only", async (t) => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  collapser.join("k", recorder(), (flight) => {
    flight.emit("good answer");
    flight.finish({ cache: true, graceMs: 1_000 });
  });
  await t.step("not while fresh", () => assert.equal(collapser.stale("k"), undefined));
  await t.step("past the TTL: a new producer runs, and stale() has the old answer", () => {
    clock.tick(100);
    let flight: Flight<string> | undefined;
    assert.equal(collapser.join("k", recorder(), (f) => flight = f).role, "leader");
    assert.deepEqual(collapser.stale("k")?.events, ["good answer"]);
    assert.equal(collapser.stale("other"), undefined, "never another key's");
    flight!.emit("failure");
    flight!.finish({ cache: false });
    assert.deepEqual(collapser.stale("k")?.events, ["good answer"], "a failure does not replace it");
  });
  await t.step("past the grace: gone", () => {
    clock.tick(1_000);
    assert.equal(collapser.stale("k"), undefined);
  });
});

Deno.test("Collapser: a recording handed over with its producer's own duration (tookMs) refreshes that early, and the refresh flight says so", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  const flights: Flight<string>[] = [];
  const start = (flight: Flight<string>) => flights.push(flight);
  // Answered at once (an answer from elsewhere), but the call that made it took 30 ms.
  collapser.join("k", recorder(), start);
  assert.equal(flights[0].refresh, false);
  flights[0].emit("v1");
  flights[0].finish({ cache: true, ttlMs: 100, tookMs: 30 });
  clock.tick(69); // 31 ms left: no refresh yet
  collapser.join("k", recorder(), start);
  assert.equal(flights.length, 1);
  clock.tick(1); // 30 ms left: the window of a 30 ms producer
  collapser.join("k", recorder(), start);
  assert.equal(flights.length, 2, "refreshed 30 ms before expiry, not at expiry");
  assert.equal(flights[1].refresh, true);
});

Deno.test("Collapser: onFinish is told the recording and how it is kept, after the subscribers", () => {
  const collapser = new Collapser<string>({ ttlMs: 100 });
  const seen: Record<string, unknown>[] = [];
  const r = recorder();
  collapser.join("k", r, (flight) => {
    flight.onFinish = (events, kept) => seen.push({ events, kept, subscriberEnded: r.ended });
    flight.emit("a");
    flight.finish({ cache: true });
  });
  assert.deepEqual(seen[0], { events: ["a"], kept: { cache: true }, subscriberEnded: 1 });
  collapser.join("s", recorder(), (flight) => {
    flight.onFinish = (events, kept) => seen.push({ events, kept, unshared: true });
    flight.unshare();
    flight.finish({ cache: true });
  });
  assert.equal(seen.length, 2);
  assert.equal(seen[1].events, undefined, "a flight that stopped being shared has no recording");
});

Deno.test("Flight.finish(options, last): the recording is stored first, then each subscriber is told so, gets the last event and end()", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ ttlMs: 100, now: () => clock.now });
  const seen: string[] = [];
  const subscriber: Subscriber<string> = {
    event: (e) => seen.push(`event ${e} (cached: ${collapser.stats().cacheEntries})`),
    end: () => seen.push("end"),
    finishing: (stored, options) => seen.push(`finishing stored=${stored} ttl=${options.ttlMs}`),
  };
  let flight!: Flight<string>;
  collapser.join("k", subscriber, (f) => flight = f);
  const follower = recorder();
  collapser.join("k", follower, () => assert.fail("a second producer"));
  flight.emit("message");
  flight.finish({ cache: true, ttlMs: 50 }, "status");
  assert.deepEqual(seen, [
    "event message (cached: 0)",
    "finishing stored=true ttl=50",
    "event status (cached: 1)",
    "end",
  ]);
  assert.deepEqual(follower.events, ["message", "status"]);
  const hit = recorder();
  collapser.join("k", hit, () => assert.fail("not a hit"));
  assert.deepEqual(hit.events, ["message", "status"], "the last event is part of the recording");
  let told: boolean | undefined;
  let other!: Flight<string>;
  collapser.join("big", { event() {}, end() {}, finishing: (stored) => told = stored }, (f) => other = f);
  other.finish({ cache: false }, "status");
  assert.equal(told, false);
});

Deno.test("Collapser tells a cache hit the answer's age and freshness left, before replaying it", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ now: () => clock.now });
  let flight!: Flight<string>;
  collapser.join("k", recorder(), (f) => flight = f);
  flight.finish({ cache: true, ttlMs: 10_000, ageMs: 3_000 }, "answer");
  clock.tick(4_000);
  const told: string[] = [];
  collapser.join("k", {
    cached: (ageMs, freshMs) => told.push(`age ${ageMs} fresh ${freshMs}`),
    event: (e) => told.push(e),
    end() {},
  }, () => assert.fail("not a hit"));
  assert.deepEqual(told, ["age 7000 fresh 6000", "answer"]);
});

Deno.test("Collapser stale-while-revalidate: replayed past its TTL for the window, each such hit refreshing it once", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ now: () => clock.now });
  let starts = 0;
  let flight!: Flight<string>;
  const start = (f: Flight<string>) => {
    starts++;
    flight = f;
  };
  collapser.join("k", recorder(), start, { refreshAhead: false });
  flight.finish({ cache: true, ttlMs: 1_000, swrMs: 5_000 }, "v1");
  clock.tick(2_000);
  let fresh: number | undefined;
  const hit = { ...recorder(), cached: (_age: number, freshMs: number) => fresh = freshMs };
  assert.equal(collapser.join("k", hit, start, { refreshAhead: false }).role, "cache");
  assert.equal(fresh, -1_000, "negative: stale");
  assert.equal(starts, 2, "the stale hit refreshed it, refresh-ahead off or not");
  assert.equal(collapser.join("k", recorder(), start).role, "cache");
  assert.equal(starts, 2, "one refresh at a time");
  flight.finish({ cache: true, ttlMs: 1_000, swrMs: 5_000 }, "v2");
  const after = recorder();
  collapser.join("k", after, start);
  assert.deepEqual(after.events, ["v2"]);
  clock.tick(6_000);
  assert.equal(collapser.join("k", recorder(), start).role, "leader", "past the window: a miss");
});

Deno.test("Collapser.join() with bypass: a new producer whatever is cached or in flight; the displaced flight answers its own and is not cached", () => {
  const collapser = new Collapser<string>({ ttlMs: 60_000 });
  const flights: Flight<string>[] = [];
  const start = (f: Flight<string>) => flights.push(f);
  collapser.join("k", recorder(), start);
  flights[0].finish({ cache: true }, "cached");
  const early = recorder();
  collapser.join("other", early, start); // flights[1], then displaced below
  const bypass = { bypass: true };
  assert.equal(collapser.join("k", recorder(), start, bypass).role, "leader", "skips the cache");
  const behind = recorder();
  assert.equal(collapser.join("k", behind, start).role, "cache", "others still hit the old answer meanwhile");
  assert.equal(collapser.join("other", recorder(), start, bypass).role, "leader", "skips the flight");
  const joiner = recorder();
  assert.equal(collapser.join("other", joiner, start).role, "follower");
  assert.equal(flights.length, 4);
  assert.equal(flights[1].shared, false, "displaced: takes no one new");
  flights[1].finish({ cache: true }, "old");
  assert.deepEqual(early.events, ["old"], "its callers still get it");
  flights[3].finish({ cache: true }, "new");
  assert.deepEqual(joiner.events, ["new"]);
  flights[2].finish({ cache: true }, "fresh");
  const hit = recorder();
  collapser.join("k", hit, start);
  assert.deepEqual(hit.events, ["fresh"], "the bypass's answer replaced the cached one");
  const other = recorder();
  collapser.join("other", other, start);
  assert.deepEqual(other.events, ["new"], "not the displaced flight's");
});

Deno.test("Collapser.purge() drops matching recordings (fresh or stale) and retires matching flights", () => {
  const clock = FakeTimers.createClock();
  const collapser = new Collapser<string>({ now: () => clock.now });
  const flights = new Map<string, Flight<string>>();
  const lead = (key: string, label: string) =>
    collapser.join(key, recorder(), (f) => {
      f.tag = label;
      flights.set(key, f);
    });
  lead("a1", "/a/M");
  flights.get("a1")!.finish({ cache: true, ttlMs: 1_000, tags: ["t1"] }, "A1");
  lead("a2", "/a/M");
  flights.get("a2")!.finish({ cache: true, ttlMs: 10, graceMs: 5_000 }, "A2");
  lead("b1", "/b/M");
  flights.get("b1")!.finish({ cache: true, ttlMs: 1_000, tags: ["t1", "t2"] }, "B1");
  lead("a3", "/a/M"); // running
  const waiting = recorder();
  collapser.join("a3", waiting, () => assert.fail("a second producer"));
  clock.tick(20); // a2 is stale now, within its grace
  const byLabel = collapser.purge((_key, label) => label === "/a/M");
  assert.deepEqual(byLabel, { entries: 2, flights: 1 });
  assert.equal(collapser.stale("a2"), undefined, "a stale recording goes too");
  assert.equal(collapser.inflight("a3"), undefined, "the running flight takes no one new");
  flights.get("a3")!.finish({ cache: true }, "A3");
  assert.deepEqual(waiting.events, ["A3"], "its callers still get it");
  assert.equal(
    collapser.join("a3", recorder(), (f) => flights.set("a3", f)).role,
    "leader",
    "and it was not cached",
  );
  assert.deepEqual(collapser.purge((_k, _l, tags) => tags?.includes("t2") ?? false), {
    entries: 1,
    flights: 0,
  });
  assert.equal(collapser.stats().cacheEntries, 0);
});
