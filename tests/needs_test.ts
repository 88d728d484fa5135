/**
 * `deno task test` (tests/_run.ts) with `needs()` (tests/_needs.ts) on a machine without the tool: run for
 * real in a child process whose PATH holds nothing, so redis-server is missing. The test ignored names its
 * package and the command passes; under COLLAPSER_REQUIRE_TOOLS=1 the same test fails, and so does the
 * command; a test ignored by other means fails the command too.
 */

import assert from "node:assert/strict";
import { debianPackages, needsNote, TOOLS, which } from "./_needs.ts";

const RUN = new URL("./_run.ts", import.meta.url).pathname;

/** Runs `deno run -A tests/_run.ts file` with an empty PATH and `env`; its exit code and its output. */
async function runTests(dir: string, file: string, env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", RUN, "--no-check", file], // type checks belong to deno task check
    env: { PATH: dir, NO_COLOR: "1", COLLAPSER_TEST_INSTALL: "0", COLLAPSER_REQUIRE_TOOLS: "0", ...env },
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, text };
}

Deno.test("needs(): a missing tool's test is ignored naming its package, or fails under COLLAPSER_REQUIRE_TOOLS=1", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "collapser_needs_" });
  try {
    const file = `${dir}/redis_needed_test.ts`;
    await Deno.writeTextFile(
      file,
      `import { needs } from ${JSON.stringify(new URL("./_needs.ts", import.meta.url).href)};\n` +
        `needs("redis-server").test("talks to Redis", () => {});\n` +
        `Deno.test("needs nothing", () => {});\n`,
    );
    const note = "[needs redis-server: apt-get install redis-server]";

    await t.step("without COLLAPSER_REQUIRE_TOOLS: ignored, listed, counted, exit 0", async () => {
      const { code, text } = await runTests(dir, file);
      assert.equal(code, 0, text);
      assert.match(
        text,
        /redis-server is missing \(apt-get install redis-server; not installed: COLLAPSER_TEST_INSTALL=0\)/,
      );
      assert.ok(text.includes(`talks to Redis ${note} ... ignored`), text);
      assert.match(text, /ignored tests \(1\):\n.*talks to Redis \[needs redis-server/);
      assert.match(text, /^tests: 1 passed, 0 failed, 1 skipped$/m);
    });

    await t.step(
      "with COLLAPSER_REQUIRE_TOOLS=1: the test fails saying what is missing, exit 1",
      async () => {
        const { code, text } = await runTests(dir, file, { COLLAPSER_REQUIRE_TOOLS: "1" });
        assert.equal(code, 1, text);
        assert.match(text, /MissingToolError: redis-server is missing \(apt-get install redis-server\)/);
        assert.match(text, /^tests: 1 passed, 1 failed, 0 skipped$/m);
      },
    );

    await t.step(
      "with COLLAPSER_REQUIRE_TOOLS=1 a test ignored by other means fails the command",
      async () => {
        const other = `${dir}/other_test.ts`;
        await Deno.writeTextFile(other, `Deno.test({ name: "switched off", ignore: true, fn() {} });\n`);
        const { code, text } = await runTests(dir, other, { COLLAPSER_REQUIRE_TOOLS: "1" });
        assert.equal(code, 1, text);
        assert.match(text, /1 test\(s\) ignored, and COLLAPSER_REQUIRE_TOOLS=1 forbids ignoring any/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("_needs.ts: which() finds executables on the PATH; the note names each Debian package once", () => {
  assert.equal(which(Deno.execPath()), Deno.execPath());
  assert.equal(which("/nonexistent/tool"), undefined);
  assert.equal(which("collapser-no-such-command"), undefined);
  assert.deepEqual(debianPackages(["redis-server", "redis-cli", "h2load"]), [
    "redis-server",
    "redis-tools",
    "nghttp2-client",
  ]);
  assert.equal(
    needsNote(["chromium", "python3-grpcio"]),
    "[needs chromium, python3-grpcio: apt-get install chromium python3-grpcio]",
  );
  for (const [name, tool] of Object.entries(TOOLS)) assert.ok(tool.why.length > 0, `${name} says why`);
});
