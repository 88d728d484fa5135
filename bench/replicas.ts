/**
 * The cost of replicas: a bench:load-style unique-key run (every call a cache miss, so every call is a
 * backend call through the balancer) against the proxy in front of one backend and in front of three, side
 * by side in one run. Four proxies run at once, each its own process:
 *
 * - `1 IP`: `--backend 127.0.0.1:A`, the single-address path (no balancer, as before replicas);
 * - `1 IP, balancer`: `--backend 127.0.0.1:A,127.0.0.1:A`, the same address once, through the balancer;
 * - `1 name`: `--backend localhost:A`, one address through the balancer, dialled by IP as the name;
 * - `3 IPs`: `--backend 127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`, three addresses, least_request.
 *
 * Each round drives each proxy in turn with bench/loadgen.ts (unique keys) for `--seconds`, interleaved and
 * in a rotated order each round (so that neither the shared machine's drift nor a fixed position favours
 * one), and reads the proxy's own
 * CPU time (utime + stime from /proc) around the run: CPU per call is the number that must not grow with
 * the number of addresses. The backends are the example backend with no delay, one process each.
 *
 * ```sh
 * deno task bench:replicas                      # 5 rounds of 4 s per proxy
 * deno task bench:replicas --rounds 3 --seconds 3
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { backendCalls, closeClients, loadgen } from "./lib/drivers.ts";
import {
  cpuSnapshot,
  DENO,
  freePort,
  freePorts,
  otherCpuPct,
  type Proc,
  spawn,
  stop,
  stopAll,
  waitForPort,
} from "./lib/procs.ts";

const flags = parseArgs({
  args: Deno.args,
  strict: true,
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "4" },
    connections: { type: "string", default: "4" },
    streams: { type: "string", default: "16" },
  },
}).values;
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);

/** CPU time of a process so far, in ms (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

interface Target {
  name: string;
  backend: string;
  proc?: Proc;
  port?: number;
  runs: { rps: number; cpuUsPerCall: number; otherCpuPct: number }[];
}

async function main(): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "collapser_replicas_" });
  try {
    const backendPorts = freePorts(3);
    const backends = backendPorts.map((port, i) =>
      spawn(`backend-${i}`, DENO, ["run", "-A", "examples/backend.ts", "--port", String(port)], tmp)
    );
    for (const [i, port] of backendPorts.entries()) await waitForPort(port, backends[i]);
    const [a, b, c] = backendPorts.map((p) => `127.0.0.1:${p}`);
    const targets: Target[] = [
      { name: "1 IP", backend: a, runs: [] },
      { name: "1 IP, balancer", backend: `${a},${a}`, runs: [] },
      { name: "1 name", backend: `localhost:${backendPorts[0]}`, runs: [] },
      { name: "3 IPs", backend: `${a},${b},${c}`, runs: [] },
    ];
    for (const target of targets) {
      const port = await freePort();
      target.port = port;
      target.proc = spawn(`proxy-${target.name.replace(/\W+/g, "-")}`, DENO, [
        "run",
        "-A",
        "main.ts",
        "--backend",
        target.backend,
        "--port",
        String(port),
        "--metrics-port",
        String(await freePort()),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warn",
      ], tmp);
      await waitForPort(port, target.proc);
    }
    const load = ["--keys", "unique", "--connections", flags.connections!, "--streams", flags.streams!];
    for (const target of targets) {
      // Warm-up: JIT, sessions to every address.
      await loadgen(target.port!, [...load, "--duration", "1s"], tmp, 30_000);
    }
    const before = await Promise.all(backendPorts.map(backendCalls));
    for (let round = 0; round < ROUNDS; round++) {
      const order = targets.map((_, i) => targets[(i + round) % targets.length]);
      for (const target of order) {
        const pid = target.proc!.pid;
        const cpuFrom = cpuMs(pid), machineFrom = cpuSnapshot();
        const result = await loadgen(target.port!, [...load, "--duration", `${SECONDS}s`], tmp, 60_000);
        const used = cpuMs(pid) - cpuFrom;
        if (result.failed > 0) throw new Error(`${target.name}: ${JSON.stringify(result.failures)}`);
        // Calls answered in the run, warm-up ones included (the CPU covers them all).
        target.runs.push({
          rps: result.rps,
          cpuUsPerCall: (used * 1000) / result.total,
          otherCpuPct: otherCpuPct(machineFrom, cpuSnapshot()),
        });
        console.log(
          `round ${round + 1} ${target.name}: ${result.rps.toFixed(0)} calls/s, ` +
            `${((used * 1000) / result.total).toFixed(1)} µs CPU/call`,
        );
      }
    }
    const after = await Promise.all(backendPorts.map(backendCalls));
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const rows = targets.map((t) => ({
      target: t.name,
      backend: t.backend,
      rps: median(t.runs.map((r) => r.rps)),
      cpuUsPerCall: median(t.runs.map((r) => r.cpuUsPerCall)),
      otherCpuPct: median(t.runs.map((r) => r.otherCpuPct)),
    }));
    // Paired ratios per round, against the single IP of the same round.
    const ratio = (i: number, field: "rps" | "cpuUsPerCall") =>
      median(targets[i].runs.map((r, round) => r[field] / targets[0].runs[round][field]));
    console.log(
      `\nunique keys, ${ROUNDS} rounds × ${SECONDS} s per proxy, ${flags.connections}×${flags.streams} streams\n`,
    );
    console.log(
      "| proxy in front of | calls/s (median) | proxy CPU per call | vs 1 IP: calls/s | vs 1 IP: CPU/call | other load on the machine |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (const [i, row] of rows.entries()) {
      console.log(
        `| ${row.target} (\`${row.backend}\`) | ${row.rps.toFixed(0)} | ${
          row.cpuUsPerCall.toFixed(1)
        } µs | ` +
          `${ratio(i, "rps").toFixed(3)} | ${ratio(i, "cpuUsPerCall").toFixed(3)} | ${
            row.otherCpuPct.toFixed(0)
          }% |`,
      );
    }
    console.log(
      `\nbackend calls during the rounds (warm-up excluded): ${
        after.map((n, i) => n - before[i]).join(" / ")
      } ` +
        "(backend A serves the three one-address proxies and a third of 3 IPs)",
    );
    for (const t of targets) await stop(t.proc!);
  } finally {
    closeClients();
    await stopAll();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

await main();
