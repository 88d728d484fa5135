/**
 * Load harness: the example backend, the proxy (`deno run -A main.ts`, its own process so its RSS can be
 * read from /proc), nginx with `grpc_pass` (when installed) and a bare `node:http2` echo server (the
 * runtime's ceiling), all driven in one run by h2load (one request body for every request) or by
 * `bench/loadgen.ts` (a different body per request: unique keys, Zipf mix).
 *
 * Scenarios: (a) hot key, (b) unique keys, (c) Zipf over 1,000 keys, (d) slow backend (20 ms per call, at
 * most 16 at once) with a hot key; plus the herd check (10,000 concurrent identical calls) and a 10 s hot-key
 * run against the bound (seconds / TTL) + 1, drawn as an SVG.
 *
 * Each target is warmed up, then measured in 3 rounds of 3 s interleaved with the other targets of the
 * scenario (direct, nginx, proxy, echo, direct, …): the shared 2-core machine drifts by ±30% from minute to
 * minute, and the "vs" ratios pair neighbouring rounds so that drift cancels.
 *
 * ```sh
 * deno task bench:load            # full run, ~4 minutes; writes bench/out/ and bench/results.{md,json}, herd.svg
 * deno task bench:load --quick    # smoke test (CI): tiny counts, < 60 s, writes bench/out/ only
 * deno run -A bench/load.ts --only d --cpu-prof /tmp/prof   # one scenario, proxy under the V8 profiler
 * deno run -A bench/load.ts --only a,d --proxy-entry /tmp/patched/main.ts   # A/B a patched copy of the proxy
 * ```
 *
 * Every answer is checked, not just counted: h2load counts HTTP 200 as success even when grpc-status is
 * not 0, so each run is verified by a real grpc-js call through the target before and after, by the DATA
 * bytes h2load received (every answer must carry a message), and by the backend's own call counter.
 *
 * This file holds the flags, the scenarios, the run loop and main(); the parts live in bench/lib/: processes
 * (procs), load drivers and probes (drivers), the stack and nginx (stack), a measured round (measure), the herd
 * and hot-key runs (herd), statistics (stats), and the reports (report_md, report_json, report_svg).
 *
 * @module
 */

import { profileReport } from "./lib/profile.ts";
import { parseArgs } from "node:util";
import { fmt } from "./lib/format.ts";
import { closeClients, probe, requestBody } from "./lib/drivers.ts";
import { herd, hotRun, hotRunAlone, type HotRunOptions } from "./lib/herd.ts";
import { type MeasureOptions, measureRound, type TargetSpec, warmUp } from "./lib/measure.ts";
import { commandText, DENO, ROOT, stopAll, waitForQuiet } from "./lib/procs.ts";
import { markdown } from "./lib/report_md.ts";
import { json as toJson } from "./lib/report_json.ts";
import { svg } from "./lib/report_svg.ts";
import { detectNginx, type StackOptions, startStack, stopStack } from "./lib/stack.ts";
import { evaluate, pairedRatio, summarizeRounds } from "./lib/stats.ts";
import type {
  Check,
  HerdResult,
  HerdShape,
  HotRun,
  LoadShape,
  Report,
  Round,
  Row,
  Scenario,
} from "./lib/types.ts";

// ---------------------------------------------------------------------------------------------------------
// Configuration

const CACHE_TTL_MS = 100;

