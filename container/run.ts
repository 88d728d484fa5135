/**
 * Runs the image as the tests and benchmarks do: attached `podman run --rm`, host networking, a read-only root
 * with no tmpfs, every capability dropped, no new privileges. The proxy's ports come from its start-up log line,
 * so `--port 0 --metrics-port 0` works.
 *
 * @module
 */

import { podmanEnv } from "./build.ts";

/** Runs podman and resolves with its standard output; throws with its standard error if it fails. */
export async function podman(...args: string[]): Promise<string> {
  const output = await new Deno.Command("podman", { args, env: podmanEnv(), stdin: "null" }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!output.success) throw new Error(`podman ${args.join(" ")}: ${text(output.stderr)}`);
  return text(output.stdout);
}

/** The proxy in a container, its ports from its start-up log line, and its logs. */
export interface Container extends AsyncDisposable {
  /** The container's name. */
  name: string;
  /** The gRPC port the proxy reported. */
  port: number;
  /** The admin port the proxy reported. */
  metricsPort: number;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Standard error lines that were not JSON (a runtime warning, a panic). */
  otherOutput: string[];
  /** Resolves with the exit code of `podman run`, which is the container's. */
  status: Promise<number>;
}

/** `podman run`s the image (attached, so its exit code is the proxy's) and waits for its start-up line. */
export async function runContainer(
  image: string,
  args: string[],
  options: { podmanArgs?: string[] } = {},
): Promise<Container> {
  const name = `collapser-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const child = new Deno.Command("podman", {
    args: [
      "run",
      "--rm",
      "--name",
      name,
      "--network",
      "host",
      "--read-only",
      "--read-only-tmpfs=false",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      ...options.podmanArgs ?? [],
      image,
      ...args,
    ],
    env: podmanEnv(),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs: Record<string, unknown>[] = [];
  const otherOutput: string[] = [];
  const started = Promise.withResolvers<Record<string, number>>();
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const entry = JSON.parse(line);
          logs.push(entry);
          if (typeof entry.properties?.port === "number") started.resolve(entry.properties);
        } catch {
          otherOutput.push(line);
        }
      }
    }
    if (buffered) otherOutput.push(buffered);
    started.reject(new Error(`the container exited before its start-up line:\n${otherOutput.join("\n")}`));
  })();
  const status = Promise.all([child.status, reading]).then(([s]) => s.code);
  try {
    const properties = await started.promise;
    return {
      name,
      port: properties.port,
      metricsPort: properties.metricsPort,
      logs,
      otherOutput,
      status,
      async [Symbol.asyncDispose]() {
        await podman("rm", "--force", "--ignore", name).catch(() => {});
        await status;
      },
    };
  } catch (err) {
    await podman("rm", "--force", "--ignore", name).catch(() => {});
    await status;
    throw err;
  }
}

/** The resident set size of the container's PID 1, in bytes (`podman top NAME rss`). */
export async function containerRss(name: string): Promise<number> {
  const rows = (await podman("top", name, "pid", "rss")).trim().split("\n").slice(1)
    .map((row) => row.trim().split(/\s+/));
  const pid1 = rows.find(([pid]) => pid === "1");
  if (!pid1) throw new Error(`no PID 1 in podman top ${name}: ${rows.join(" | ")}`);
  return Number(pid1[1]) * 1024;
}
