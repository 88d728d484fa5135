import assert from "node:assert/strict";
import {
  MAX_DELTA_SECONDS,
  MAX_SURROGATE_KEYS,
  parseAge,
  parseCacheControl,
  parseSurrogateKeys,
  wantsFresh,
} from "../src/policy/cache_control.ts";

Deno.test("parseCacheControl() reads the directives a shared cache acts on", async (t) => {
  const cases: [string | string[], Partial<ReturnType<typeof parseCacheControl>>][] = [
    ["max-age=60", { maxAgeS: 60 }],
    ["public, max-age=60, s-maxage=30", { maxAgeS: 60, sMaxAgeS: 30 }],
    ["no-store", { noStore: true }],
    ["private", { private: true }],
    ['private="set-cookie"', { private: true }],
    ["no-cache", { noCache: true }],
    ['no-cache="x-a, x-b", max-age=5', { noCache: true, maxAgeS: 5 }],
    ["must-revalidate, proxy-revalidate", { mustRevalidate: true, proxyRevalidate: true }],
    ["max-age=1, stale-while-revalidate=30, stale-if-error=600", {
      maxAgeS: 1,
      staleWhileRevalidateS: 30,
      staleIfErrorS: 600,
    }],
    ['max-age="60"', { maxAgeS: 60 }],
    ["MAX-AGE=7", { maxAgeS: 7 }],
    ["  max-age=7 ,,  no-store  ", { maxAgeS: 7, noStore: true }],
    [["max-age=7", "no-store"], { maxAgeS: 7, noStore: true }],
    ["max-age=7, max-age=99", { maxAgeS: 7 }],
    ["immutable, no-transform, x-ext=1, max-age=3", { maxAgeS: 3 }],
    ["max-age=0", { maxAgeS: 0 }],
  ];
  for (const [value, expected] of cases) {
    await t.step(JSON.stringify(value), () => {
      const d = parseCacheControl(value);
      for (const [field, want] of Object.entries(expected)) {
        assert.equal(d[field as keyof typeof d], want, field);
      }
      assert.equal(d.invalid, 0, "nothing malformed");
    });
  }
});

Deno.test("parseCacheControl() skips and counts what is malformed, and keeps the rest", async (t) => {
  const cases: [string, number, Partial<ReturnType<typeof parseCacheControl>>][] = [
    ["max-age=-5", 1, { maxAgeS: undefined }],
    ["max-age=abc, no-store", 1, { maxAgeS: undefined, noStore: true }],
    ["max-age=1.5", 1, { maxAgeS: undefined }],
    ["max-age=", 1, { maxAgeS: undefined }],
    ["max-age", 1, { maxAgeS: undefined }],
    ["max-age = 5", 1, { maxAgeS: undefined }],
    ["=5, max-age=3", 1, { maxAgeS: 3 }],
    ['max-age="6', 1, { maxAgeS: undefined }],
    ["stale-if-error=soon, s-maxage=9", 1, { staleIfErrorS: undefined, sMaxAgeS: 9 }],
    ["max-age=5 6", 1, { maxAgeS: undefined }],
    ["\u00e9t\u00e9, private", 1, { private: true }],
    ["max-age=-1, max-age=4", 1, { maxAgeS: undefined }], // the first one counts, even malformed
    ["x".repeat(9000), 1, {}],
  ];
  for (const [value, invalid, expected] of cases) {
    await t.step(JSON.stringify(value.slice(0, 40)), () => {
      const d = parseCacheControl(value);
      assert.equal(d.invalid, invalid, "counted");
      for (const [field, want] of Object.entries(expected)) {
        assert.equal(d[field as keyof typeof d], want, field);
      }
    });
  }
});

Deno.test("parseCacheControl() takes a delta-seconds past 2^31 as 2^31, and says so", () => {
  const d = parseCacheControl("max-age=99999999999999999999, stale-if-error=4294967296");
  assert.equal(d.maxAgeS, MAX_DELTA_SECONDS);
  assert.equal(d.staleIfErrorS, MAX_DELTA_SECONDS);
  assert.equal(d.huge, 2);
  assert.equal(d.invalid, 0);
  assert.equal(parseCacheControl(`max-age=${MAX_DELTA_SECONDS}`).huge, 0);
});

Deno.test("parseCacheControl() never throws, whatever it is given (seeded random strings)", () => {
  let seed = 20261202;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const alphabet = 'max-ge=0123456789,; "\\\t-_=nostrecvilpaxyz\u00ff\u0000';
  for (let i = 0; i < 20_000; i++) {
    const length = Math.floor(random() * 60);
    let text = "";
    for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
    const d = parseCacheControl(text);
    assert.ok(d.invalid >= 0 && d.huge >= 0, text);
    for (const field of ["maxAgeS", "sMaxAgeS", "staleWhileRevalidateS", "staleIfErrorS"] as const) {
      const v = d[field];
      assert.ok(
        v === undefined || (Number.isInteger(v) && v >= 0 && v <= MAX_DELTA_SECONDS),
        `${text}: ${v}`,
      );
    }
  }
});

Deno.test("wantsFresh(): a caller's no-cache or max-age=0, and nothing else", () => {
  assert.equal(wantsFresh("no-cache"), true);
  assert.equal(wantsFresh("max-age=0"), true);
  assert.equal(wantsFresh("NO-CACHE, max-stale"), true);
  assert.equal(wantsFresh("max-age=5"), false);
  assert.equal(wantsFresh("no-store"), false);
  assert.equal(wantsFresh("only-if-cached"), false);
  assert.equal(wantsFresh("max-age=abc"), false);
  assert.equal(wantsFresh(undefined), false);
});

Deno.test("parseAge(): delta-seconds or nothing", () => {
  assert.equal(parseAge("30"), 30);
  assert.equal(parseAge(" 30 "), 30);
  assert.equal(parseAge("99999999999"), MAX_DELTA_SECONDS);
  for (const bad of ["-1", "1.5", "soon", "", "1 2"]) assert.equal(parseAge(bad), undefined, bad);
});

Deno.test("parseSurrogateKeys(): space-separated tags, each once, bounded", () => {
  assert.deepEqual(parseSurrogateKeys("product-123  catalog\tproduct-123"), {
    tags: ["product-123", "catalog"],
    skipped: 0,
  });
  assert.deepEqual(parseSurrogateKeys(["a b", "c"]), { tags: ["a", "b", "c"], skipped: 0 });
  assert.deepEqual(parseSurrogateKeys("   "), { tags: undefined, skipped: 0 });
  assert.deepEqual(parseSurrogateKeys(undefined), { tags: undefined, skipped: 0 });
  const many = Array.from({ length: MAX_SURROGATE_KEYS + 5 }, (_, i) => `t${i}`).join(" ");
  const parsed = parseSurrogateKeys(`${many} ${"x".repeat(2000)}`);
  assert.equal(parsed.tags?.length, MAX_SURROGATE_KEYS);
  assert.equal(parsed.skipped, 6);
});
