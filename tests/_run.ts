/**
 * `deno task test`: the README's test command. It
 *
 * 1. finds which system tools the tests declare (`needs("…")`, see _needs.ts) are missing here;
 * 2. installs them with apt-get where it can (root on Debian), one line per package saying why; set
 *    `COLLAPSER_TEST_INSTALL=0` to never install;
 * 3. runs `deno test -A --parallel tests/` (or the files and `deno test` flags given as arguments), passing
 *    its output through;
 * 4. lists the tests that were ignored, one line each naming the package, with their count, and ends with
 *    one line `tests: N passed, N failed, N skipped`.
 *
 * With `COLLAPSER_REQUIRE_TOOLS=1` (CI) a missing tool makes its tests fail instead, and any ignored test
 * makes the command fail.
 */

import { debianPackages, hasTool, REQUIRE_TOOLS_ENV, type ToolName, TOOLS, which } from "./_needs.ts";

const TESTS_DIR = new URL(".", import.meta.url).pathname;
const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

/** The tools that the test files declare with `needs("a", "b")`. */
function declaredTools(): ToolName[] {
  const found = new Set<ToolName>();
  for (const entry of Deno.readDirSync(TESTS_DIR)) {
    if (!entry.isFile || !entry.name.endsWith(".ts") || ["_needs.ts", "_run.ts"].includes(entry.name)) {
      continue;
    }
    const text = Deno.readTextFileSync(`${TESTS_DIR}/${entry.name}`);
    for (const call of text.matchAll(/\bneeds\(((?:\s*"[^"]+"\s*,?)+)\)/g)) {
      for (const [, name] of call[1].matchAll(/"([^"]+)"/g)) {
        if (name in TOOLS) found.add(name as ToolName);
        else throw new Error(`tests/${entry.name}: needs("${name}"): no such tool in tests/_needs.ts TOOLS`);
      }
    }
  }
  return [...found].sort();
}

/** Why apt-get cannot be used here, or undefined if it can. */
function whyNoApt(): string | undefined {
  if (Deno.env.get("COLLAPSER_TEST_INSTALL") === "0") return "COLLAPSER_TEST_INSTALL=0";
  if (Deno.build.os !== "linux") return `not Linux (${Deno.build.os})`;
  try {
    Deno.statSync("/etc/debian_version");
  } catch {
    return "not Debian";
  }
  if (which("apt-get") === undefined) return "no apt-get";
  if (Deno.uid() !== 0) return "not root";
  return undefined;
}

async function run(command: string, args: string[], env?: Record<string, string>): Promise<boolean> {
  const child = new Deno.Command(command, { args, env, stdout: "inherit", stderr: "inherit" }).spawn();
  return (await child.status).success;
}

/** Why a tool is still missing after `install`: why apt-get was not used, or what came of it. */
let notInstalled = "";

/** Installs what it can of `missing`; returns what is still missing. */
async function install(missing: ToolName[]): Promise<ToolName[]> {
  const why = whyNoApt();
  notInstalled = why ?? "";
  if (why !== undefined || missing.length === 0) return missing;
  const packages = debianPackages(missing);
  for (const name of missing) {
    say(`installing ${TOOLS[name].debian} (Debian) for ${name}: ${TOOLS[name].why}`);
  }
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const ok = await run("apt-get", ["update", "-qq"], env) &&
    await run("apt-get", ["install", "-y", "-qq", ...packages], env);
  notInstalled = ok ? "apt-get ran, yet it is not on the PATH" : "apt-get failed";
  // Looked up again in this process: hasTool caches, so ask a fresh `which`.
  return missing.filter((name) => which(TOOLS[name].command) === undefined);
}

const required = Deno.env.get(REQUIRE_TOOLS_ENV) === "1";
const missing = await install(declaredTools().filter((name) => !hasTool(name)));
for (const name of missing) {
  const outcome = required ? `its tests will fail (${REQUIRE_TOOLS_ENV}=1)` : "its tests will be ignored";
  say(
    `${name} is missing (apt-get install ${TOOLS[name].debian}; not installed: ${notInstalled}): ${outcome}`,
  );
}

// Flags (`--filter x`, `--no-check`) pass through; with no file named, the whole of tests/.
const namesFiles = Deno.args.some((arg) => !arg.startsWith("-") && /\.(ts|js)$|\/$/.test(arg));
const targets = namesFiles ? Deno.args : [...Deno.args, TESTS_DIR];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--parallel", ...targets],
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Pass the output through while reading the lines that matter.
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const ignored: string[] = [];
let summary = { passed: 0, failed: 0, ignored: 0 };
let pending = "";
const decoder = new TextDecoder();
const read = (line: string) => {
  const plain = line.replace(ANSI, "");
  const test = /^(.*) \.\.\. ignored \(/.exec(plain);
  if (test) ignored.push(test[1].trim());
  const total = /^(?:ok|FAILED) \| (\d+) passed.*\| (\d+) failed(?: \| (\d+) ignored)?/.exec(plain);
  if (total) summary = { passed: Number(total[1]), failed: Number(total[2]), ignored: Number(total[3] ?? 0) };
};
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  pending += decoder.decode(chunk, { stream: true });
  const lines = pending.split("\n");
  pending = lines.pop()!;
  lines.forEach(read);
}
read(pending);
const status = await child.status;

if (ignored.length > 0) {
  say(`\nignored tests (${ignored.length}):`);
  for (const name of ignored) say(`  ${name}`);
}
say(`tests: ${summary.passed} passed, ${summary.failed} failed, ${summary.ignored} skipped`);
if (required && summary.ignored > 0) {
  say(`${summary.ignored} test(s) ignored, and ${REQUIRE_TOOLS_ENV}=1 forbids ignoring any`);
  Deno.exit(1);
}
Deno.exit(status.code);