const FLAG_OPTIONS = {
  quick: { type: "boolean", default: false },
  only: { type: "string" },
  "no-nginx": { type: "boolean", default: false },
  "cpu-prof": { type: "string" },
  "proxy-flags": { type: "string" },
  "proxy-args": { type: "string" },
  "proxy-env": { type: "string" },
  "proxy-entry": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function parseFlags() {
  try {
    return parseArgs({ args: Deno.args, strict: true, options: FLAG_OPTIONS }).values;
  } catch (err) {
    console.error(`bench:load: ${(err as Error).message.split("\n")[0]} (see --help)`);
    Deno.exit(2);
  }
}

const flags = parseFlags();

if (flags.help) {
  console.log(
    `Usage: deno run -A bench/load.ts [--quick] [--only a,b,c,d,herd,hot] [--no-nginx] [--cpu-prof DIR] [--proxy-flags S] [--proxy-args S] [--proxy-env S] [--proxy-entry F]

  --quick          smoke test: tiny counts, finishes in well under a minute (CI)
  --only LIST      run only these parts (results are then not copied to bench/results.*)
  --no-nginx       skip nginx even if it is installed
  --cpu-prof DIR   run the proxy under the V8 CPU profiler; .cpuprofile and .md reports land in DIR
  --proxy-entry F  run this entry file as the proxy instead of main.ts (A/B a patched copy)
  --proxy-flags S  \`deno run\` flags for the proxy, space-separated, instead of its V8 flags (src/util/v8_flags.ts)
                   (e.g. --proxy-flags="--v8-flags=--max-semi-space-size=2"; --proxy-flags=--v8-flags= for V8's defaults)
  --proxy-args S   extra proxy flags, space-separated (e.g. --proxy-args="--workers 2"); memory is then the process tree's
  --proxy-env S    extra environment for the proxy, NAME=value space-separated (e.g. --proxy-env="MALLOC_ARENA_MAX=2")`,
  );
  Deno.exit(0);
}

const QUICK = flags.quick;
/** The load shape every target gets: connections × streams per connection in flight. */
const LOAD: LoadShape = QUICK
  ? { connections: 4, streams: 8, warmupMs: 300, rounds: 1, roundMs: 1_000 }
  : { connections: 8, streams: 16, warmupMs: 1_500, rounds: 3, roundMs: 3_000 };
/** (d) also measures latency below saturation: open loop at this total rate. */
const FIXED_RATE = QUICK ? 1_000 : 4_000;
const HERD: HerdShape = QUICK
  ? { requests: 1_000, connections: 4, delayMs: 300 }
  : { requests: 10_000, connections: 10, delayMs: 1_000 };
const HOT_RUN_MS = QUICK ? 2_000 : 10_000;
const PARTS = new Set((flags.only ?? "a,b,c,d,herd,hot").split(",").map((s) => s.trim()).filter(Boolean));
for (const part of PARTS) {
  if (!["a", "b", "c", "d", "herd", "hot"].includes(part)) {
    console.error(`bench:load: --only takes a,b,c,d,herd,hot: received ${JSON.stringify(part)}`);
    Deno.exit(2);
  }
}

const SCENARIOS: Scenario[] = [
  { id: "a", name: "hot key", tool: "h2load", keys: "hot", delayMs: 0 },
  { id: "b", name: "unique keys", tool: "loadgen", keys: "unique", delayMs: 0 },
  { id: "c", name: "Zipf mix, 1,000 keys", tool: "loadgen", keys: "zipf", delayMs: 0 },
  {
    id: "d",
    name: "slow backend (20 ms, ≤16 at once), hot key",
    tool: "h2load",
    keys: "hot",
    delayMs: 20,
    maxConcurrent: 16,
  },
];

/** `--workers N` in --proxy-args: N processes that each collapse on their own (without --redis). */
const WORKERS = Number(/--workers[ =](\d+)/.exec(flags["proxy-args"] ?? "")?.[1] ?? 1) || 1;
/** What every measured round needs besides its target. */
const MEASURE: MeasureOptions = { load: LOAD, cacheTtlMs: CACHE_TTL_MS, collapsers: WORKERS };
/** The long hot-key run through the proxy. */
const HOT: HotRunOptions = { runMs: HOT_RUN_MS, cacheTtlMs: CACHE_TTL_MS, load: LOAD, collapsers: WORKERS };

// ---------------------------------------------------------------------------------------------------------
// Scenarios

/** A run during which other processes used more than this share of the CPU is run again (full mode). */
const DISTURBED_PCT = 10;
/** Re-runs left for disturbed runs; bounded so a busy machine cannot stretch the run without end. */
let retries = QUICK ? 0 : 6;

/**
 * Runs one scenario on a fresh stack: every target is probed and warmed up, then measured in LOAD.rounds
 * interleaved rounds (direct, nginx, proxy, echo, direct, …) so that drift on a shared machine hits every
 * target alike; a row reports the median round's req/s and latency percentiles over all rounds' answers.
 */
async function runScenario(
  scenario: Scenario,
  tmp: string,
  stackOptions: StackOptions,
): Promise<{ rows: Row[]; hot?: HotRun }> {
  console.error(
    `\n== (${scenario.id}) ${scenario.name}: starting backend, proxy${
      stackOptions.nginxVersion ? ", nginx" : ""
    }, echo`,
  );
  // The relay (bench/relay_server.ts) is the runtime's ceiling where every call goes to the backend.
  const withRelay = scenario.keys !== "hot";
  const stack = await startStack(stackOptions, `s${scenario.id}`, tmp, scenario, true, withRelay);
  try {
    const bodyFile = `${tmp}/body-${scenario.id}.bin`;
    const hotKey = `hot-${scenario.id}`;
    await Deno.writeFile(bodyFile, requestBody(hotKey));
    const targets: TargetSpec[] = [
      { name: "direct", server: stack.backend, echo: false },
      ...(stack.nginx ? [{ name: "nginx" as const, server: stack.nginx, echo: false }] : []),
      { name: "proxy", server: stack.proxy, echo: false },
      ...(stack.relay ? [{ name: "relay" as const, server: stack.relay, echo: false }] : []),
      { name: "echo", server: stack.echo!, echo: true },
    ];
    if (scenario.id === "d") {
      // Latency below saturation: the same connections, open loop at a fixed rate far above what the backend
      // alone can serve.
      targets.push(
        { name: "proxy@rate", server: stack.proxy, echo: false, rate: FIXED_RATE },
        { name: "echo@rate", server: stack.echo!, echo: true, rate: FIXED_RATE },
      );
    }
    const before = new Map<TargetSpec, Check>();
    for (const t of targets) {
      const probed = await probe(t.server.port, `probe-${scenario.id}-${t.name}`, t.echo);
      before.set(t, { ok: probed.ok, note: `grpc-js call before: ${probed.note}` });
      await warmUp(scenario, t, tmp, bodyFile, LOAD);
    }
    const rounds = new Map<TargetSpec, Round[]>(targets.map((t) => [t, []]));
    for (let r = 0; r < LOAD.rounds; r++) {
      for (const t of targets) {
        let round = await measureRound(scenario, stack, t, tmp, bodyFile, MEASURE);
        if (round.otherCpuPct > DISTURBED_PCT && retries > 0) {
          // Another job took a share of the 2 cores: wait for a quiet moment and run the round again.
          retries--;
          console.error(
            `   ${t.name.padEnd(10)} round ${r + 1} disturbed (other processes used ${
              fmt(round.otherCpuPct, 0)
            }% CPU); running it again`,
          );
          await waitForQuiet();
          const again = await measureRound(scenario, stack, t, tmp, bodyFile, MEASURE);
          if (again.otherCpuPct < round.otherCpuPct) round = again;
        }
        rounds.get(t)!.push(round);
        console.error(
          `   ${t.name.padEnd(10)} round ${r + 1}: ${
            fmt(round.stats.rps, 0).padStart(7)
          } req/s, backend calls ${round.calls}, other CPU ${fmt(round.otherCpuPct, 0)}%${
            round.checks.every((c) => c.ok) ? "" : "  NOT VERIFIED"
          }`,
        );
      }
    }
    const rows: Row[] = [];
    for (const t of targets) {
      const afterKey = scenario.keys === "zipf" ? "z-1" : hotKey;
      const probed = await probe(t.server.port, afterKey, t.echo);
      const list = rounds.get(t)!;
      const checks: Check[] = [
        before.get(t)!,
        ...list.flatMap((round, i) =>
          round.checks.map((c) => ({ ok: c.ok, note: `round ${i + 1}: ${c.note}` }))
        ),
        { ok: probed.ok, note: `grpc-js call after (key ${afterKey}): ${probed.note}` },
      ];
      const row = summarizeRounds(scenario, t, list, checks);
      rows.push(row);
      console.error(
        `   ${t.name.padEnd(10)} median ${fmt(row.rps, 0).padStart(7)} req/s  p50 ${
          fmt(row.p50Ms, 2)
        } ms  p99 ${fmt(row.p99Ms, 2)} ms  backend calls ${row.backendCalls}  RSS ${
          fmt(row.peakRssMb, 1)
        } MB  CPU ${fmt(row.cpuUsPerAnswer, 0)} µs/answer  ${row.verified ? "verified" : "NOT VERIFIED"}`,
      );
      if (!row.verified) {
        for (const c of row.checks.filter((c) => c.startsWith("✗"))) console.error(`       ${c}`);
      }
    }
    const direct = rows.find((r) => r.target === "direct");
    const nginx = rows.find((r) => r.target === "nginx");
    for (const row of rows) {
      if (row.rate) continue; // open loop: its req/s is the offered rate, not a capacity
      row.vsDirect = direct ? pairedRatio(row, direct) : null;
      row.vsNginx = nginx ? pairedRatio(row, nginx) : null;
    }
    let hot: HotRun | undefined;
    if (scenario.id === "a" && PARTS.has("hot")) hot = await hotRun(stack, tmp, bodyFile, HOT);
    return { rows, hot };
  } finally {
    await stopStack(stack);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const h2loadVersion = await commandText("h2load", ["--version"]);
  if (!h2loadVersion) {
    console.error("bench:load: h2load not found (apt-get install nghttp2-client)");
    return 1;
  }
  const nginxVersion = await detectNginx(flags["no-nginx"]);
  if (!nginxVersion) console.error("bench:load: nginx not found or disabled: nginx rows are skipped");
  const stackOptions: StackOptions = {
    nginxVersion,
    cacheTtlMs: CACHE_TTL_MS,
    proxyEntry: flags["proxy-entry"],
    cpuProfDir: flags["cpu-prof"],
    proxyFlags: flags["proxy-flags"],
    proxyArgs: flags["proxy-args"],
    proxyEnv: flags["proxy-env"],
  };
  const commit = (await commandText("git", ["rev-parse", "--short", "HEAD"])) || "unknown";
  const dirty =
    (await commandText("git", ["--no-optional-locks", "status", "--porcelain", "--", "src", "main.ts"]))
      ? " + uncommitted src changes"
      : "";
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))?.[1] ??
    "unknown CPU";
  const tmp = await Deno.makeTempDir({ prefix: "collapser-load-" });
  const started = performance.now();
  const rows: Row[] = [];
  let herdResult: HerdResult | undefined;
  let hot: HotRun | undefined;
  let failed = false;
  try {
    for (const scenario of SCENARIOS) {
      if (!PARTS.has(scenario.id)) continue;
      const result = await runScenario(scenario, tmp, stackOptions);
      rows.push(...result.rows);
      hot ??= result.hot;
    }
    if (PARTS.has("hot") && !PARTS.has("a")) hot = await hotRunAlone(stackOptions, tmp, HOT);
    if (PARTS.has("herd")) herdResult = await herd(stackOptions, tmp, HERD);
  } catch (err) {
    failed = true;
    console.error(`\nbench:load failed: ${(err as Error).stack ?? err}`);
    console.error(`process logs are kept in ${tmp}`);
  } finally {
    await stopAll();
    closeClients();
  }
  if (failed) return 1;

  const report: Report = {
    meta: {
      date: new Date().toISOString(),
      quick: QUICK,
      parts: [...PARTS],
      deno: Deno.version.deno,
      h2load: h2loadVersion.split("\n")[0],
      nginx: nginxVersion ?? null,
      cpu,
      cpus: navigator.hardwareConcurrency,
      commit: commit + dirty,
      proxyFlags: flags["proxy-flags"] ?? null,
      proxyArgs: flags["proxy-args"] ?? null,
      proxyEnv: flags["proxy-env"] ?? null,
      proxyEntry: flags["proxy-entry"] ?? "main.ts",
      cacheTtlMs: CACHE_TTL_MS,
      load: LOAD,
      fixedRate: FIXED_RATE,
      herd: HERD,
      hotRunMs: HOT_RUN_MS,
    },
    rows,
    herd: herdResult,
    hot,
    targets: evaluate(rows, hot, SCENARIOS, LOAD),
  };
  // With --cpu-prof: where the proxy's CPU went, per scenario (bench/lib/profile.ts).
  const md = markdown(report, SCENARIOS) + (flags["cpu-prof"] ? await profileReport(flags["cpu-prof"]) : "");
  const json = toJson(report);
  const chart = svg(herdResult, hot, CACHE_TTL_MS);
  const outDir = `${ROOT}bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const stamp = report.meta.date.replace(/[:.]/g, "-");
  const prefix = QUICK ? "quick" : "load";
  await Deno.writeTextFile(`${outDir}/${prefix}-${stamp}.md`, md);
  await Deno.writeTextFile(`${outDir}/${prefix}-${stamp}.json`, json);
  await Deno.writeTextFile(`${outDir}/${prefix}-latest.md`, md);
  await Deno.writeTextFile(`${outDir}/${prefix}-latest.json`, json);
  if (herdResult || hot) await Deno.writeTextFile(`${outDir}/herd.svg`, chart);
  const complete = SCENARIOS.every((s) => PARTS.has(s.id)) && PARTS.has("herd") && PARTS.has("hot");
  if (
    !QUICK && complete && !flags["cpu-prof"] && !flags["proxy-flags"] && !flags["proxy-args"] &&
    !flags["proxy-env"] &&
    !flags["proxy-entry"]
  ) {
    await Deno.writeTextFile(`${ROOT}bench/results.md`, md);
    await Deno.writeTextFile(`${ROOT}bench/results.json`, json);
    await Deno.writeTextFile(`${ROOT}bench/herd.svg`, chart);
    // The committed copies must pass the project's `deno fmt --check` (it formats Markdown, JSON and SVG).
    await commandText(DENO, ["fmt", "bench/results.md", "bench/results.json", "bench/herd.svg"]);
    console.error(`\nwrote bench/results.md, bench/results.json, bench/herd.svg`);
  }
  console.log("\n" + md);
  console.error(
    `bench:load: ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s; results in bench/out/${prefix}-latest.{md,json}`,
  );
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const verified = rows.every((r) => r.verified) && (herdResult?.verified ?? true) &&
    (hot?.withinBound ?? true);
  if (!verified) console.error("bench:load: some runs could not be verified (see the checks above)");
  return verified ? 0 : 1;
}

if (import.meta.main) {
  let exiting = false;
  const onSignal = (signal: Deno.Signal) => {
    if (exiting) return;
    exiting = true;
    console.error(`\nbench:load: ${signal}, stopping every process it started`);
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", () => onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => onSignal("SIGTERM"));
  Deno.exit(await main());
}
