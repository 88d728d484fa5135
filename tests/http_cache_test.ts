/**
 * The proxy caching like an HTTP cache, on real parts: a grpc-js backend that sets `cache-control`, `age`
 * and `surrogate-key` in its initial or trailing metadata as each request asks, the real proxy (its cache on
 * a clock the test moves), and a grpc-js client reading `cache-status` and `age` off the answers.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { Metrics } from "../src/admin/metrics.ts";
import { Policy, type PolicyDefaults } from "../src/policy/policy.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import { Proxy, type ProxyOptions } from "../src/server/proxy.ts";
import {
  bytes,
  gate,
  metadata,
  newClient,
  parse,
  startTestBackend,
  type TestBackend,
  unary,
  type UnaryResult,
  until,
} from "./_helpers.ts";

const UNARY = "/test.Test/Unary";

/** What a request asks the backend to say about its answer. */
interface Ask {
  item: unknown;
  /** cache-control in the response headers / in the trailers. */
  cc?: string;
  ccTrailer?: string;
  /** surrogate-key, age in the response headers. */
  sk?: string;
  age?: string;
}

/** A backend whose answers carry what each request asks for, numbered; `down` makes it fail UNAVAILABLE. */
async function cachingBackend(hold?: Promise<void>) {
  const state = { down: false, n: 0 };
  const backend = await startTestBackend({
    Unary(call, callback) {
      const ask = parse(call.request) as unknown as Ask;
      const n = ++state.n;
      if (state.down) return callback({ code: grpc.status.UNAVAILABLE, details: "backend down" });
      const headers = new grpc.Metadata();
      if (ask.cc) headers.set("cache-control", ask.cc);
      if (ask.sk) headers.set("surrogate-key", ask.sk);
      if (ask.age) headers.set("age", ask.age);
      const trailers = new grpc.Metadata();
      if (ask.ccTrailer) trailers.set("cache-control", ask.ccTrailer);
      const answer = () => {
        call.sendMetadata(headers);
        callback(null, bytes({ item: ask.item, n }), trailers);
      };
      if (hold) hold.then(answer);
      else answer();
    },
  });
  return { backend, state };
}

/** Backend, proxy (cache on a clock the test moves), client and metrics; dispose closes them. */
async function cacheStack(
  options: { policy?: PolicyDefaults; rules?: string; proxy?: Partial<ProxyOptions>; hold?: Promise<void> } =
    {},
) {
  const { backend, state } = await cachingBackend(options.hold);
  const clock = { now: 1_000_000 };
  const metrics = new Metrics({ defaultMetrics: false });
  const policy = new Policy({ ttlMs: 100, ...options.policy }, {
    rules: options.rules ? parsePolicy(options.rules, "test") : [],
  });
  const proxy = await Proxy.start({
    backend: backend.address,
    host: "127.0.0.1",
    port: 0,
    policy,
    now: () => clock.now,
    observer: metrics,
    ...options.proxy,
  });
  metrics.attach({
    proxyStats: () => proxy.stats(),
    collapserStats: () => proxy.collapser.stats(),
    freshnessStats: () => proxy.freshness.stats,
    purgeStats: () => proxy.purges.stats,
  });
  const client = newClient(proxy.port);
  return {
    backend: backend as TestBackend,
    state,
    proxy,
    client,
    clock,
    metrics,
    call: (ask: Ask, md?: grpc.Metadata) => unary(client, UNARY, ask, { metadata: md }),
    async [Symbol.asyncDispose]() {
      client.close();
      await proxy.close();
      backend.close();
    },
  };
}

const cacheStatus = (r: UnaryResult) => r.status.metadata.get("cache-status")[0] as string | undefined;
const age = (r: UnaryResult) => r.headers?.get("age")[0] as string | undefined;
const n = (r: UnaryResult) => parse(r.response as Buffer).n;
const KEY = /; key="[0-9a-f]{12}"$/;

