/**
 * `deno task image`: builds the container image on a machine that reaches no container registry, and prints
 * its name (`localhost/collapser:VERSION`) as the last line of its output.
 *
 * The Containerfile's default target compiles the proxy on `denoland/deno` and runs it on distroless; neither
 * base can be pulled here. So this script builds the `local` target instead, on a stand-in base it builds
 * FROM scratch (container/base.Containerfile) out of what this machine has: the Deno binary it runs on (from
 * npm, 2.8.3), the shared libraries `ldd` names for it, the app's node_modules installed from deno.lock with
 * `--frozen`, and distroless's conventions (`nonroot` = 65532, /etc/nsswitch.conf, CA certificates, /tmp).
 * The entrypoint, flags, user, ports and stop signal are the same as the default target's.
 *
 * Podman on these machines needs runc (crun fails on the hybrid cgroups) and no default ulimits (setting
 * RLIMIT_NPROC is denied): container/containers.conf says both, and this script points CONTAINERS_CONF at it
 * unless the caller set one.
 *
 * Flags: `--tag NAME` (default `localhost/collapser:VERSION`), `--quiet` (podman's output only if it fails;
 * the name is printed all the same).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VERSION } from "../src/util/version.ts";

/** The Deno release the image runs; the stand-in refuses any other (2.9.x aborts under HTTP/2 load). */
export const DENO_VERSION = "2.8.3";
/** The image's repository name on the local machine. */
export const IMAGE_REPOSITORY = "localhost/collapser";
/** The stand-in base's name. */
export const BASE_IMAGE = `localhost/collapser-base:deno-${DENO_VERSION}`;
/** The unprivileged user the image runs as, distroless's `nonroot`. */
export const NONROOT_UID = 65532;

const ROOT = new URL("../", import.meta.url).pathname;
const HERE = new URL("./", import.meta.url).pathname;

/** A build step failed; the message names the command. */
export class ImageBuildError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ImageBuildError";
  }
}

/** Runs a command with inherited output (or captured, with `capture`), throwing if it fails. */
async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; capture?: boolean } = {},
): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: options.capture ? "piped" : "inherit",
    stderr: options.capture ? "piped" : "inherit",
  }).output().catch((err) => {
    throw new ImageBuildError(`cannot run ${command}: ${err.message}`, { cause: err });
  });
  if (!output.success) {
    const stderr = options.capture ? new TextDecoder().decode(output.stderr) : "";
    throw new ImageBuildError(`${command} ${args.join(" ")} failed (exit ${output.code})\n${stderr}`);
  }
  return options.capture ? new TextDecoder().decode(output.stdout) : "";
}

