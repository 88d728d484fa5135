/**
 * The container's memory and CPU footprint, for sizing resource requests (examples/kubernetes/): the proxy
 * in the image built by container/build.ts (read-only, uid 65532), in front of the example backend (10 ms per
 * call), measured idle, under a light load, under a heavy load, and through a 10,000-call herd. Memory is the
 * RSS of the container's PID 1, sampled every 250 ms, and the memory its cgroup is charged at the end of each
 * phase (what a Kubernetes limit counts); CPU is the container's CPU time over the phase's wall time.
 *
 * ```sh
 * deno task bench:image                       # builds the image first (seconds when nothing changed)
 * COLLAPSER_IMAGE=localhost/collapser:0.5.0 deno task bench:image
 * ```
 *
 * The load comes from bench/loadgen.ts in its own process, on the same (2-core, shared) machine.
 *
 * @module
 */

import { startBackend } from "../examples/backend.ts";
import { buildImage } from "../container/build.ts";
import { containerRss, podman, runContainer } from "../container/run.ts";

const LOADGEN = new URL("./loadgen.ts", import.meta.url).pathname;
const SAMPLE_MS = 250;
const MB = 1024 * 1024;

/** One phase's measurement. */
interface Phase {
  name: string;
  load: string;
  rps: number | undefined;
  rssMaxMb: number;
  rssEndMb: number;
  cgroupEndMb: number;
  cpuCores: number;
}

/** The container's cgroup as podman reports it: CPU seconds used so far, and memory charged now in MB. */
async function cgroup(name: string): Promise<{ cpuSeconds: number; memoryMb: number }> {
  const [stats] = JSON.parse(await podman("stats", "--no-stream", "--format", "json", name));
  const memory = String(stats.mem_usage).match(/^([\d.]+)([kMG]?B) /);
  const scale: Record<string, number> = { B: 1e-6, kB: 1e-3, MB: 1, GB: 1e3 };
  const match = String(stats.cpu_time).match(/^([\d.]+)(ns|µs|us|ms|s|m)$/);
  const units: Record<string, number> = { ns: 1e-9, "µs": 1e-6, us: 1e-6, ms: 1e-3, s: 1, m: 60 };
  if (!match || !memory) throw new Error(`podman stats: unexpected ${JSON.stringify(stats)}`);
  return { cpuSeconds: Number(match[1]) * units[match[2]], memoryMb: Number(memory[1]) * scale[memory[2]] };
}

/** Runs `work` while sampling the container's RSS. */
async function measure(
  name: string,
  phase: string,
  load: string,
  work: () => Promise<number | undefined>,
): Promise<Phase> {
  let max = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      max = Math.max(max, await containerRss(name));
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    }
  })();
  const before = await cgroup(name);
  const started = performance.now();
  const rps = await work();
  const wall = (performance.now() - started) / 1000;
  const after = await cgroup(name);
  sampling = false;
  await sampler;
  const end = await containerRss(name);
  return {
    name: phase,
    load,
    rps,
    rssMaxMb: Math.max(max, end) / MB,
    rssEndMb: end / MB,
    cgroupEndMb: after.memoryMb,
    cpuCores: (after.cpuSeconds - before.cpuSeconds) / wall,
  };
}

/** Runs bench/loadgen.ts with `args`; resolves with its measured requests per second. */
async function loadgen(args: string[]): Promise<number> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", LOADGEN, ...args],
    stdin: "null",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error(`loadgen ${args.join(" ")} failed`);
  const result = JSON.parse(new TextDecoder().decode(output.stdout).trim().split("\n").at(-1)!);
  if (result.failed > 0) {
    throw new Error(`loadgen: ${result.failed} failed: ${JSON.stringify(result.failures)}`);
  }
  return result.rps;
}

if (import.meta.main) {
  const image = Deno.env.get("COLLAPSER_IMAGE") ?? await buildImage({ quiet: true });
  const backend = await startBackend({ delayMs: 10 });
  try {
    await using container = await runContainer(image, [
      "--backend",
      `127.0.0.1:${backend.port}`,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--metrics-port",
      "0",
    ]);
    const target = `127.0.0.1:${container.port}`;
    const sleep = (ms: number) =>
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms));
    const zipf = (connections: number, streams: number, seconds: number) => () =>
      loadgen(
        ["--target", target, "--keys", "zipf", "--connections", `${connections}`, "--streams", `${streams}`]
          .concat(["--duration", `${seconds}s`]),
      );
    const herd = async () => {
      await loadgen([
        "--target",
        target,
        "--keys",
        "hot",
        "--requests",
        "10000",
        "--connections",
        "10",
        "--burst",
      ]);
      return undefined;
    };
    const phases: Phase[] = [];
    for (
      const [phase, load, work] of [
        ["idle", "none, 10 s after start", () => sleep(10_000)],
        ["light", "1 connection × 4 streams, 1,000 Zipf keys, 60 s", zipf(1, 4, 60)],
        ["heavy", "8 connections × 16 streams, 1,000 Zipf keys, 20 s", zipf(8, 16, 20)],
        ["herd", "10,000 identical calls at once over 10 connections", herd],
        ["idle again", "none, 10 s after the herd", () => sleep(10_000)],
      ] as const
    ) phases.push(await measure(container.name, phase, load, work));
    await podman("kill", "--signal", "SIGTERM", container.name);
    const code = await container.status;

    const size = Number(await podman("image", "inspect", "--format", "{{.Size}}", image)) / 1e6;
    console.log(`image ${image}; ${size.toFixed(1)} MB`);
    console.log(
      "| phase | load | calls/s | RSS max (MiB) | RSS at end (MiB) | cgroup memory at end (MB) | CPU (cores) |",
    );
    console.log("| --- | --- | --: | --: | --: | --: | --: |");
    for (const p of phases) {
      const rps = p.rps === undefined ? "" : Math.round(p.rps).toLocaleString("en-US");
      const cells = [p.rssMaxMb, p.rssEndMb, p.cgroupEndMb].map((mb) => mb.toFixed(0));
      console.log(`| ${p.name} | ${p.load} | ${rps} | ${cells.join(" | ")} | ${p.cpuCores.toFixed(2)} |`);
    }
    console.log(`SIGTERM: exit ${code}`);
  } finally {
    backend.close();
  }
}
