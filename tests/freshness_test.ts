import assert from "node:assert/strict";
import type { OutgoingHttpHeaders } from "node:http2";
import { Freshness } from "../src/policy/freshness.ts";
import { Policy, type PolicyDefaults } from "../src/policy/policy.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import { PurgeLog } from "../src/policy/purges.ts";
import type { LeadRequest } from "../src/policy/retention.ts";
import { Status, type StatusCode } from "../src/wire/grpc_wire.ts";

const METHOD = "/shop.Catalog/GetItem";
const KEY = "ab".repeat(32);

function request(defaults: PolicyDefaults = {}, extra: Partial<LeadRequest> = {}, rules = ""): LeadRequest {
  const policy = new Policy({ ttlMs: 100, ...defaults }, { rules: rules ? parsePolicy(rules, "test") : [] })
    .resolve(METHOD);
  return { method: METHOD, message: new Uint8Array(), headers: {}, key: KEY, policy, ...extra };
}

function keep(
  fresh: Freshness,
  req: LeadRequest,
  headers: OutgoingHttpHeaders | undefined,
  trailers: OutgoingHttpHeaders = {},
  code: StatusCode = Status.OK,
) {
  return fresh.keep(req, code, { headers, trailers });
}

Deno.test("Freshness.keep() without cache-control returns the method's own frozen options", () => {
  const fresh = new Freshness();
  const req = request({ staleIfErrorMs: 5_000 });
  assert.equal(keep(fresh, req, { "x-a": "1" }), req.policy.keepOk, "the same object: nothing allocated");
  assert.deepEqual(keep(fresh, req, {}, {}, Status.NOT_FOUND), { cache: false, reason: "status" });
  assert.equal(fresh.stats.notStored.status, 1);
});

Deno.test("Freshness.keep(): each response directive, from the headers or the trailers", async (t) => {
  const cases: [string, OutgoingHttpHeaders | undefined, OutgoingHttpHeaders, Record<string, unknown>][] = [
    ["max-age sets the TTL", { "cache-control": "max-age=30" }, {}, { cache: true, ttlMs: 30_000 }],
    ["... from the trailers too", undefined, { "cache-control": "max-age=30" }, {
      cache: true,
      ttlMs: 30_000,
    }],
    ["s-maxage wins over max-age", { "cache-control": "max-age=30, s-maxage=10" }, {}, { ttlMs: 10_000 }],
    ["capped by --max-ttl", { "cache-control": "max-age=86400" }, {}, { ttlMs: 60_000 }],
    ["age is taken off", { "cache-control": "max-age=30", age: "12" }, {}, { ttlMs: 18_000, ageMs: 12_000 }],
    ["older than max-age: not fresh", { "cache-control": "max-age=30", age: "40" }, {}, { ttlMs: 0 }],
    ["no-store", { "cache-control": "max-age=30, no-store" }, {}, { cache: false, reason: "no-store" }],
    ["private", { "cache-control": "private, max-age=30" }, {}, { cache: false, reason: "private" }],
    ["no-cache", { "cache-control": "no-cache" }, {}, { cache: false, reason: "no-cache" }],
    ["max-age=0: kept for stale-if-error only", { "cache-control": "max-age=0" }, {}, {
      ttlMs: 0,
      graceMs: 2_000,
    }],
    ["stale-while-revalidate", { "cache-control": "max-age=1, stale-while-revalidate=30" }, {}, {
      ttlMs: 1_000,
      swrMs: 30_000,
    }],
    ["stale-if-error widens the grace", { "cache-control": "stale-if-error=600" }, {}, {
      ttlMs: 100,
      graceMs: 60_000, // capped
    }],
    ["must-revalidate: no stale-if-error", { "cache-control": "max-age=5, must-revalidate" }, {}, {
      ttlMs: 5_000,
      graceMs: 0,
    }],
    ["s-maxage implies proxy-revalidate", { "cache-control": "s-maxage=5" }, {}, { graceMs: 0 }],
    ["... unless stale-if-error says so", { "cache-control": "s-maxage=5, stale-if-error=20" }, {}, {
      graceMs: 20_000,
    }],
    ["public alone: the method's TTL", { "cache-control": "public" }, {}, { ttlMs: 100, graceMs: 2_000 }],
    ["malformed: the method's TTL", { "cache-control": "max-age=-4" }, {}, { ttlMs: 100, graceMs: 2_000 }],
    ["surrogate-key tags", { "surrogate-key": "p-1 catalog" }, { "surrogate-key": "p-2" }, {
      tags: ["p-1", "catalog", "p-2"],
    }],
  ];
  for (const [name, headers, trailers, expected] of cases) {
    await t.step(name, () => {
      const kept = keep(
        new Freshness(),
        request({ staleIfErrorMs: 2_000, maxTtlMs: 60_000 }),
        headers,
        trailers,
      );
      for (const [field, want] of Object.entries(expected)) {
        assert.deepEqual(kept[field as keyof typeof kept], want, `${field} of ${JSON.stringify(kept)}`);
      }
    });
  }
});

