/**
 * The Containerfile as a spec, without building it: both final targets (the default distroless binary and the
 * local stand-in) give the same contract — user 65532, the proxy as the entrypoint with the permissions of
 * `deno task start` and `deno task compile`, the gRPC and admin ports, SIGTERM, OCI labels — the default target
 * is the distroless one, its base images are build arguments, and the build context holds only the source.
 * tests/image_test.ts builds and runs the local target for real.
 */

import assert from "node:assert/strict";
import { NONROOT_UID } from "../container/build.ts";
import { compileArgs, outputPath, PERMISSIONS, TARGETS } from "../scripts/compile.ts";
import { DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT } from "../src/config/usage.ts";
import { V8_FLAGS_ARG } from "../src/util/v8_flags.ts";
import { selfCommand } from "../src/supervisor/supervisor.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** One instruction: its keyword and the rest of its (continued) line. */
interface Instruction {
  keyword: string;
  rest: string;
}

/** The file's stages in order, each with its name and instructions (comments and continuations handled). */
function stages(text: string): { name: string; from: string; instructions: Instruction[] }[] {
  const lines = text.split("\n").filter((line) => !/^\s*#/.test(line)).join("\n").replace(/\\\n/g, " ");
  const result: { name: string; from: string; instructions: Instruction[] }[] = [];
  for (const line of lines.split("\n")) {
    const match = line.trim().match(/^([A-Z]+)\s+(.*)$/);
    if (!match) continue;
    const [, keyword, rest] = match;
    if (keyword === "FROM") {
      const [from, , name] = rest.split(/\s+/).filter((word) => !word.startsWith("--platform="));
      result.push({ name, from, instructions: [] });
    } else result.at(-1)?.instructions.push({ keyword, rest: rest.replace(/\s+/g, " ").trim() });
  }
  return result;
}

const containerfile = await Deno.readTextFile(`${ROOT}Containerfile`);
const all = stages(containerfile);
const stage = (name: string) => all.find((s) => s.name === name)!;
const values = (name: string, keyword: string) =>
  stage(name).instructions.filter((i) => i.keyword === keyword).map((i) => i.rest);
const startTask = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start as string;

Deno.test("Containerfile: the default target is the compiled binary on distroless; bases are build arguments", () => {
  assert.deepEqual(all.map((s) => s.name), ["local", "build", "distroless"]);
  assert.deepEqual(all.map((s) => s.from), ["${LOCAL_BASE}", "${BUILD_IMAGE}", "${RUNTIME_IMAGE}"]);
  assert.match(containerfile, /^ARG RUNTIME_IMAGE=gcr\.io\/distroless\/cc-debian12:nonroot$/m);
  assert.match(containerfile, /^ARG BUILD_IMAGE=docker\.io\/denoland\/deno:debian-2\.8\.3$/m);
  assert.deepEqual(values("distroless", "RUN"), [], "the runtime stage runs nothing (it has no shell)");
});

Deno.test("Containerfile: both targets run the proxy the same way", () => {
  for (const name of ["local", "distroless"]) {
    assert.deepEqual(values(name, "USER"), [`${NONROOT_UID}:${NONROOT_UID}`], name);
    assert.deepEqual(values(name, "EXPOSE"), [`${DEFAULT_GRPC_PORT}/tcp ${DEFAULT_METRICS_PORT}/tcp`], name);
    assert.deepEqual(values(name, "STOPSIGNAL"), ["SIGTERM"], name);
    assert.deepEqual(values(name, "CMD"), [], `${name}: no CMD, the flags are the caller's`);
    const [entrypoint] = values(name, "ENTRYPOINT");
    const [healthcheck] = values(name, "HEALTHCHECK");
    assert.ok(
      healthcheck.endsWith(`CMD ${entrypoint.slice(0, -1)}, "--probe", "health"]`),
      `${name}: the health check is the entrypoint's own --probe health: ${healthcheck}`,
    );
    assert.ok(entrypoint.startsWith("["), `${name}: exec form, so the proxy is PID 1 and no shell is needed`);
    const labels = values(name, "LABEL").join(" ");
    for (const label of ["title", "version", "revision", "created", "description"]) {
      assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${label}=`), `${name}: ${label}`);
    }
  }
  const permissions = (text: string) => text.match(/--allow-[a-z]+/g)?.sort();
  const expected = [...PERMISSIONS].sort();
  assert.deepEqual(permissions(values("local", "ENTRYPOINT")[0]), expected, "local: deno run's permissions");
  assert.deepEqual(
    permissions(values("build", "RUN").join(" ")),
    expected,
    "build: deno compile's permissions",
  );
  assert.deepEqual(permissions(startTask), expected, "deno task start's permissions");
  assert.deepEqual(values("distroless", "ENTRYPOINT"), ['["/usr/local/bin/collapser"]']);
});

Deno.test("the proxy's V8 flags are on every command that starts it: start task, compile, both images, workers", () => {
  const v8Flags = (text: string) => text.match(/--v8-flags=[^\s"]*/g);
  assert.deepEqual(v8Flags(startTask), [V8_FLAGS_ARG], "deno task start");
  assert.deepEqual(v8Flags(values("local", "ENTRYPOINT")[0]), [V8_FLAGS_ARG], "the local image's entrypoint");
  assert.deepEqual(v8Flags(values("build", "RUN").join(" ")), [V8_FLAGS_ARG], "the image's deno compile");
  assert.deepEqual(compileArgs("linux-x64", "x").filter((a) => a.startsWith("--v8-flags")), [V8_FLAGS_ARG]);
  assert.deepEqual(selfCommand().filter((a) => a.startsWith("--v8-flags")), [V8_FLAGS_ARG], "a worker");
});

Deno.test(".containerignore sends only the source; .dockerignore is the same file", async () => {
  const ignore = await Deno.readTextFile(`${ROOT}.containerignore`);
  const rules = ignore.split("\n").filter((line) => line && !line.startsWith("#"));
  assert.deepEqual(rules, ["**", "!deno.json", "!deno.lock", "!main.ts", "!src/"]);
  assert.equal(await Deno.readTextFile(`${ROOT}.dockerignore`), ignore);
  for (const { rest } of all.flatMap((s) => s.instructions.filter((i) => i.keyword === "COPY"))) {
    if (rest.startsWith("--from=")) continue;
    const sources = rest.split(" ").slice(0, -1);
    for (const source of sources) {
      assert.ok(
        ["deno.json", "deno.lock", "main.ts", "src/"].includes(source),
        `COPY ${source} is allowed in`,
      );
    }
  }
});

Deno.test("scripts/compile.ts compiles every release target with the start task's permissions", () => {
  assert.deepEqual(Object.keys(TARGETS), [
    "linux-x64",
    "linux-arm64",
    "macos-x64",
    "macos-arm64",
    "windows-x64",
  ]);
  for (const [name, triple] of Object.entries(TARGETS)) {
    const args = compileArgs(name, outputPath(name));
    assert.equal(args[args.indexOf("--target") + 1], triple);
    assert.ok(args.includes("--frozen"), "the lockfile pins what is compiled in");
    assert.ok(outputPath(name).endsWith(`-${name}${name.startsWith("windows") ? ".exe" : ""}`));
  }
  assert.ok(!compileArgs(undefined, "collapser").includes("--target"), "no target: this machine's");
  assert.throws(() => compileArgs("plan9", "x"), /unknown target "plan9"/);
});
