/**
 * The long fuzz run: the seeded case generators of tests/_fuzz.ts (gRPC-level calls over raw node:http2,
 * HTTP/2-level byte streams over raw TCP) against the proxy as its own process (`deno run -A main.ts`, as
 * tests/_helpers.ts `startCollapserProcess` starts it), in front of a grpc-js test backend.
 *
 * ```sh
 * deno task bench:fuzz                                   # 100,000 cases, seed 20261129
 * deno task bench:fuzz --cases 5000 --seed 7             # another draw
 * ```
 *
 * Prints progress and the proxy's RSS (VmRSS, and VmHWM: its largest since start) at the start and the end.
 * After every batch it checks that the process is alive and a well-formed call succeeds; if the process
 * died, it starts a fresh one and replays that batch case by case to name the case that kills it. At the end
 * it also checks that no caller is left waiting, that no backend call is left running, that /metrics
 * answers, that nothing but JSON logs (and grpc-js's own log lines) reached standard error — no abort, no
 * panic, no uncaught exception — and that SIGTERM stops it with exit code 0. Exit code 0 only if all of that
 * holds and every case with a known answer got it.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { parseArgs } from "node:util";
import {
  type CaseResult,
  describeCase,
  type FuzzCase,
  type FuzzTally,
  type FuzzTarget,
  generateCase,
  newTally,
  parseSeed,
  type Problem,
  runBatch,
  runCase,
  startFuzzBackend,
} from "../tests/_fuzz.ts";
import type { CollapserProcess } from "../tests/_helpers.ts";

/**
 * The fixtures, loaded only by the process that runs the proxy: they import src/, which the fuzz clients
 * (subprocesses started afresh for every batch) must not load — an edit to src/ by someone else during a
 * long run broke one (a half-saved module).
 */
const helpers = () => import("../tests/_helpers.ts");

const USAGE = `Usage: deno task bench:fuzz [options]

  --cases N            cases to run (default 100000)
  --seed S             seed, decimal or 0x hex (default 20261129)
  --first I            index of the first case (default 0)
  --concurrency C      cases at a time (default 16)
  --batch B            cases between health checks (default 1000)
  --only WHAT          run only the cases of a kind (grpc, h2) or with a label (e.g. hugeValue,
                       continuationFlood, reset:midBody), to narrow a finding down
  --proxy-args "..."   more flags for the proxy
  --proxy-v8-flags F   V8 flags for the proxy process (DENO_V8_FLAGS), e.g. --max-old-space-size=256
  -h, --help           this text`;

/** Small, so that "over the limit" cases are cheap; the proxy gets the same limit. */
const MAX_MESSAGE_BYTES = 64 * 1024;

interface Flags {
  cases: number;
  seed: number;
  first: number;
  concurrency: number;
  batch: number;
  only: string | undefined;
  proxyArgs: string[];
  proxyV8Flags: string | undefined;
  /** Internal: run one batch's clients against this port and print the tally as JSON (see runClients). */
  clientPort: number | undefined;
}

function parseFlags(args: string[]): Flags {
  const { values } = parseArgs({
    args,
    options: {
      cases: { type: "string", default: "100000" },
      seed: { type: "string", default: "20261129" },
      first: { type: "string", default: "0" },
      concurrency: { type: "string", default: "16" },
      batch: { type: "string", default: "1000" },
      only: { type: "string" },
      "proxy-args": { type: "string", default: "" },
      "proxy-v8-flags": { type: "string" },
      "client-port": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const count = (name: string, value: string, min: number) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) {
      throw new RangeError(`--${name}: expected an integer ≥ ${min}, got ${value}`);
    }
    return n;
  };
  return {
    cases: count("cases", values.cases, 1),
    seed: parseSeed(values.seed, 0),
    first: count("first", values.first, 0),
    concurrency: count("concurrency", values.concurrency, 1),
    batch: count("batch", values.batch, 1),
    only: values.only,
    proxyArgs: values["proxy-args"].split(/\s+/).filter((arg) => arg !== ""),
    proxyV8Flags: values["proxy-v8-flags"],
    clientPort: values["client-port"] === undefined
      ? undefined
      : count("client-port", values["client-port"], 1),
  };
}

/** The process's resident set now (VmRSS) and its largest since it started (VmHWM), in MB. */
function rssMb(pid: number): { now: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]);
  return { now: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** A gauge from the proxy's /metrics, or NaN. */
async function gauge(metricsPort: number, name: string): Promise<number> {
  const { admin } = await helpers();
  const { body } = await admin(metricsPort, "/metrics");
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(body)?.[1] ?? NaN);
}

