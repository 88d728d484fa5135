import assert from "node:assert/strict";
import { MAX_PURGE_RECORDS, parsePurgeTarget, PurgeLog, PurgeRequestError } from "../src/policy/purges.ts";

Deno.test("parsePurgeTarget(): one of method, key or tag; anything else is one line saying why", async (t) => {
  await t.step("good requests", () => {
    assert.deepEqual(parsePurgeTarget({ method: "/pkg.Svc/*" }), { kind: "method", value: "/pkg.Svc/*" });
    assert.deepEqual(parsePurgeTarget({ key: "3F1C0A9E2B7D" }), { kind: "key", value: "3f1c0a9e2b7d" });
    assert.deepEqual(parsePurgeTarget({ tag: "product-123" }), { kind: "tag", value: "product-123" });
  });
  const bad: [unknown, RegExp][] = [
    [null, /expected a JSON object/],
    [[{ tag: "a" }], /expected a JSON object/],
    ["tag", /expected a JSON object/],
    [{}, /expected one of method, key or tag/],
    [{ tag: "a", key: "0123456789ab" }, /not several/],
    [{ tags: "a" }, /unknown field "tags" \(expected one of method, key, tag\)/],
    [{ tag: "" }, /tag: expected a non-empty string/],
    [{ tag: 5 }, /tag: expected a non-empty string/],
    [{ tag: "two words" }, /tag: expected a surrogate key/],
    [{ tag: "x".repeat(1025) }, /tag: expected a surrogate key/],
    [{ key: "abc" }, /key: expected 12 to 64 hex digits/],
    [{ key: "z".repeat(12) }, /key: expected 12 to 64 hex digits/],
    [{ method: "pkg.Svc/*" }, /method: invalid method pattern/],
  ];
  for (const [body, reason] of bad) {
    await t.step(JSON.stringify(body).slice(0, 40), () => {
      assert.throws(() => parsePurgeTarget(body), (err: Error) => {
        assert.ok(err instanceof PurgeRequestError);
        assert.match(err.message, reason);
        assert.ok(!err.message.includes("\n"), "one line");
        return true;
      });
    });
  }
});

Deno.test("PurgeLog: a record matches by method glob, key prefix or tag", () => {
  const log = new PurgeLog();
  const method = log.add({ kind: "method", value: "/shop.Catalog/*" }, { origin: "admin" }).record;
  const key = log.add({ kind: "key", value: "abcdef012345" }, { origin: "admin" }).record;
  const tag = log.add({ kind: "tag", value: "p-1" }, { origin: "admin" }).record;
  assert.ok(method.matches("/shop.Catalog/Get", "0".repeat(64), undefined));
  assert.ok(!method.matches("/shop.Cart/Get", "0".repeat(64), undefined));
  assert.ok(!method.matches(undefined, "0".repeat(64), undefined));
  assert.ok(key.matches(undefined, "abcdef012345" + "0".repeat(52), undefined));
  assert.ok(!key.matches(undefined, "abcdef012346" + "0".repeat(52), undefined));
  assert.ok(tag.matches(undefined, "", ["a", "p-1"]));
  assert.ok(!tag.matches(undefined, "", ["p-10"]));
  assert.deepEqual(log.recent(2).map((r) => r.value), ["p-1", "abcdef012345"]);
  assert.equal(log.stats.purges["tag:admin"], 1);
});

Deno.test("PurgeLog.purgedSince(): only purges after the mark, and forgotten ones count", () => {
  const log = new PurgeLog();
  const mark = log.mark;
  assert.equal(log.purgedSince(mark, "/a/b", "k", ["t"]), false, "no purge: nothing to check");
  log.add({ kind: "tag", value: "t" }, { origin: "admin" });
  assert.equal(log.purgedSince(mark, "/a/b", "k", ["t"]), true);
  assert.equal(log.purgedSince(log.mark, "/a/b", "k", ["t"]), false, "a flight that began after it");
  for (let i = 0; i < MAX_PURGE_RECORDS + 1; i++) {
    log.add({ kind: "tag", value: `x${i}` }, { origin: "admin" });
  }
  assert.equal(log.purgedSince(mark, "/a/b", "k", ["nothing"]), true, "purges since the mark were forgotten");
});

Deno.test("PurgeLog fleet purges: applied once per fleet number, checked by the number an answer was stamped with", () => {
  const log = new PurgeLog();
  const first = log.add({ kind: "tag", value: "t" }, { origin: "fleet", fleetSeq: 3 });
  assert.equal(first.fresh, true);
  const again = log.add({ kind: "tag", value: "t" }, { origin: "admin", fleetSeq: 3 });
  assert.equal(again.fresh, false);
  assert.equal(again.record, first.record);
  assert.equal(log.fleetMark, 3);
  assert.equal(log.purgedInFleet(2, "/m", "k", ["t"]), true, "stored before purge 3");
  assert.equal(log.purgedInFleet(3, "/m", "k", ["t"]), false, "its flight began after purge 3");
  assert.equal(log.purgedInFleet(2, "/m", "k", ["u"]), false, "another tag");
  log.add({ kind: "method", value: "/m" }, { origin: "fleet", fleetSeq: 2 }); // heard late, out of order
  assert.equal(log.purgedInFleet(1, "/m", "k", undefined), true);
  log.forgotten(10);
  assert.equal(log.purgedInFleet(9, "/other", "k", undefined), true, "older than what the fleet remembers");
  assert.equal(log.purgedInFleet(10, "/other", "k", undefined), false);
});