function ok(r: UnaryResult): UnaryResult {
  assert.equal(r.status.code, grpc.status.OK, r.status.details);
  return r;
}

/** A counter's value in the exposition text (labels as `a="x",b="y"`, in the order the family has them). */
function sample(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

Deno.test("cache-control max-age sets an answer's TTL; a hit says cache-status hit with its ttl, and its age", async () => {
  await using s = await cacheStack();
  const first = ok(await s.call({ item: 1, cc: "max-age=30" }));
  assert.match(cacheStatus(first)!, /^collapser; fwd=miss; stored; key="[0-9a-f]{12}"$/);
  assert.equal(age(first), undefined, "an answer straight from the backend has no age");
  s.clock.now += 10_000; // far past the method's 100 ms
  const hit = ok(await s.call({ item: 1, cc: "max-age=30" }));
  assert.equal(n(hit), n(first), "from the cache");
  assert.equal(age(hit), "10");
  assert.match(cacheStatus(hit)!, /^collapser; hit; ttl=20; key="[0-9a-f]{12}"$/);
  assert.equal(cacheStatus(hit)!.match(KEY)![0], cacheStatus(first)!.match(KEY)![0], "the same key");
  s.clock.now += 20_000;
  const after = ok(await s.call({ item: 1, cc: "max-age=30" }));
  assert.notEqual(n(after), n(first), "past max-age: the backend again");
  assert.equal(s.backend.calls.Unary, 2);
});

Deno.test("cache-control in the trailing metadata counts as in the headers; s-maxage wins; --max-ttl caps", async () => {
  await using s = await cacheStack({ policy: { maxTtlMs: 60_000 } });
  ok(await s.call({ item: "t", ccTrailer: "max-age=30" }));
  s.clock.now += 20_000;
  assert.match(
    cacheStatus(ok(await s.call({ item: "t", ccTrailer: "max-age=30" })))!,
    /^collapser; hit; ttl=10;/,
  );
  ok(await s.call({ item: "s", cc: "max-age=3600, s-maxage=5" }));
  s.clock.now += 6_000;
  assert.match(cacheStatus(ok(await s.call({ item: "s", cc: "max-age=3600, s-maxage=5" })))!, /fwd=miss/);
  ok(await s.call({ item: "cap", cc: "max-age=999999999999" }));
  s.clock.now += 59_000;
  assert.match(cacheStatus(ok(await s.call({ item: "cap", cc: "max-age=999999999999" })))!, /hit; ttl=1;/);
  s.clock.now += 1_000;
  assert.match(cacheStatus(ok(await s.call({ item: "cap", cc: "max-age=999999999999" })))!, /fwd=miss/);
  const text = await s.metrics.text();
  assert.equal(sample(text, "collapser_cache_control_capped_total"), 2, "the huge value, twice answered");
});

Deno.test("no-store, private and no-cache: not stored, and every caller already on the flight still gets the answer", async (t) => {
  for (const directive of ["no-store", "private", "no-cache"]) {
    await t.step(directive, async () => {
      const release = gate();
      await using s = await cacheStack({ hold: release.promise });
      const ask = { item: directive, cc: `max-age=60, ${directive}` };
      const herd = Array.from({ length: 10 }, () => s.call(ask));
      await until(() => s.proxy.collapser.stats().waiting === 10, "10 callers on one flight");
      release.open();
      const results = (await Promise.all(herd)).map(ok);
      assert.equal(s.backend.calls.Unary, 1);
      assert.ok(results.every((r) => n(r) === 1), "everyone on the flight got its answer");
      const statuses = results.map(cacheStatus).sort();
      assert.match(statuses[0]!, new RegExp(`^collapser; fwd=miss; detail=${directive}; collapsed; key=`));
      assert.match(statuses[9]!, new RegExp(`^collapser; fwd=miss; detail=${directive}; key=`), "the leader");
      ok(await s.call(ask));
      assert.equal(s.backend.calls.Unary, 2, "not stored: the next call goes to the backend");
      const text = await s.metrics.text();
      assert.equal(sample(text, "collapser_cache_not_stored_total", `reason="${directive}"`), 2);
      assert.equal(sample(text, "collapser_cache_control_directives_total", `directive="${directive}"`), 2);
    });
  }
});

Deno.test("stale-while-revalidate: past max-age the answer is still a hit (ttl < 0) and is refreshed behind it", async () => {
  await using s = await cacheStack();
  const ask = { item: "swr", cc: "max-age=1, stale-while-revalidate=30" };
  const first = ok(await s.call(ask));
  s.clock.now += 5_000;
  const stale = ok(await s.call(ask));
  assert.equal(n(stale), n(first));
  assert.match(cacheStatus(stale)!, /^collapser; hit; ttl=-4; key=/);
  await until(() => s.backend.calls.Unary === 2 && s.proxy.collapser.stats().inflight === 0, "the refresh");
  const refreshed = ok(await s.call(ask));
  assert.equal(n(refreshed), 2, "the refreshed answer");
  assert.match(cacheStatus(refreshed)!, /^collapser; hit; ttl=1;/);
  s.clock.now += 40_000;
  assert.match(cacheStatus(ok(await s.call(ask)))!, /fwd=miss/, "past the window: a miss");
  const text = await s.metrics.text();
  assert.equal(sample(text, "collapser_served_total", `method="/test.Test/Unary",served="hit_stale"`), 1);
});

Deno.test("stale-if-error: the answer's own window lets its stale copy stand in for a failure, and says so", async () => {
  await using s = await cacheStack(); // the method's stale-if-error is off
  const ask = { item: "sie", cc: "max-age=1, stale-if-error=60" };
  const first = ok(await s.call(ask));
  s.clock.now += 11_000;
  s.state.down = true;
  const stale = ok(await s.call(ask));
  assert.equal(n(stale), n(first), "the last good answer");
  assert.equal(stale.headers?.get("x-collapser-stale")[0], "1");
  assert.equal(age(stale), "11");
  assert.match(cacheStatus(stale)!, /^collapser; fwd=stale; fwd-status=14; ttl=-10; key=/);
  s.clock.now += 60_000;
  const gone = await s.call(ask);
  assert.equal(gone.status.code, grpc.status.UNAVAILABLE, "past its window");
  assert.match(
    cacheStatus(gone)!,
    /^collapser; fwd=miss; detail=status; key=/,
    "the backend's error, not stored",
  );
});

Deno.test("must-revalidate keeps the method's stale-if-error from serving that answer stale", async () => {
  await using s = await cacheStack({ policy: { staleIfErrorMs: 60_000 } });
  ok(await s.call({ item: "mr", cc: "max-age=1, must-revalidate" }));
  ok(await s.call({ item: "plain", cc: "max-age=1" }));
  s.clock.now += 2_000;
  s.state.down = true;
  assert.equal(
    (await s.call({ item: "mr", cc: "max-age=1, must-revalidate" })).status.code,
    grpc.status.UNAVAILABLE,
  );
  assert.equal(
    ok(await s.call({ item: "plain", cc: "max-age=1" })).headers?.get("x-collapser-stale")[0],
    "1",
  );
});

Deno.test("age from the backend counts: fresh for max-age less it, and the age the caller sees includes it", async () => {
  await using s = await cacheStack();
  const ask = { item: "aged", cc: "max-age=30", age: "25" };
  const first = ok(await s.call(ask));
  assert.equal(age(first), "25", "passed through as the backend sent it");
  s.clock.now += 3_000;
  const hit = ok(await s.call(ask));
  assert.equal(age(hit), "28");
  assert.match(cacheStatus(hit)!, /hit; ttl=2;/);
  s.clock.now += 3_000;
  assert.match(cacheStatus(ok(await s.call(ask)))!, /fwd=miss/);
});

Deno.test("malformed cache-control is ignored and counted: the method's TTL applies, nothing fails", async () => {
  await using s = await cacheStack();
  for (const bad of ["max-age=-5", "max-age=abc", "max-age=1.5, =3", 'max-age="6', "max-age=5 6"]) {
    ok(await s.call({ item: bad, cc: bad }));
    s.clock.now += 50;
    assert.match(
      cacheStatus(ok(await s.call({ item: bad, cc: bad })))!,
      /hit; ttl=0;/,
      `${bad}: the method's 100 ms`,
    );
    s.clock.now += 100;
  }
  const text = await s.metrics.text();
  assert.ok(sample(text, "collapser_cache_control_invalid_total", `header="cache-control"`) >= 5);
});

Deno.test("honouring cache-control is switched off by the flag, or for a method by a rule", async (t) => {
  await t.step("--no-cache-control (policy default)", async () => {
    await using s = await cacheStack({ policy: { cacheControl: false } });
    ok(await s.call({ item: 1, cc: "max-age=30" }));
    s.clock.now += 1_000;
    assert.match(cacheStatus(ok(await s.call({ item: 1, cc: "max-age=30" })))!, /fwd=miss/, "100 ms only");
    ok(await s.call({ item: 2, cc: "no-store" }));
    assert.match(cacheStatus(ok(await s.call({ item: 2, cc: "no-store" })))!, /hit/, "no-store ignored too");
  });
  await t.step("a rule's cacheControl: false", async () => {
    await using s = await cacheStack({ rules: `rules: [{method: "/test.Test/*", cacheControl: false}]` });
    ok(await s.call({ item: 1, cc: "max-age=30" }));
    s.clock.now += 1_000;
    assert.match(cacheStatus(ok(await s.call({ item: 1, cc: "max-age=30" })))!, /fwd=miss/);
  });
});

Deno.test("--no-cache-status: no cache-status on answers (the age of a cached one stays)", async () => {
  await using s = await cacheStack({ proxy: { cacheStatus: false } });
  ok(await s.call({ item: 1, cc: "max-age=30" }));
  s.clock.now += 2_000;
  const hit = ok(await s.call({ item: 1, cc: "max-age=30" }));
  assert.equal(cacheStatus(hit), undefined);
  assert.equal(age(hit), "2");
  const text = await s.metrics.text();
  assert.equal(
    sample(text, "collapser_served_total", `method="/test.Test/Unary",served="hit"`),
    1,
    "still counted",
  );
});

Deno.test("a caller's cache-control: no-cache is ignored and counted unless allowed; allowed, it refreshes the cache", async (t) => {
  const noCache = () => metadata({ "cache-control": "no-cache" });
  await t.step("not allowed (the default): answered from the cache, counted as ignored", async () => {
    await using s = await cacheStack();
    ok(await s.call({ item: 1, cc: "max-age=30" }));
    const hit = ok(await s.call({ item: 1, cc: "max-age=30" }, noCache()));
    assert.match(cacheStatus(hit)!, /^collapser; hit;/);
    assert.equal(s.backend.calls.Unary, 1);
    const text = await s.metrics.text();
    assert.equal(sample(text, "collapser_client_no_cache_total", `result="ignored"`), 1);
    assert.equal(s.backend.metadata[0].get("cache-control").length, 0, "(the leader sent none)");
  });
  await t.step("allowed by a rule: a fresh backend call whose answer replaces the cached one", async () => {
    await using s = await cacheStack({ rules: `rules: [{method: "/test.Test/*", clientNoCache: true}]` });
    const first = ok(await s.call({ item: 1, cc: "max-age=30" }));
    const fresh = ok(await s.call({ item: 1, cc: "max-age=30" }, metadata({ "cache-control": "max-age=0" })));
    assert.notEqual(n(fresh), n(first));
    assert.match(cacheStatus(fresh)!, /^collapser; fwd=request; stored; key=/);
    const after = ok(await s.call({ item: 1, cc: "max-age=30" }));
    assert.equal(n(after), n(fresh), "the cache holds the fresh answer");
    assert.equal(
      cacheStatus(after)!.match(KEY)![0],
      cacheStatus(first)!.match(KEY)![0],
      "cache-control is not in the key",
    );
    const text = await s.metrics.text();
    assert.equal(sample(text, "collapser_client_no_cache_total", `result="bypassed"`), 1);
    assert.equal(
      sample(text, "collapser_served_total", `method="/test.Test/Unary",served="bypass_stored"`),
      1,
    );
  });
  await t.step("allowed by the flag", async () => {
    await using s = await cacheStack({ policy: { clientNoCache: true } });
    ok(await s.call({ item: 1 }));
    ok(await s.call({ item: 1 }, noCache()));
    assert.equal(s.backend.calls.Unary, 2);
  });
});

Deno.test("metrics split answers by how they were served", async () => {
  const release = gate();
  await using s = await cacheStack({ hold: release.promise });
  const herd = Array.from({ length: 5 }, () => s.call({ item: "m", cc: "max-age=30" }));
  await until(() => s.proxy.collapser.stats().waiting === 5, "5 callers on one flight");
  release.open();
  (await Promise.all(herd)).map(ok);
  ok(await s.call({ item: "m", cc: "max-age=30" }));
  ok(await s.call({ item: "x", cc: "no-store" }));
  const text = await s.metrics.text();
  const served = (label: string) =>
    sample(text, "collapser_served_total", `method="/test.Test/Unary",served="${label}"`);
  assert.equal(served("miss_stored"), 5, "the leader and its 4 followers");
  assert.equal(served("hit"), 1);
  assert.equal(served("miss_not_stored"), 1);
  assert.equal(
    sample(text, "collapser_requests_total", `method="/test.Test/Unary",outcome="follower",code="OK"`),
    4,
  );
});

Deno.test("a passed-through call carries no cache-status: the cache had no part in it", async () => {
  await using s = await cacheStack({ rules: `rules: [{method: "/test.Test/*", collapse: false}]` });
  const r = ok(await s.call({ item: 1, cc: "max-age=30" }));
  assert.equal(cacheStatus(r), undefined);
  assert.equal(r.headers?.get("cache-control")[0], "max-age=30", "the backend's own cache-control passes");
});

Deno.test("a cached error (a rule's cacheErrors) answered trailers-only carries its age and cache-status in its one header block", async () => {
  const notFound = await startTestBackend({
    Unary(_call, callback) {
      callback({
        code: grpc.status.NOT_FOUND,
        details: "no such item",
        metadata: metadata({ "cache-control": "max-age=30" }),
      });
    },
  });
  const clock = { now: 1_000_000 };
  const proxy = await Proxy.start({
    backend: notFound.address,
    host: "127.0.0.1",
    port: 0,
    now: () => clock.now,
    policy: new Policy({ ttlMs: 100 }, {
      rules: parsePolicy(`rules: [{method: "*", cacheErrors: [NOT_FOUND], errorTtl: 1s}]`, "test"),
    }),
  });
  const client = newClient(proxy.port);
  try {
    const first = await unary(client, UNARY, { item: 1 });
    assert.equal(first.status.code, grpc.status.NOT_FOUND);
    assert.match(String(first.status.metadata.get("cache-status")[0]), /^collapser; fwd=miss; stored; key=/);
    clock.now += 5_000; // past errorTtl: max-age=30 keeps it
    const hit = await unary(client, UNARY, { item: 1 });
    assert.equal(hit.status.code, grpc.status.NOT_FOUND);
    assert.equal(hit.status.details, "no such item");
    assert.equal(hit.status.metadata.get("age")[0], "5");
    assert.match(String(hit.status.metadata.get("cache-status")[0]), /^collapser; hit; ttl=25; key=/);
    assert.equal(notFound.calls.Unary, 1);
  } finally {
    client.close();
    await proxy.close();
    notFound.close();
  }
});