/** The proxy's memory: RSS (now, peak) from /proc, its JS heap in use and external memory from /metrics. */
async function proxyMemory(pid: number, metricsPort: number): Promise<string> {
  const rss = rssMb(pid);
  const heap = await gauge(metricsPort, "nodejs_heap_size_used_bytes").catch(() => NaN);
  const external = await gauge(metricsPort, "nodejs_external_memory_bytes").catch(() => NaN);
  const own = Deno.memoryUsage().heapUsed;
  return `proxy RSS ${mb(rss.now)} (peak ${mb(rss.peak)}), heap ${mb(heap / 2 ** 20)}, external ` +
    `${mb(external / 2 ** 20)}; this process's heap ${mb(own / 2 ** 20)}`;
}

/** A running proxy process, and whether it has exited. */
interface Proxy {
  proc: CollapserProcess;
  exited: () => Deno.CommandStatus | undefined;
}

async function startProxy(backend: string, flags: Flags): Promise<Proxy> {
  const { startCollapserProcess } = await helpers();
  const proc = await startCollapserProcess(
    ["--max-message-size", String(MAX_MESSAGE_BYTES), "--cache-ttl", "20ms", ...flags.proxyArgs],
    { BACKEND_ADDRESS: backend, ...(flags.proxyV8Flags ? { DENO_V8_FLAGS: flags.proxyV8Flags } : {}) },
  );
  let status: Deno.CommandStatus | undefined;
  proc.child.status.then((s) => status = s);
  return { proc, exited: () => status };
}

/** Standard error lines that are neither JSON logs nor grpc-js's own (`E …`, `I …`, `D …`). */
function abnormal(proc: CollapserProcess): string[] {
  return proc.otherOutput.filter((line) => !/^[EWID] /.test(line) && line.trim() !== "");
}

async function wellFormedCall(port: number): Promise<string | undefined> {
  const { newClient, unary } = await helpers();
  const client = newClient(port);
  try {
    const request = { wellFormed: Date.now() };
    const result = await unary(client, "/test.Test/Unary", request, { deadline: Date.now() + 10_000 });
    if (result.status.code !== grpc.status.OK) return `${result.status.code} ${result.status.details}`;
    if (result.response?.toString() !== JSON.stringify(request)) return `wrong answer ${result.response}`;
    return undefined;
  } finally {
    client.close();
  }
}

/** Replays cases `[first, first + count)` one at a time against a fresh process; the first that kills it. */
async function findKiller(backend: string, flags: Flags, target: FuzzTarget, first: number, count: number) {
  const proxy = await startProxy(backend, flags);
  try {
    for (let index = first; index < first + count; index++) {
      const c = generateCase(flags.seed, index, target);
      const result: CaseResult = await runCase(proxy.proc.port, c);
      await new Promise((resolve) => setTimeout(resolve, 30));
      if (proxy.exited() !== undefined) return { c, result, stderr: abnormal(proxy.proc).slice(0, 3) };
    }
    return undefined;
  } finally {
    await proxy.proc.stop();
  }
}

const mb = (n: number) => `${n.toFixed(0)} MB`;

function tallyLine(t: FuzzTally): string {
  return `${t.cases} cases (${t.grpcCases} gRPC, ${t.checked} answers checked; ${t.h2Cases} raw HTTP/2), ` +
    `${t.problems.length} problems`;
}

/** Whether a case is one `--only` asks for. */
function onlyFilter(only: string | undefined): ((c: FuzzCase) => boolean) | undefined {
  return only === undefined ? undefined : (c) => c.kind === only || c.labels.includes(only);
}

/**
 * Runs cases `[first, first + count)` from a short-lived subprocess (this file with `--client-port`) and
 * returns its tally. Not in this process: Deno 2.8.3's node:http2 client keeps every session reachable after
 * it is destroyed, with its request headers (measured after a forced GC: ~12 KB a case with plain metadata,
 * ~290 KB with huge values), so a long run in one process ran out of heap at ~80,000 cases.
 */
