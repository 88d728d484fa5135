/**
 * `--memory-limit`, `--cache-max-bytes`, `--cache-max-entries`: where the limit comes from (a flag, the
 * cgroup, or none), how the cache and each worker's recycling bound are sized from it, and what is refused
 * or warned about. The cgroup files are passed in, so these run the same on any machine.
 */

import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { memoryConfig, PROCESS_PEAK_BYTES, readCgroupLimit } from "../src/config/memory_flags.ts";
import { Reader } from "../src/config/reader.ts";
import { parseArgs } from "node:util";
import { MEMORY_FLAGS } from "../src/config/memory_flags.ts";

const MiB = 2 ** 20;

/** memoryConfig() over these flags, with `workers` workers and this cgroup limit. */
function memory(args: string[], workers = 0, cgroup?: number, recycleRssBytes = 0) {
  const { values } = parseArgs({ args, options: MEMORY_FLAGS, strict: true });
  const read = new Reader(values, {});
  return memoryConfig(read, { workers, recycleConnections: 0, recycleRssBytes }, () => cgroup);
}

Deno.test("readCgroupLimit(): cgroup v2 memory.max, then v1, and no limit for 'max' or v1's huge number", () => {
  const files = (v2?: string, v1?: string) => (path: string) =>
    path.endsWith("memory.max") ? v2 : path.endsWith("memory.limit_in_bytes") ? v1 : undefined;
  assert.equal(readCgroupLimit(files("268435456\n")), 256 * MiB);
  assert.equal(readCgroupLimit(files("max\n", undefined)), undefined);
  assert.equal(readCgroupLimit(files(undefined, "536870912\n")), 512 * MiB);
  assert.equal(readCgroupLimit(files(undefined, "9223372036854771712\n")), undefined);
  assert.equal(readCgroupLimit(files()), undefined);
});

Deno.test("--memory-limit: none leaves the defaults; a limit sizes the cache to (share - 150 MiB) / 2", () => {
  const none = memory([]);
  assert.equal(none.memoryLimit, undefined);
  assert.equal(none.cacheMaxBytes, 64 * MiB);
  assert.equal(none.cacheMaxEntries, 10_000);
  assert.deepEqual(none.memoryWarnings, []);

  const flag = memory(["--memory-limit", "256MiB"]);
  assert.deepEqual(flag.memoryLimit, { bytes: 256 * MiB, source: "flag" });
  assert.equal(flag.cacheMaxBytes, (256 * MiB - PROCESS_PEAK_BYTES) / 2);
  assert.deepEqual(flag.memoryWarnings, []);

  const cgroup = memory([], 0, 1024 * MiB);
  assert.deepEqual(cgroup.memoryLimit, { bytes: 1024 * MiB, source: "cgroup" });
  assert.equal(cgroup.cacheMaxBytes, 64 * MiB, "never more than the default");

  assert.equal(
    memory(["--memory-limit", "off"], 0, 256 * MiB).memoryLimit,
    undefined,
    "off ignores the cgroup",
  );
  assert.equal(memory(["--memory-limit", "auto"]).memoryLimit, undefined, "auto without a cgroup limit");
});

Deno.test("--memory-limit with --workers: each worker gets its share, and a recycling bound unless one is given", () => {
  const two = memory(["--memory-limit", "1GiB"], 2);
  assert.equal(two.cacheMaxBytes, 64 * MiB);
  assert.equal(two.recycleRssBytes, Math.floor(512 * MiB * 0.75));
  const four = memory(["--memory-limit", "1GiB"], 4);
  assert.equal(four.cacheMaxBytes, (256 * MiB - PROCESS_PEAK_BYTES) / 2);
  assert.equal(
    memory(["--memory-limit", "1GiB"], 2, undefined, 300 * MiB).recycleRssBytes,
    300 * MiB,
    "given",
  );
  assert.equal(memory(["--memory-limit", "1GiB"], 0).recycleRssBytes, 0, "no workers: no recycling");
});

Deno.test("--memory-limit too small, or a --cache-max-bytes that does not fit: warned at start, not refused", () => {
  const small = memory(["--memory-limit", "128MiB"]);
  assert.equal(small.cacheMaxBytes, MiB, "the least cache");
  assert.match(small.memoryWarnings.join("\n"), /peaks at about 150 MiB/);
  const big = memory(["--memory-limit", "256MiB", "--cache-max-bytes", "200MiB"]);
  assert.equal(big.cacheMaxBytes, 200 * MiB, "what was asked");
  assert.match(big.memoryWarnings.join("\n"), /--cache-max-bytes 200 MiB does not fit/);
  assert.equal(memory(["--cache-max-bytes", "8MiB", "--cache-max-entries", "500"]).cacheMaxEntries, 500);
});

Deno.test("--memory-limit, --cache-max-*: bad values are refused with the flag's name", () => {
  const parse = (...args: string[]) => parseConfig(["--backend", "b:1", ...args], {});
  assert.throws(
    () => parse("--memory-limit", "lots"),
    (e) => e instanceof ConfigError && /--memory-limit/.test(e.message),
  );
  assert.throws(() => parse("--memory-limit", "10MiB"), /below 64 MiB/);
  assert.throws(() => parse("--cache-max-bytes", "x"), /--cache-max-bytes: invalid size/);
  assert.throws(() => parse("--cache-max-entries", "-1"), /--cache-max-entries/);
  const env = parseConfig(["--backend", "b:1"], { COLLAPSER_MEMORY_LIMIT: "512MiB" });
  assert.ok(!env.help && env.config.memoryLimit?.bytes === 512 * MiB);
});
