/**
 * `deno task compile`: the proxy as one self-contained binary, with `deno compile`.
 *
 * ```sh
 * deno task compile                                   # this machine's platform → ./collapser
 * deno task compile --target linux-arm64              # one platform → dist/collapser-VERSION-linux-arm64
 * deno task compile:all                               # every platform → dist/, with dist/SHA256SUMS
 * ```
 *
 * Targets: linux-x64, linux-arm64, macos-x64, macos-arm64, windows-x64 (or Deno's own target triples).
 * `deno compile` downloads Deno's runtime for each target from Deno's release site (or takes it from
 * `DENORT_BIN`), so this works on a connected machine; on the project's build machines, which reach only the
 * npm registry, it fails with that download, and no binary is shipped from them. The release workflow
 * (.github/workflows/release.yml) runs this on GitHub's runners.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VERSION } from "../src/util/version.ts";
import { V8_FLAGS_ARG } from "../src/util/v8_flags.ts";

/** The platforms a release ships, by our name, with Deno's target triple. */
export const TARGETS: Readonly<Record<string, string>> = {
  "linux-x64": "x86_64-unknown-linux-gnu",
  "linux-arm64": "aarch64-unknown-linux-gnu",
  "macos-x64": "x86_64-apple-darwin",
  "macos-arm64": "aarch64-apple-darwin",
  "windows-x64": "x86_64-pc-windows-msvc",
};

/** The permissions the binary runs with: the same as `deno task start`. */
export const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-run"] as const;

const ROOT = new URL("../", import.meta.url).pathname;

/** The `deno compile` arguments for one target (undefined = this machine's) writing to `output`. */
export function compileArgs(target: string | undefined, output: string): string[] {
  const triple = target === undefined ? undefined : TARGETS[target] ?? target;
  if (triple !== undefined && !Object.values(TARGETS).includes(triple)) {
    throw new RangeError(
      `unknown target ${JSON.stringify(target)} (expected one of ${Object.keys(TARGETS).join(", ")})`,
    );
  }
  return [
    "compile",
    "--frozen",
    V8_FLAGS_ARG,
    ...PERMISSIONS,
    ...(triple === undefined ? [] : ["--target", triple]),
    "--output",
    output,
    `${ROOT}main.ts`,
  ];
}

/** Where a target's binary goes: `dist/collapser-VERSION-TARGET`, `.exe` for Windows. */
export function outputPath(target: string): string {
  const name = Object.entries(TARGETS).find(([name, triple]) => target === name || target === triple)?.[0] ??
    target;
  return `${ROOT}dist/collapser-${VERSION}-${name}${name.startsWith("windows") ? ".exe" : ""}`;
}

async function compile(target: string | undefined, output: string): Promise<void> {
  const status = await new Deno.Command(Deno.execPath(), { args: compileArgs(target, output), cwd: ROOT })
    .spawn()
    .status;
  if (!status.success) {
    throw new Error(
      `deno compile${
        target ? ` --target ${target}` : ""
      } failed (exit ${status.code}); it needs Deno's runtime ` +
        `download (or DENORT_BIN), which the project's build machines cannot reach`,
    );
  }
}

/** SHA-256 of a file, hex. */
async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string", multiple: true }, all: { type: "boolean", default: false } },
  });
  try {
    const targets = values.all ? Object.keys(TARGETS) : values.target ?? [];
    if (targets.length === 0) {
      await compile(undefined, `${ROOT}collapser`);
      console.log(`${ROOT}collapser`);
    } else {
      await Deno.mkdir(`${ROOT}dist`, { recursive: true });
      const sums: string[] = [];
      for (const target of targets) {
        const output = outputPath(target);
        await compile(target, output);
        sums.push(`${await sha256(output)}  ${output.slice(output.lastIndexOf("/") + 1)}`);
        console.log(output);
      }
      if (values.all) await Deno.writeTextFile(`${ROOT}dist/SHA256SUMS`, sums.join("\n") + "\n");
    }
  } catch (err) {
    console.error(`scripts/compile.ts: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