Deno.test("Freshness.keep(): nothing to keep (max-age=0, no stale window) is not stored", () => {
  const fresh = new Freshness();
  assert.deepEqual(keep(fresh, request(), { "cache-control": "max-age=0" }), {
    cache: false,
    reason: "zero-ttl",
  });
  assert.equal(fresh.stats.notStored["zero-ttl"], 1);
});

Deno.test("Freshness.keep() counts directives, malformed values and caps", () => {
  const fresh = new Freshness();
  const req = request({ maxTtlMs: 10_000 });
  keep(fresh, req, { "cache-control": "max-age=3600, stale-while-revalidate=x", age: "soon" });
  keep(fresh, req, { "cache-control": "no-store" });
  keep(fresh, req, { "cache-control": "max-age=99999999999999" });
  const s = fresh.stats;
  assert.equal(s.directives["max-age"], 2);
  assert.equal(s.directives["no-store"], 1);
  assert.equal(s.invalid["cache-control"], 1);
  assert.equal(s.invalid.age, 1);
  assert.equal(s.capped, 2, "3600 s past 10 s, and 2^31 s");
  assert.equal(s.notStored["no-store"], 1);
});

Deno.test("Freshness.keep(): a policy rule or the flag turns honouring off; the tags are still read", () => {
  const headers = { "cache-control": "max-age=30, no-store", "surrogate-key": "t" };
  const off = keep(new Freshness(), request({ cacheControl: false }), headers);
  assert.deepEqual(off, { cache: true, ttlMs: 100, graceMs: 0, tags: ["t"] });
  const rule = keep(
    new Freshness(),
    request({}, {}, `rules: [{method: "/shop.*", cacheControl: false}]`),
    headers,
  );
  assert.deepEqual(rule, off);
  assert.equal(keep(new Freshness(), request(), headers).cache, false, "on by default");
});

Deno.test("Freshness.keep(): the backend's word can keep an answer a 0 TTL would not, but not a status that is never cached", () => {
  const fresh = new Freshness();
  const req = request({ ttlMs: 0 });
  assert.deepEqual(keep(fresh, req, {}), { cache: false, reason: "off" });
  assert.equal(keep(fresh, req, { "cache-control": "max-age=5" }).ttlMs, 5_000);
  const error = keep(fresh, req, { "cache-control": "max-age=5" }, {}, Status.UNAVAILABLE);
  assert.deepEqual(error, { cache: false, reason: "status" });
  const listed = request({}, {}, `rules: [{method: "*", cacheErrors: [NOT_FOUND], errorTtl: 1s}]`);
  const notFound = keep(fresh, listed, undefined, { "cache-control": "max-age=20" }, Status.NOT_FOUND);
  assert.equal(notFound.ttlMs, 20_000, "a listed error status takes max-age too");
  assert.equal(notFound.graceMs, 0, "no stale-if-error for errors");
});

Deno.test("Freshness.keep(): an answer a purge named while its call ran is not stored", () => {
  const purges = new PurgeLog();
  const fresh = new Freshness(purges);
  const before = request({}, { since: purges.mark });
  purges.add({ kind: "tag", value: "p-1" }, { origin: "admin" });
  assert.deepEqual(keep(fresh, before, { "surrogate-key": "p-1" }), { cache: false, reason: "purged" });
  assert.equal(keep(fresh, before, { "surrogate-key": "p-2" }).cache, true, "another tag");
  const after = request({}, { since: purges.mark });
  assert.equal(keep(fresh, after, { "surrogate-key": "p-1" }).cache, true, "its call began after the purge");
  purges.add({ kind: "method", value: "/shop.*" }, { origin: "admin" });
  assert.equal(keep(fresh, after, {}).cache, false, "a method purge names it without any header");
  assert.equal(fresh.stats.notStored.purged, 2);
});
