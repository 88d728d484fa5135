/**
 * .proto sources for the descriptor-set and reflection tests (a catalog service with every RPC kind and
 * idempotency level, and an admin service that imports it and a well-known type), and `buildDescriptorSet`,
 * which compiles .proto files into the FileDescriptorSet that `--descriptor-set` reads.
 *
 * The compiler is buf (npm `@bufbuild/buf`, pinned in deno.json): the real Protobuf compiler as a native
 * binary inside an npm package, nothing downloaded at install, with the `google/protobuf/*.proto` well-known
 * types built in, so no Debian protobuf-compiler nor libprotobuf-dev is needed. Its output is what
 * `protoc --include_imports -o` writes (imports first, source info left out).
 */

import "@bufbuild/buf"; // keeps the package (and so its platform binary) in the module graph, hence installed
import { createRequire } from "node:module";

/** buf's platform packages (as its own bin/buf script names them), by `${Deno.build.os} ${Deno.build.arch}`. */
const BUF_PACKAGES: Record<string, string> = {
  "linux x86_64": "@bufbuild/buf-linux-x64/bin/buf",
  "linux aarch64": "@bufbuild/buf-linux-aarch64/bin/buf",
  "darwin x86_64": "@bufbuild/buf-darwin-x64/bin/buf",
  "darwin aarch64": "@bufbuild/buf-darwin-arm64/bin/buf",
  "windows x86_64": "@bufbuild/buf-win32-x64/bin/buf.exe",
  "windows aarch64": "@bufbuild/buf-win32-arm64/bin/buf.exe",
};

let bufPath: string | undefined;

/** The buf executable of this platform, from node_modules. */
export function bufExecutable(): string {
  if (bufPath !== undefined) return bufPath;
  const platform = `${Deno.build.os} ${Deno.build.arch}`;
  const binary = BUF_PACKAGES[platform];
  if (binary === undefined) throw new Error(`@bufbuild/buf ships no binary for ${platform}`);
  // The platform package is an optional dependency of @bufbuild/buf: resolve it from there.
  const main = createRequire(import.meta.url).resolve("@bufbuild/buf");
  bufPath = createRequire(Deno.realPathSync(main)).resolve(binary);
  return bufPath;
}

/** What `buildDescriptorSet` builds. */
export interface DescriptorSetOptions {
  /**
   * Put the files the named ones import (well-known types included) in the set too, as `protoc
   * --include_imports` does.
   * @default true
   */
  readonly includeImports?: boolean;
}

/**
 * Compiles `files` (paths relative to `dir`, which is also the import root) into a FileDescriptorSet written
 * to `out`, with buf. Throws with buf's message when the .proto files do not compile.
 */
export async function buildDescriptorSet(
  dir: string,
  files: readonly string[],
  out: string,
  options: DescriptorSetOptions = {},
): Promise<void> {
  const args = ["build", dir, "--as-file-descriptor-set", "--exclude-source-info", "-o", out];
  for (const file of files) args.push("--path", `${dir}/${file}`);
  if (options.includeImports === false) args.push("--exclude-imports");
  // buf keeps a cache (of remote modules, unused here): in `dir`, not in the home directory.
  const env = { BUF_CACHE_DIR: `${dir}/.buf-cache` };
  const output = await new Deno.Command(bufExecutable(), { args, env, stdout: "piped", stderr: "piped" })
    .output();
  await Deno.remove(env.BUF_CACHE_DIR, { recursive: true }).catch(() => {});
  if (!output.success) {
    throw new Error(`buf ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
}

/** Every RPC kind, and methods declared NO_SIDE_EFFECTS, IDEMPOTENT and neither. */
export const CATALOG_PROTO = `syntax = "proto3";
package demo.catalog;

message Item { string id = 1; string body = 2; }

service Catalog {
  rpc Get(Item) returns (Item) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Put(Item) returns (Item) { option idempotency_level = IDEMPOTENT; }
  rpc Delete(Item) returns (Item);
  rpc Upload(stream Item) returns (Item);
  rpc Watch(Item) returns (stream Item);
  rpc Chat(stream Item) returns (stream Item);
}
`;

/** Imports catalog.proto and a well-known type, so only --include_imports puts those files in the set. */
export const ADMIN_PROTO = `syntax = "proto3";
package demo.admin;

import "google/protobuf/empty.proto";
import "catalog.proto";

service Admin {
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Restock(demo.catalog.Item) returns (google.protobuf.Empty);
}
`;