async function runClients(port: number, flags: Flags, first: number, count: number): Promise<FuzzTally> {
  const args = [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    "--client-port",
    String(port),
    "--seed",
    String(flags.seed),
    "--first",
    String(first),
    "--cases",
    String(count),
    "--concurrency",
    String(flags.concurrency),
    ...(flags.only === undefined ? [] : ["--only", flags.only]),
  ];
  const output = await new Deno.Command(Deno.execPath(), { args, stdin: "null", stderr: "inherit" }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) throw new Error(`the fuzz client for cases ${first}.. failed: ${text}`);
  return JSON.parse(text.slice(text.lastIndexOf("\n{") + 1));
}

/** The client side of one batch (`--client-port`): runs it and prints its tally as the last line. */
async function clientMode(flags: Flags, port: number): Promise<number> {
  grpc.setLogVerbosity(grpc.logVerbosity.NONE);
  const tally = newTally();
  await runBatch({
    port,
    seed: flags.seed,
    first: flags.first,
    count: flags.cases,
    concurrency: flags.concurrency,
    target: { maxMessageBytes: MAX_MESSAGE_BYTES },
    tally,
    only: onlyFilter(flags.only),
  });
  console.log(`\n${JSON.stringify(tally)}`);
  return 0;
}

/**
 * Problems grouped by what went wrong and the shape of the request (gRPC or answered 415, body kind), most
 * frequent first, each with its first case.
 */
function problemGroups(problems: readonly Problem[]): string[] {
  const groups = new Map<string, { count: number; first: Problem }>();
  for (const problem of problems) {
    const grpcRequest = !problem.labels.some((label) => label.startsWith("method:")) &&
      problem.labels.some((label) => label.startsWith('ct:"application/grpc'));
    const body = problem.labels.find((label) => label.startsWith("body:")) ?? problem.labels[0] ?? "";
    const what = problem.problem.replace(/\d+/g, "N").replace(/\(\{.*\}\)/, "");
    const key = `${what} [${grpcRequest ? "gRPC request" : "not gRPC (415)"}, ${body}]`;
    const group = groups.get(key);
    if (group) group.count++;
    else groups.set(key, { count: 1, first: problem });
  }
  return [...groups].sort((a, b) => b[1].count - a[1].count).map(([key, { count, first }]) =>
    `${count} × ${key}; first: ${first.caseLine}`
  );
}

/** Adds `from`'s counts to `into`. */
function mergeTally(into: FuzzTally, from: FuzzTally): void {
  into.cases += from.cases;
  into.grpcCases += from.grpcCases;
  into.h2Cases += from.h2Cases;
  into.checked += from.checked;
  for (const [key, n] of Object.entries(from.outcomes)) into.outcomes[key] = (into.outcomes[key] ?? 0) + n;
  for (const [key, n] of Object.entries(from.grpcStatuses)) {
    into.grpcStatuses[key] = (into.grpcStatuses[key] ?? 0) + n;
  }
  into.problems.push(...from.problems);
}