/** The shared libraries (and the loader) a binary needs, as absolute paths, from `ldd`. */
export function parseLdd(text: string): string[] {
  const paths = new Set<string>();
  for (const line of text.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = line.match(/=>\s*(\/\S+)\s*\(/) ?? line.match(/^\s*(\/\S+)\s*\(/);
    if (match) paths.add(match[1]);
  }
  return [...paths];
}

/** Copies a file to the same absolute path under `rootfs`, following symlinks. */
async function copyInto(rootfs: string, path: string, mode = 0o644): Promise<void> {
  const target = rootfs + path;
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(await Deno.realPath(path), target);
  await Deno.chmod(target, mode);
}

const PASSWD = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:${NONROOT_UID}:${NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin
`;
const GROUP = `root:x:0:
nobody:x:65534:
nonroot:x:${NONROOT_UID}:
`;

/** Stages the stand-in base's root filesystem under `stage/rootfs`. */
async function stageBase(stage: string): Promise<void> {
  const rootfs = `${stage}/rootfs`;
  const deno = Deno.execPath();
  const version = await run(deno, ["--version"], { capture: true });
  if (!version.startsWith(`deno ${DENO_VERSION} `)) {
    throw new ImageBuildError(`${deno} is not Deno ${DENO_VERSION}: ${version.split("\n")[0]}`);
  }
  await Deno.mkdir(`${rootfs}/usr/local/bin`, { recursive: true });
  await Deno.copyFile(deno, `${rootfs}/usr/local/bin/deno`);
  await Deno.chmod(`${rootfs}/usr/local/bin/deno`, 0o755);
  for (const lib of parseLdd(await run("ldd", [deno], { capture: true }))) await copyInto(rootfs, lib, 0o755);

  await Deno.mkdir(`${rootfs}/etc/ssl/certs`, { recursive: true });
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, PASSWD);
  await Deno.writeTextFile(`${rootfs}/etc/group`, GROUP);
  await Deno.writeTextFile(`${rootfs}/etc/nsswitch.conf`, "hosts: files dns\n");
  const certificates = "/etc/ssl/certs/ca-certificates.crt";
  try {
    await copyInto(rootfs, certificates);
  } catch {
    console.error(`container/build.ts: no ${certificates} on this machine; the image has no CA bundle`);
  }
  for (const dir of ["tmp", `home/nonroot`, "deno-dir"]) {
    await Deno.mkdir(`${rootfs}/${dir}`, { recursive: true });
  }
  await Deno.chmod(`${rootfs}/tmp`, 0o1777);

  // node_modules exactly as deno.lock pins it, installed in a copy of the app so the work tree is untouched.
  const app = `${stage}/app`;
  await Deno.mkdir(app, { recursive: true });
  for (const file of ["deno.json", "deno.lock", "main.ts"]) {
    await Deno.copyFile(ROOT + file, `${app}/${file}`);
  }
  await run("cp", ["-a", `${ROOT}src`, `${app}/src`]);
  await run(deno, ["install", "--quiet", "--frozen", "--entrypoint", "main.ts"], { cwd: app });
  await Deno.mkdir(`${rootfs}/app`, { recursive: true });
  await run("cp", ["-a", `${app}/node_modules`, `${rootfs}/app/node_modules`]);
}

/** The environment for running podman here: this one, with CONTAINERS_CONF set to ours unless it is set. */
export function podmanEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  env.CONTAINERS_CONF ??= `${HERE}containers.conf`;
  return env;
}

/** The ID of the image `name` names, or undefined if there is none. */
async function imageId(name: string, env: Record<string, string>): Promise<string | undefined> {
  const id = await run("podman", ["image", "inspect", "--format", "{{.Id}}", name], { env, capture: true })
    .catch(() => "");
  return id.trim() || undefined;
}

/** Builds the stand-in base and the image; resolves with the image's name. */
export async function buildImage(options: { tag?: string; quiet?: boolean } = {}): Promise<string> {
  const tag = options.tag ?? `${IMAGE_REPOSITORY}:${VERSION}`;
  const env = podmanEnv();
  const revision =
    (await run("git", ["rev-parse", "HEAD"], { cwd: ROOT, capture: true }).catch(() => "unknown"))
      .trim();
  // Reproducible: layer timestamps and `created` are the commit's time, not the build's.
  const epoch =
    (await run("git", ["log", "-1", "--format=%ct"], { cwd: ROOT, capture: true }).catch(() => "0"))
      .trim();
  const created = new Date(Number(epoch) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  const quiet = options.quiet ? ["--quiet"] : [];

  // What the two names point at now: a rebuild leaves those images nameless, and removing them keeps
  // repeated builds from filling the container storage.
  const previous = await Promise.all([BASE_IMAGE, tag].map((name) => imageId(name, env)));
  const stage = await Deno.makeTempDir({ prefix: "collapser-image-" });
  try {
    await stageBase(stage);
    await run("podman", [
      "build",
      ...quiet,
      "--timestamp",
      epoch,
      "--file",
      `${HERE}base.Containerfile`,
      "--label",
      `io.collapser.deno=${DENO_VERSION}`,
      "--tag",
      BASE_IMAGE,
      stage,
    ], { env, capture: options.quiet });
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  await run("podman", [
    "build",
    ...quiet,
    "--timestamp",
    epoch,
    "--file",
    `${ROOT}Containerfile`,
    "--target",
    "local",
    "--build-arg",
    `LOCAL_BASE=${BASE_IMAGE}`,
    "--build-arg",
    `VERSION=${VERSION}`,
    "--build-arg",
    `REVISION=${revision}`,
    "--build-arg",
    `CREATED=${created}`,
    "--tag",
    tag,
    ROOT,
  ], { env, capture: options.quiet });
  const current = await Promise.all([BASE_IMAGE, tag].map((name) => imageId(name, env)));
  for (const id of previous) {
    // Still in use (a container, or another name) means podman refuses, which is what we want.
    if (id && !current.includes(id)) await run("podman", ["rmi", id], { env, capture: true }).catch(() => {});
  }
  return tag;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { tag: { type: "string" }, quiet: { type: "boolean", default: false } },
  });
  try {
    const started = performance.now();
    const tag = await buildImage({ tag: values.tag, quiet: values.quiet });
    if (!values.quiet) {
      const size = await run("podman", ["image", "inspect", "--format", "{{.Size}}", tag], {
        capture: true,
        env: podmanEnv(),
      });
      const mb = (Number(size.trim()) / 1e6).toFixed(1);
      console.error(`built in ${((performance.now() - started) / 1000).toFixed(1)} s; ${mb} MB`);
    }
    console.log(tag);
  } catch (err) {
    console.error(`container/build.ts: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
