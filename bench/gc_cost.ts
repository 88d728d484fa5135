/**
 * What each answer leaves to the garbage collector, for the proxy and the bare relay (bench/relay_server.ts)
 * run with the same V8 flags (the proxy's, plus `--trace-gc-nvp`), side by side under the same load.
 *
 * A miss that lives past two scavenges is promoted: under unique keys a call lives ~40–60 ms and scavenges
 * come every ~30 ms, so every object a call holds for its whole life is copied twice and then marked by the
 * next mark-compact. The bytes promoted per answer show what a change to a call's state keeps alive, and
 * they hold still where req/s and CPU time move 10–20% between runs on two shared cores: over six rounds of
 * 2026-12-02 the relay read 4.30–4.41 KB, the proxy 6.20–6.30 KB at one commit and 5.08–5.35 KB at the next.
 *
 * ```sh
 * deno run -A bench/gc_cost.ts                      # unique keys, 2 rounds × 6 s per target
 * deno run -A bench/gc_cost.ts --keys zipf --rounds 3 --proxy-entry /tmp/old/main.ts
 * ```
 *
 * Per target and round: answers, CPU per answer, then per answer the scavenges' pause and the bytes they
 * promoted, and the mark-compacts' pause (their concurrent marking is in the CPU column only).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { V8_FLAGS } from "../src/util/v8_flags.ts";
import { cpuMs, DENO, freePorts, type Proc, spawn, stop, stopAll, waitForPort } from "./lib/procs.ts";
import { loadgen } from "./lib/drivers.ts";

const USAGE =
  "Usage: deno run -A bench/gc_cost.ts [--rounds N] [--seconds S] [--keys unique|zipf] [--proxy-entry F]";
let flags;
try {
  ({ values: flags } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "2" },
      seconds: { type: "string", default: "6" },
      keys: { type: "string", default: "unique" },
      "proxy-entry": { type: "string", default: "main.ts" },
      help: { type: "boolean", short: "h" },
    },
  }));
} catch (err) {
  console.error(`gc_cost: ${(err as Error).message}\n${USAGE}`);
  Deno.exit(1);
}
if (flags.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);
if (!(ROUNDS >= 1) || !(SECONDS >= 1) || !["unique", "zipf"].includes(flags.keys)) {
  console.error("gc_cost: --rounds and --seconds take numbers ≥ 1, --keys unique or zipf");
  Deno.exit(1);
}

interface GcTally {
  answers: number;
  cpuUsPerAnswer: number;
  scavenges: number;
  scavengeUs: number;
  promotedBytes: number;
  markCompacts: number;
  markCompactUs: number;
}

/** Sums the `--trace-gc-nvp` records (one JSON object per line) in `text`. */
function tally(text: string): Omit<GcTally, "answers" | "cpuUsPerAnswer"> {
  const t = { scavenges: 0, scavengeUs: 0, promotedBytes: 0, markCompacts: 0, markCompactUs: 0 };
  const lines = text.split("\n");
  lines.pop(); // the last line may still be being written
  for (const line of lines) {
    const at = line.indexOf("GC: {");
    if (at < 0) continue;
    const gc = JSON.parse(line.slice(at + 4)) as { gc: string; pause: number; promoted?: number };
    if (gc.gc === "s") {
      // A mark-compact empties the young generation too, and reports that as promoted: how much depends on
      // when it lands, so only the scavenges' promotion is counted (stable to a few %).
      t.promotedBytes += gc.promoted ?? 0;
      t.scavenges++;
      t.scavengeUs += gc.pause * 1000;
    } else {
      t.markCompacts++;
      t.markCompactUs += gc.pause * 1000;
    }
  }
  return t;
}

const tmp = await Deno.makeTempDir({ prefix: "gc-cost-" });
const [backendPort] = freePorts(1);
const results: { target: string; round: number; tally: GcTally }[] = [];
try {
  const backend = spawn(
    "backend",
    DENO,
    ["run", "-A", "examples/backend.ts", "--port", String(backendPort)],
    tmp,
  );
  await waitForPort(backendPort, backend);
  const v8 = `--v8-flags=${[...V8_FLAGS, "--trace-gc-nvp"].join(",")}`;
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternate which goes first, so that drift on the machine does not always hit the same one.
    const order = round % 2 === 1 ? ["proxy", "relay"] : ["relay", "proxy"];
    for (const target of order) {
      const [port, adminPort] = freePorts(2);
      const args = target === "proxy"
        ? [
          flags["proxy-entry"],
          "--backend",
          `127.0.0.1:${backendPort}`,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
        ]
          .concat(["--metrics-port", String(adminPort), "--log-level", "error"])
        : ["bench/relay_server.ts", "--port", String(port), "--backend", `127.0.0.1:${backendPort}`];
      // V8 prints the trace through C stdio: into a file of its own, line-buffered (`stdbuf`; the shell and
      // stdbuf exec deno in their place). Through a pipe to this process, records were lost once 64 KiB had
      // gone through (a 1 s round read no scavenge at all).
      const trace = `${tmp}/${target}-${round}.trace`;
      const proc: Proc = spawn(
        `${target}-${round}`,
        "sh",
        [
          "-c",
          'exec stdbuf -oL "$0" "$@" > "$TRACE" 2>&1',
          ...[DENO, "run", "-A", v8, ...args],
        ],
        tmp,
        false,
        { TRACE: trace },
      );
      try {
        await waitForPort(port, proc);
        const load = ["--keys", flags.keys, "--connections", "8", "--streams", "16"];
        await loadgen(port, [...load, "--duration", "2s"], tmp, 60_000); // warm-up: the JIT, the heap's size
        const from = (await Deno.readTextFile(trace)).length;
        const cpuBefore = cpuMs(proc.pid);
        const run = await loadgen(port, [...load, "--duration", `${SECONDS}s`], tmp, 60_000 + SECONDS * 1000);
        const cpu = cpuMs(proc.pid) - cpuBefore;
        if (run.failed > 0) {
          throw new Error(`${target}: ${run.failed} calls failed: ${JSON.stringify(run.failures)}`);
        }
        const text = (await Deno.readTextFile(trace)).slice(from);
        results.push({
          target,
          round,
          tally: { answers: run.ok, cpuUsPerAnswer: (cpu * 1000) / run.ok, ...tally(text) },
        });
      } finally {
        await stop(proc);
      }
    }
  }
} finally {
  await stopAll();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

const per = (x: number, n: number, digits = 1) => (x / n).toFixed(digits);
console.log(
  `\n${flags.keys} keys, 8 × 16 streams, ${SECONDS} s per round; V8 flags ${V8_FLAGS.join(" ")} for both\n`,
);
console.log(
  "| Target | Round | Answers | CPU µs/answer | Scavenges | Scavenge µs/answer | Promoted by scavenges KB/answer | Mark-compacts | Mark-compact µs/answer |",
);
console.log("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
for (const { target, round, tally: t } of results) {
  const n = t.answers;
  console.log(
    `| ${target} | ${round} | ${n} | ${t.cpuUsPerAnswer.toFixed(0)} | ${t.scavenges} | ${
      per(t.scavengeUs, n)
    } | ` +
      `${per(t.promotedBytes / 1024, n, 2)} | ${t.markCompacts} | ${per(t.markCompactUs, n)} |`,
  );
}