async function main(): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(Deno.args);
  } catch (err) {
    console.error(`bench:fuzz: ${(err as Error).message}\n\n${USAGE}`);
    return 1;
  }
  if (flags.clientPort !== undefined) return await clientMode(flags, flags.clientPort);
  grpc.setLogVerbosity(grpc.logVerbosity.NONE); // the backend logs every odd metadata entry it drops
  const target: FuzzTarget = { maxMessageBytes: MAX_MESSAGE_BYTES };
  const backend = await startFuzzBackend();
  const proxy = await startProxy(backend.address, flags);
  const pid = proxy.proc.child.pid;
  const failures: string[] = [];
  const tally = newTally();
  const started = performance.now();
  const rssStart = rssMb(pid);
  console.log(
    `bench:fuzz: seed ${flags.seed}, cases ${flags.first}..${flags.first + flags.cases - 1}, ` +
      `concurrency ${flags.concurrency}; proxy pid ${pid} ` +
      `on :${proxy.proc.port}; at start: ${await proxyMemory(pid, proxy.proc.metricsPort)}`,
  );
  let lastReport = 0;
  const end = flags.first + flags.cases;
  try {
    for (let first = flags.first; first < end; first += flags.batch) {
      const count = Math.min(flags.batch, end - first);
      const problemsBefore = tally.problems.length;
      try {
        mergeTally(tally, await runClients(proxy.proc.port, flags, first, count));
      } catch (err) {
        failures.push((err as Error).message);
        break;
      }
      if (proxy.exited() !== undefined) {
        // What went wrong in this batch after the process died says nothing more.
        const lost = tally.problems.splice(problemsBefore).length;
        failures.push(
          `the proxy exited (${JSON.stringify(proxy.exited())}) in cases ${first}..${first + count - 1} ` +
            `(then ${lost} of them failed); stderr: ${abnormal(proxy.proc).slice(0, 3).join(" | ")}`,
        );
        console.log(
          `the proxy died; replaying cases ${first}..${first + count - 1} one by one on a fresh one`,
        );
        const killer = await findKiller(backend.address, flags, target, first, count);
        failures.push(
          killer
            ? `reproduced alone: ${describeCase(killer.c)} kills a fresh proxy; stderr: ${
              killer.stderr.join(" | ")
            }`
            : "no single case of that batch kills a fresh proxy (it takes the cases before it)",
        );
        break;
      }
      const call = await wellFormedCall(proxy.proc.port);
      if (call !== undefined) {
        failures.push(`a well-formed call failed after case ${first + count - 1}: ${call}`);
      }
      const seconds = (performance.now() - started) / 1000;
      if (seconds - lastReport >= 10 || first + count >= end) {
        lastReport = seconds;
        const done = (100 * (first + count - flags.first) / flags.cases).toFixed(0).padStart(3);
        const rate = (tally.cases / seconds).toFixed(0);
        const memory = await proxyMemory(pid, proxy.proc.metricsPort);
        console.log(`[${done}%] ${tallyLine(tally)}; ${rate}/s; ${memory}`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const alive = proxy.exited() === undefined;
    let rssEnd = { now: NaN, peak: NaN };
    if (alive) {
      rssEnd = rssMb(pid);
      console.log(`at the end: ${await proxyMemory(pid, proxy.proc.metricsPort)}`);
      // Nothing left over once the fuzz connections are gone (bounded: a leak fails, it does not hang).
      for (const name of ["collapser_waiting_callers", "collapser_inflight_requests"]) {
        let value = NaN;
        for (let waited = 0; waited < 10_000 && value !== 0; waited += 100) {
          value = await gauge(proxy.proc.metricsPort, name);
          if (value !== 0) await new Promise((resolve) => setTimeout(resolve, 100));
        }
        if (value !== 0) failures.push(`${name} is ${value} 10 s after the last case`);
      }
      const { admin } = await helpers();
      const metrics = await admin(proxy.proc.metricsPort, "/metrics").catch((err) => ({
        status: 0,
        body: String(err),
      }));
      if (metrics.status !== 200) failures.push(`/metrics answered ${metrics.status}`);
      const call = await wellFormedCall(proxy.proc.port);
      if (call !== undefined) failures.push(`the final well-formed call failed: ${call}`);
    }
    const internal = proxy.proc.logs.filter((line) => line.level === "error");
    for (const line of internal.slice(0, 3)) {
      failures.push(`error log: ${JSON.stringify(line).slice(0, 300)}`);
    }
    for (const group of problemGroups(tally.problems)) failures.push(group);
    const status = await proxy.proc.stop();
    if (alive && status.code !== 0) failures.push(`SIGTERM: the proxy exited with ${JSON.stringify(status)}`);
    const stderr = abnormal(proxy.proc);
    if (stderr.length > 0) failures.push(`abnormal standard error: ${stderr.slice(0, 5).join(" | ")}`);

    console.log(
      `\n${tallyLine(tally)} in ${seconds.toFixed(1)} s (${(tally.cases / seconds).toFixed(0)} cases/s)`,
    );
    console.log(`outcomes: ${JSON.stringify(tally.outcomes)}`);
    console.log(`gRPC statuses seen: ${JSON.stringify(tally.grpcStatuses)}`);
    console.log(
      `proxy RSS: start ${mb(rssStart.now)}, end ${mb(rssEnd.now)}, peak ${mb(rssEnd.peak)} (VmHWM); ` +
        `backend calls ${backend.calls()}; grpc-js log lines on its stderr ${
          proxy.proc.otherOutput.length - stderr.length
        }; ` +
        `JSON log lines ${proxy.proc.logs.length} (${internal.length} at error)`,
    );
    console.log(
      `alive at the end: ${alive ? "yes" : "NO"}; ` +
        (failures.length === 0
          ? "every check passed"
          : `${failures.length} failures:\n  ${failures.join("\n  ")}`),
    );
    return failures.length === 0 ? 0 : 1;
  } finally {
    await proxy.proc.stop();
    backend.close();
  }
}

if (import.meta.main) Deno.exit(await main());
