/**
 * The source layout as a spec (docs/design.md "Source layout"): which folder may import which, no import
 * circles, no file much past 400 lines, and every folder says what lives in it.
 */

import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const SRC = new URL("../src/", import.meta.url).pathname;

/** Each folder and the folders it may import (an arrow points down the layering). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  util: [],
  core: ["util"],
  wire: ["util"],
  policy: ["util", "core", "wire"],
  backend: ["util", "core", "wire", "policy"],
  fleet: ["util", "core", "wire", "policy"],
  server: ["util", "core", "wire", "policy", "backend", "fleet"],
  admin: ["util", "core", "wire", "policy", "backend", "fleet", "server"],
  config: ["util", "core", "wire", "policy", "backend", "fleet"],
  supervisor: ["util"],
  process: ["util", "core", "wire", "policy", "backend", "fleet", "server", "admin", "config", "supervisor"],
};

/** Packages and runtime modules that speak gRPC or HTTP/2: core/ must not import them. */
const NETWORK_MODULES = [/^node:http2$/, /^node:net$/, /^node:tls$/, /^@grpc\//, /^@redis\//, /^redis$/];

/** A source file past this many lines usually holds two concerns. */
const MAX_LINES = 420;

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...sourceFiles(path));
    else if (/\.(ts|js)$/.test(entry.name)) files.push(path);
  }
  return files.sort();
}

/** Every module specifier a file imports: static, type-only, re-exports and dynamic `import("...")`. */
function importsOf(text: string): string[] {
  const specifiers: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s+"([^"]+)"/gms,
    /^\s*import\s+"([^"]+)"/gm,
    /\bimport\(\s*"([^"]+)"\s*\)/g,
  ];
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) specifiers.push(match[1]);
  return specifiers;
}

const files = sourceFiles(SRC);
const folderOf = (path: string) => relative(SRC, path).split("/")[0];
const graph = new Map<string, string[]>();
const external = new Map<string, string[]>();
for (const file of files) {
  const local: string[] = [];
  const other: string[] = [];
  for (const specifier of importsOf(Deno.readTextFileSync(file))) {
    if (specifier.startsWith(".")) local.push(resolve(dirname(file), specifier));
    else other.push(specifier);
  }
  graph.set(file, local);
  external.set(file, other);
}

Deno.test("src/ has only the folders of the layering, and no file outside them", () => {
  const folders = new Set<string>();
  for (const entry of Deno.readDirSync(SRC)) {
    assert.ok(entry.isDirectory, `src/${entry.name} is a file outside every folder`);
    folders.add(entry.name);
  }
  assert.deepEqual([...folders].sort(), Object.keys(MAY_IMPORT).sort());
});

Deno.test("every import between folders points down the layering", () => {
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = folderOf(file);
    for (const target of targets) {
      assert.ok(target.startsWith(SRC), `${relative(SRC, file)} imports ${target}, outside src/`);
      const to = folderOf(target);
      if (to !== from && !MAY_IMPORT[from].includes(to)) {
        wrong.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("core/ imports nothing of gRPC, HTTP/2 or the network", () => {
  const wrong: string[] = [];
  for (const [file, specifiers] of external) {
    if (folderOf(file) !== "core") continue;
    for (const specifier of specifiers) {
      if (NETWORK_MODULES.some((pattern) => pattern.test(specifier))) {
        wrong.push(`${relative(SRC, file)} imports ${specifier}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("src/ has no import circle", () => {
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      circles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(SRC, f)).join(" → "));
      return;
    }
    state.set(file, "open");
    for (const target of graph.get(file) ?? []) visit(target, [...path, file]);
    state.set(file, "done");
  };
  for (const file of files) visit(file, []);
  assert.deepEqual(circles, []);
});

Deno.test(`no source file in src/ is over ${MAX_LINES} lines`, () => {
  const long = files
    .map((file) => ({ file: relative(SRC, file), lines: Deno.readTextFileSync(file).split("\n").length }))
    .filter(({ lines }) => lines > MAX_LINES);
  assert.deepEqual(long, []);
});

Deno.test("every folder of src/ has a mod.ts whose module comment says what lives there", () => {
  for (const folder of Object.keys(MAY_IMPORT)) {
    const text = Deno.readTextFileSync(join(SRC, folder, "mod.ts"));
    const comment = /^\/\*\*([\s\S]*?)\*\//.exec(text);
    assert.ok(comment, `src/${folder}/mod.ts does not open with a doc comment`);
    assert.match(comment[1], /@module/, `src/${folder}/mod.ts: the opening comment is not a module comment`);
    assert.ok(comment[1].replace(/@module|\*|\s/g, "").length > 40, `src/${folder}/mod.ts says too little`);
  }
});
