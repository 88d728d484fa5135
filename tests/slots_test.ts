/**
 * Redis Cluster hash slots as the tier computes them (src/fleet/slots.ts): CRC16 and hash tags as Redis
 * defines them, the bucket tags every proxy must agree on (pinned: changing them would split a fleet of
 * mixed versions), and collapse keys spread evenly over the buckets. tests/redis_cluster_test.ts checks the
 * same against a real cluster's CLUSTER KEYSLOT.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { bucketOf, bucketTags, CLUSTER_BUCKETS, crc16, keySlot } from "../src/fleet/slots.ts";

Deno.test("keySlot() follows Redis: CRC16-XMODEM mod 16384, of the first non-empty {hash tag}", () => {
  assert.equal(crc16(new TextEncoder().encode("123456789")), 0x31c3, "the XMODEM check value");
  const slot = (text: string) => crc16(new TextEncoder().encode(text)) % 16384;
  // The examples of the Redis Cluster specification.
  const cases: [string, number][] = [
    ["foo", 12182],
    ["{user1000}.following", 3443],
    ["{user1000}.followers", 3443],
    ["foo{}{bar}", slot("foo{}{bar}")],
    ["foo{{bar}}zap", slot("{bar")],
    ["foo{bar}{zap}", slot("bar")],
    ["ключ", slot("ключ")],
  ];
  for (const [key, expected] of cases) assert.equal(keySlot(key), expected, key);
});

Deno.test("bucketTags(): 1,024 tags, bucket b on slot 16 × b, pinned so every proxy version agrees", () => {
  const tags = bucketTags();
  assert.equal(tags.length, CLUSTER_BUCKETS);
  assert.equal(new Set(tags).size, CLUSTER_BUCKETS);
  tags.forEach((tag, b) => assert.equal(keySlot(`x{${tag}}y`), b * 16, `bucket ${b}`));
  assert.deepEqual(tags.slice(0, 8), ["1bz", "8yr", "e8a", "9m1", "5n3", "avs", "4zp", "yi8"]);
  const digest = createHash("sha256").update(tags.join(",")).digest("hex").slice(0, 16);
  assert.equal(digest, PINNED_DIGEST, "the tags changed: proxies of different versions would not share");
  assert.equal(bucketTags(), tags, "computed once");
});

const PINNED_DIGEST = "86ff4cacb05b873c";

Deno.test("bucketOf(): collapse keys (SHA-256 hex) spread evenly over the buckets", () => {
  assert.equal(bucketOf("0".repeat(64)), 0);
  assert.equal(bucketOf("f".repeat(64)), 1023);
  assert.equal(bucketOf("abc" + "0".repeat(61)), 0xabc >> 2);
  const counts = new Array(CLUSTER_BUCKETS).fill(0);
  for (let i = 0; i < 102_400; i++) counts[bucketOf(createHash("sha256").update(String(i)).digest("hex"))]++;
  // 100 per bucket on average; a bucket off by half would put a master's share visibly off.
  assert.ok(
    Math.min(...counts) > 50 && Math.max(...counts) < 150,
    `${Math.min(...counts)}..${Math.max(...counts)}`,
  );
  assert.ok(bucketOf("not hex at all") >= 0 && bucketOf("not hex at all") < CLUSTER_BUCKETS);
});
