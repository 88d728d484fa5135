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
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { ECHO_MESSAGE } from "./echo_server.ts";
import type { KeyMode, LoadResult } from "./loadgen.ts";

// ---------------------------------------------------------------------------------------------------------
// Configuration

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const CACHE_TTL_MS = 100;
const GET = "/demo.Demo/Get";

const FLAG_OPTIONS = {
  quick: { type: "boolean", default: false },
  only: { type: "string" },
  "no-nginx": { type: "boolean", default: false },
  "cpu-prof": { type: "string" },
  "proxy-flags": { type: "string" },
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
    `Usage: deno run -A bench/load.ts [--quick] [--only a,b,c,d,herd,hot] [--no-nginx] [--cpu-prof DIR] [--proxy-flags S] [--proxy-entry F]

  --quick          smoke test: tiny counts, finishes in well under a minute (CI)
  --only LIST      run only these parts (results are then not copied to bench/results.*)
  --no-nginx       skip nginx even if it is installed
  --cpu-prof DIR   run the proxy under the V8 CPU profiler; .cpuprofile and .md reports land in DIR
  --proxy-entry F  run this entry file as the proxy instead of main.ts (A/B a patched copy)
  --proxy-flags S  extra \`deno run\` flags for the proxy, space-separated (e.g. --proxy-flags="--v8-flags=--max-semi-space-size=2")`,
  );
  Deno.exit(0);
}

const QUICK = flags.quick;
/** The load shape every target gets: connections × streams per connection in flight. */
const LOAD = QUICK
  ? { connections: 4, streams: 8, warmupMs: 300, rounds: 1, roundMs: 1_000 }
  : { connections: 8, streams: 16, warmupMs: 1_500, rounds: 3, roundMs: 3_000 };
/** (d) also measures latency below saturation: open loop at this total rate. */
const FIXED_RATE = QUICK ? 1_000 : 4_000;
const HERD = QUICK
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

type TargetName = "direct" | "nginx" | "proxy" | "relay" | "echo" | "proxy@rate" | "echo@rate";

interface Scenario {
  id: "a" | "b" | "c" | "d";
  name: string;
  tool: "h2load" | "loadgen";
  keys: KeyMode;
  delayMs: number;
  maxConcurrent?: number;
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

// ---------------------------------------------------------------------------------------------------------
// Processes: every one is tracked and stopped in `finally`, children included (nginx workers).

interface Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly log: string;
  exited: boolean;
  readonly status: Promise<Deno.CommandStatus>;
  /** Captured standard output, when asked for. */
  readonly stdout?: Promise<string>;
}

const procs: Proc[] = [];

function spawn(name: string, cmd: string, args: string[], logDir: string, capture = false): Proc {
  const log = `${logDir}/${name}.log`;
  const child = new Deno.Command(cmd, { args, cwd: ROOT, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const toLog = (stream: ReadableStream<Uint8Array>) =>
    Deno.open(log, { write: true, create: true, append: true })
      .then((file) => stream.pipeTo(file.writable))
      .catch(() => {});
  let stdout: Promise<string> | undefined;
  if (capture) stdout = new Response(child.stdout).text();
  else toLog(child.stdout);
  toLog(child.stderr);
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    log,
    exited: false,
    status: child.status.then((s) => {
      proc.exited = true;
      return s;
    }),
    stdout,
  };
  procs.push(proc);
  return proc;
}

/** Pids whose parent is `ppid` (e.g. nginx workers). */
function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) out.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** SIGTERM, a grace period, then SIGKILL for the process and any children it left. */
async function stop(proc: Proc, graceMs = 3_000): Promise<void> {
  const index = procs.indexOf(proc);
  if (index >= 0) procs.splice(index, 1);
  if (proc.exited) return;
  const children = childPids(proc.pid);
  try {
    proc.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const exited = await Promise.race([proc.status.then(() => true), sleep(graceMs).then(() => false)]);
  if (!exited) {
    try {
      proc.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await proc.status;
  }
  for (const pid of children) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // exited with its parent, as it should
    }
  }
}

async function stopAll(): Promise<void> {
  await Promise.all([...procs].reverse().map((p) => stop(p)));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await Promise.resolve();
  return port;
}

async function waitForPort(port: number, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc.exited) throw new Error(`${proc.name} exited before listening; see ${proc.log}`);
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${timeoutMs} ms; see ${proc.log}`);
}

/** Runs a process to completion with a hard time limit; resolves with its standard output. */
async function runToEnd(name: string, cmd: string, args: string[], logDir: string, limitMs: number) {
  const proc = spawn(name, cmd, args, logDir, true);
  const timer = setTimeout(() => stop(proc, 500), limitMs);
  try {
    const [status, out] = await Promise.all([proc.status, proc.stdout!]);
    if (!status.success) {
      throw new Error(
        `${name} failed (exit ${status.code}${status.signal ? `, ${status.signal}` : ""}); see ${proc.log}\n${
          out.slice(-2000)
        }`,
      );
    }
    return out;
  } finally {
    clearTimeout(timer);
    const index = procs.indexOf(proc);
    if (index >= 0) procs.splice(index, 1);
  }
}

// ---------------------------------------------------------------------------------------------------------
// /proc: resident memory

interface Memory {
  rssMb: number;
  hwmMb: number;
}

// ---------------------------------------------------------------------------------------------------------
// /proc: CPU used by processes this harness did not start (other work on the machine skews every number)

interface CpuSnapshot {
  at: number;
  /** Busy jiffies of the whole machine. */
  busy: number;
  /** Jiffies of this process and everything it started, live or reaped. */
  ours: number;
}

function cpuSnapshot(): CpuSnapshot {
  const at = performance.now();
  const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] ?? 0);
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // After the command: state ppid … utime(14) stime(15) cutime(16) cstime(17) → f[11..14].
      parent.set(Number(entry.name), Number(f[1]));
      ticks.set(Number(entry.name), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    } catch {
      // gone meanwhile
    }
  }
  let ours = 0;
  for (const [pid, t] of ticks) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) {
      if (p === Deno.pid) {
        ours += t;
        break;
      }
    }
  }
  return { at, busy, ours };
}

/** Share of the machine's CPU (all cores) that other processes used between two snapshots, in %. */
function otherCpuPct(from: CpuSnapshot, to: CpuSnapshot): number {
  const ticksPerS = 100; // USER_HZ
  const capacity = ((to.at - from.at) / 1000) * ticksPerS * navigator.hardwareConcurrency;
  const other = Math.max(0, to.busy - from.busy - (to.ours - from.ours));
  return capacity > 0 ? Math.min(100, (100 * other) / capacity) : 0;
}

function memory(pid: number): Memory | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
  } catch {
    return undefined;
  }
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the next read is this run's peak. */
function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // not permitted: the peak then covers the process's whole life, still an upper bound
  }
}

// ---------------------------------------------------------------------------------------------------------
// gRPC: a real grpc-js client for probes and the backend's call counter

const identity = (b: Buffer): Buffer => b;
const clients = new Map<number, grpc.Client>();

function client(port: number): grpc.Client {
  let c = clients.get(port);
  if (c === undefined) {
    c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    clients.set(port, c);
  }
  return c;
}

function unary(port: number, path: string, message: unknown, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client(port).makeUnaryRequest(
      path,
      identity,
      identity,
      Buffer.from(JSON.stringify(message)),
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, value) => (err ? reject(err) : resolve(value!)),
    );
  });
}

/** The backend's Get counter, read with a direct grpc-js call to `/demo.Demo/Stats`. */
/**
 * Waits until the backend has had no call running or queued for 150 ms, so that a round's backend count does
 * not include the tail of the round before (in-flight calls at the stop, or the proxy's refresh-ahead call
 * started by one of the previous round's last hits). Gives up after 10 s.
 */
async function backendQuiet(port: number): Promise<void> {
  const until = performance.now() + 10_000;
  let quietSince = performance.now();
  let last = await backendCalls(port);
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stats = JSON.parse((await unary(port, "/demo.Demo/Stats", {})).toString());
    if (stats.calls !== last || stats.active > 0 || stats.queued > 0) {
      last = stats.calls;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= 150) return;
  }
}

async function backendCalls(port: number): Promise<number> {
  return JSON.parse((await unary(port, "/demo.Demo/Stats", {})).toString()).calls;
}

/** One real call through `port`; true when the answer is right for `key` (or is the echo answer). */
async function probe(port: number, key: string, echo: boolean): Promise<{ ok: boolean; note: string }> {
  try {
    const reply = (await unary(port, GET, { key })).toString();
    if (echo) {
      return { ok: reply === ECHO_MESSAGE, note: reply === ECHO_MESSAGE ? "ok" : `bad echo ${reply}` };
    }
    const parsed = JSON.parse(reply);
    const ok = parsed.key === key && parsed.value === `value of ${key}`;
    return { ok, note: ok ? "ok" : `wrong answer ${reply}` };
  } catch (err) {
    return { ok: false, note: `probe failed: ${(err as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Load tools

interface RunStats {
  rps: number;
  /** Latency of every answered request in the window, in ms (unsorted). */
  latenciesMs: Float64Array;
  /** Requests answered in the counted window (what the backend counter is compared with). */
  requests: number;
  /** Requests that failed (non-2xx, stream errors, grpc-status ≠ 0 where the tool can see it). */
  errors: number;
  /** Tool-specific check of the answers. */
  answerCheck: { ok: boolean; note: string };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

interface H2loadOptions {
  durationMs: number;
  /** Smallest correct answer in bytes (0: do not check). */
  minAnswerBytes: number;
  /** Open-loop rate per connection (`--rps`); closed loop when absent. */
  rpsPerClient?: number;
  /** Keep each answer's time for the chart. */
  keepAnswers?: boolean;
}

interface H2loadResult extends RunStats {
  /** When each request was answered (epoch ms), when `keepAnswers`. */
  answeredAt?: Float64Array;
}

/**
 * h2load against `port` with the same body on every request. Latency percentiles come from its per-request
 * `--log-file`; the answer check compares the DATA bytes it received with the smallest correct answer (a
 * trailers-only gRPC error carries no message).
 */
async function h2load(port: number, bodyFile: string, o: H2loadOptions, tmp: string): Promise<H2loadResult> {
  const logFile = `${tmp}/h2load-${port}-${Date.now()}.tsv`;
  const args = [
    "-t",
    "1",
    "-c",
    String(LOAD.connections),
    "-m",
    String(LOAD.streams),
    "-D",
    `${o.durationMs}ms`,
    "-d",
    bodyFile,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "--log-file",
    logFile,
  ];
  if (o.rpsPerClient) args.push("--rps", String(o.rpsPerClient));
  args.push(`http://127.0.0.1:${port}${GET}`);
  const out = await runToEnd("h2load", "h2load", args, tmp, o.durationMs + 60_000);
  const need = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot parse h2load output (${re}):\n${out}`);
    return m.slice(1).map(Number);
  };
  const [rps] = need(/finished in [\d.]+m?s, ([\d.]+) req\/s/);
  const [, , done, succeeded, failed, errored, timeout] = need(
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/,
  );
  const [s2xx, s3xx, s4xx, s5xx] = need(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const [dataBytes] = need(/traffic: .*?, .*? headers .*?\), [\d.]+[KMG]?B \((\d+)\) data/);
  const rows = (await Deno.readTextFile(logFile)).split("\n");
  await Deno.remove(logFile).catch(() => {});
  const latencies: number[] = [];
  const answeredAt: number[] = [];
  for (const row of rows) {
    const [start, status, us] = row.split("\t");
    if (status !== "200") continue;
    latencies.push(Number(us) / 1000);
    if (o.keepAnswers) answeredAt.push((Number(start) + Number(us)) / 1000);
  }
  const errors = failed + errored + timeout + s3xx + s4xx + s5xx + Math.max(0, done - succeeded);
  // h2load counts a 200 when the headers arrive; a stream per slot may be cut off before its DATA at the stop.
  const cut = LOAD.connections * LOAD.streams;
  const enough = dataBytes >= Math.max(0, s2xx - cut) * o.minAnswerBytes;
  return {
    rps,
    latenciesMs: Float64Array.from(latencies),
    requests: s2xx,
    errors,
    answerCheck: {
      ok: enough && s2xx > 0,
      note: `${s2xx} × HTTP 200 carried ${dataBytes} B of messages (≥ ${o.minAnswerBytes} B each: ${
        enough ? "yes" : "NO"
      })`,
    },
    answeredAt: o.keepAnswers ? Float64Array.from(answeredAt) : undefined,
  };
}

/** bench/loadgen.ts in its own process; every answer's grpc-status and key are checked there. */
async function loadgen(
  port: number,
  args: string[],
  tmp: string,
  limitMs: number,
): Promise<LoadResult & { latenciesMs: Float64Array }> {
  const file = `${tmp}/latencies-${port}-${Date.now()}.f64`;
  const out = await runToEnd(
    "loadgen",
    DENO,
    ["run", "-A", "bench/loadgen.ts", "--target", `127.0.0.1:${port}`, "--latencies", file, ...args],
    tmp,
    limitMs,
  );
  const bytes = await Deno.readFile(file);
  await Deno.remove(file).catch(() => {});
  const result: LoadResult = JSON.parse(out.trim().split("\n").at(-1)!);
  return { ...result, latenciesMs: new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8) };
}

function loadgenStats(r: LoadResult & { latenciesMs: Float64Array }): RunStats {
  const failures = Object.entries(r.failures).map(([k, v]) => `${v} × ${k}`).join(", ");
  return {
    rps: r.rps,
    latenciesMs: r.latenciesMs,
    requests: r.total,
    errors: r.failed,
    answerCheck: {
      ok: r.failed === 0 && r.ok > 0,
      note: `${r.ok} answers checked (grpc-status 0, right key)${failures ? `; failures: ${failures}` : ""}`,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The stack: backend, proxy, nginx, echo server

interface Server {
  proc: Proc;
  port: number;
  /** Processes whose memory counts for this target (nginx: master + workers). */
  pids(): number[];
}

interface Stack {
  backend: Server;
  proxy: Server;
  nginx?: Server;
  echo?: Server;
  relay?: Server;
}

let nginxVersion: string | undefined;

async function detectNginx(): Promise<string | undefined> {
  if (flags["no-nginx"]) return undefined;
  try {
    const out = await new Deno.Command("nginx", { args: ["-v"], stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    return /nginx\/(\d+\.\d+\.\d+)/.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

function versionAtLeast(version: string, min: [number, number, number]): boolean {
  const v = version.split(".").map(Number);
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i] > min[i];
  return true;
}

/**
 * nginx as a plain gRPC reverse proxy: one worker (like the single-threaded proxy), HTTP/2 cleartext in,
 * `grpc_pass` to an upstream with a keepalive pool; keepalive_requests raised on both sides so nothing is
 * recycled mid-run. nginx < 1.25.1 takes `listen … http2`; later versions `http2 on`.
 */
function nginxConfig(dir: string, port: number, backendPort: number, version: string): string {
  const h2on = versionAtLeast(version, [1, 25, 1]);
  return `# generated by bench/load.ts
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log ${dir}/nginx-access.log combined buffer=256k flush=1s;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 2048;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 512;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port}${h2on ? "" : " http2"};
${h2on ? "    http2 on;\n" : ""}    location / {
      grpc_pass grpc://backend;
      grpc_read_timeout 120s;
      grpc_send_timeout 120s;
    }
  }
}
`;
}

async function startStack(
  name: string,
  tmp: string,
  backendOptions: { delayMs: number; maxConcurrent?: number },
  withEcho: boolean,
  withRelay = false,
): Promise<Stack> {
  const dir = `${tmp}/${name}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.chmod(dir, 0o755); // nginx workers drop to "nobody" when started as root
  const [bPort, pPort, mPort, nPort, ePort, rPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const backendArgs = [
    "run",
    "-A",
    "examples/backend.ts",
    "--port",
    String(bPort),
    "--delay",
    `${backendOptions.delayMs}ms`,
  ];
  if (backendOptions.maxConcurrent) {
    backendArgs.push("--max-concurrent", String(backendOptions.maxConcurrent));
  }
  const backend = spawn(`${name}-backend`, DENO, backendArgs, dir);
  const profArgs = flags["cpu-prof"] ? ["--cpu-prof-dir", flags["cpu-prof"], "--cpu-prof-md"] : [];
  profArgs.push(...(flags["proxy-flags"]?.split(" ").filter(Boolean) ?? []));
  const proxy = spawn(`${name}-proxy`, DENO, [
    "run",
    "-A",
    ...profArgs,
    flags["proxy-entry"] ?? "main.ts",
    "--backend",
    `127.0.0.1:${bPort}`,
    "--host",
    "127.0.0.1",
    "--port",
    String(pPort),
    "--metrics-port",
    String(mPort),
    "--cache-ttl",
    `${CACHE_TTL_MS}ms`,
  ], dir);
  let nginx: Proc | undefined;
  if (nginxVersion) {
    await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConfig(dir, nPort, bPort, nginxVersion));
    nginx = spawn(`${name}-nginx`, "nginx", [
      "-p",
      dir,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      `${dir}/nginx-error.log`,
      "-g",
      "daemon off;",
    ], dir);
  }
  const echo = withEcho
    ? spawn(`${name}-echo`, DENO, ["run", "-A", "bench/echo_server.ts", "--port", String(ePort)], dir)
    : undefined;
  const relay = withRelay
    ? spawn(`${name}-relay`, DENO, [
      "run",
      "-A",
      "bench/relay_server.ts",
      "--port",
      String(rPort),
      "--backend",
      `127.0.0.1:${bPort}`,
    ], dir)
    : undefined;
  await waitForPort(bPort, backend);
  await waitForPort(pPort, proxy);
  if (relay) await waitForPort(rPort, relay);
  if (nginx) await waitForPort(nPort, nginx);
  if (echo) await waitForPort(ePort, echo);
  const one = (proc: Proc, port: number): Server => ({ proc, port, pids: () => [proc.pid] });
  return {
    backend: one(backend, bPort),
    proxy: one(proxy, pPort),
    nginx: nginx && { proc: nginx, port: nPort, pids: () => [nginx.pid, ...childPids(nginx.pid)] },
    echo: echo && one(echo, ePort),
    relay: relay && one(relay, rPort),
  };
}

async function stopStack(stack: Stack): Promise<void> {
  await Promise.all(
    [stack.proxy, stack.nginx, stack.echo, stack.relay, stack.backend].filter((s) => s !== undefined).map((
      s,
    ) => stop(s.proc)),
  );
  for (const s of [stack.proxy, stack.nginx, stack.echo, stack.relay, stack.backend]) {
    if (s === undefined) continue;
    clients.get(s.port)?.close();
    clients.delete(s.port);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

/** One measured target in a scenario. */
interface TargetSpec {
  name: TargetName;
  server: Server;
  /** The echo server answers with its fixed message. */
  echo: boolean;
  /** Open loop at this many requests per second in total (h2load `--rps`); closed loop when absent. */
  rate?: number;
}

interface Check {
  ok: boolean;
  note: string;
}

interface Round {
  stats: RunStats;
  calls: number;
  bound?: number;
  peakRssMb: number;
  otherCpuPct: number;
  checks: Check[];
}

interface Row {
  scenario: Scenario["id"];
  target: TargetName;
  /** Offered load for open-loop rows, req/s. */
  rate?: number;
  tool: "h2load" | "loadgen";
  /** Median over the rounds. */
  rps: number;
  rpsMin: number;
  rpsMax: number;
  /** req/s of each round, in order (rounds of all targets interleave, so round i of two targets are neighbours). */
  rpsRounds: number[];
  rounds: number;
  /** Over every answer of every round. */
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  backendCalls: number | null;
  collapseRatio: number | null;
  /** Proxy, hot key: the bound Σ (round seconds / TTL + 1) on backend calls. */
  backendCallBound?: number;
  peakRssMb: number | null;
  /** CPU (% of all cores) used during the worst round by processes the harness did not start. */
  otherCpuPct: number;
  vsDirect: number | null;
  vsNginx: number | null;
  verified: boolean;
  checks: string[];
}

function requestBody(key: string): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ key }));
  const frame = new Uint8Array(5 + json.byteLength);
  new DataView(frame.buffer).setUint32(1, json.byteLength);
  frame.set(json, 5);
  return frame;
}

/** Size of the smallest correct answer for `key` on the wire: prefix + `{"key","value","call":1}`. */
function minAnswerBytes(key: string, echo: boolean): number {
  const message = echo ? ECHO_MESSAGE : JSON.stringify({ key, value: `value of ${key}`, call: 1 });
  return 5 + new TextEncoder().encode(message).byteLength;
}

function loadgenArgs(scenario: Scenario, t: TargetSpec, durationMs: number): string[] {
  return [
    "--keys",
    scenario.keys,
    "--hot-key",
    `hot-${scenario.id}`,
    "--connections",
    String(LOAD.connections),
    "--streams",
    String(LOAD.streams),
    "--duration",
    `${durationMs}ms`,
    "--expect",
    t.echo ? "echo" : "key",
  ];
}

/** Warm-up (JIT, connections, pools): the same load for LOAD.warmupMs, not counted. */
async function warmUp(scenario: Scenario, t: TargetSpec, tmp: string, bodyFile: string): Promise<void> {
  if (scenario.tool === "h2load") {
    await h2load(t.server.port, bodyFile, { durationMs: LOAD.warmupMs, minAnswerBytes: 0 }, tmp);
  } else {
    await loadgen(t.server.port, loadgenArgs(scenario, t, LOAD.warmupMs), tmp, LOAD.warmupMs + 60_000);
  }
}

/** One measured round against one target, checked against the backend's counter. */
async function measureRound(
  scenario: Scenario,
  stack: Stack,
  t: TargetSpec,
  tmp: string,
  bodyFile: string,
): Promise<Round> {
  const hotKey = `hot-${scenario.id}`;
  const pids = t.server.pids();
  for (const pid of pids) resetPeak(pid);
  await backendQuiet(stack.backend.port);
  const callsBefore = await backendCalls(stack.backend.port);
  const startedAt = performance.now();
  const cpuBefore = cpuSnapshot();
  const stats: RunStats = scenario.tool === "h2load"
    ? await h2load(t.server.port, bodyFile, {
      durationMs: LOAD.roundMs,
      minAnswerBytes: minAnswerBytes(hotKey, t.echo),
      rpsPerClient: t.rate ? Math.ceil(t.rate / LOAD.connections) : undefined,
    }, tmp)
    : loadgenStats(
      await loadgen(t.server.port, loadgenArgs(scenario, t, LOAD.roundMs), tmp, LOAD.roundMs + 60_000),
    );
  const wallMs = performance.now() - startedAt;
  const otherCpu = otherCpuPct(cpuBefore, cpuSnapshot());
  const peakRssMb = pids.map((pid) => memory(pid)?.hwmMb ?? NaN).reduce((a, b) => a + b, 0);
  const calls = (await backendCalls(stack.backend.port)) - callsBefore;

  const checks: Check[] = [stats.answerCheck, {
    ok: stats.errors === 0,
    note: `${stats.errors} failed requests`,
  }];
  const inflight = LOAD.connections * LOAD.streams;
  let bound: number | undefined;
  if (t.echo) {
    checks.push({ ok: calls === 0, note: `backend calls ${calls} (the echo server never calls it)` });
  } else if (t.name === "direct" || t.name === "nginx" || t.name === "relay") {
    // Every answer was a real backend call; a few more may have been in flight when the tool stopped.
    checks.push({
      ok: calls >= stats.requests && calls <= stats.requests + inflight + 10,
      note: `backend calls ${calls} = answers ${stats.requests} (+ ≤ ${inflight} in flight at the stop)`,
    });
  } else if (scenario.keys === "hot") {
    bound = Math.ceil(wallMs / CACHE_TTL_MS) + 1;
    checks.push({
      ok: calls >= 1 && calls <= bound,
      note: `backend calls ${calls} ≤ bound (${
        (wallMs / 1000).toFixed(2)
      } s / ${CACHE_TTL_MS} ms) + 1 = ${bound}`,
    });
  } else if (scenario.keys === "unique") {
    checks.push({
      ok: calls >= stats.requests - inflight,
      note: `backend calls ${calls} ≈ answers ${stats.requests} (unique keys cannot collapse)`,
    });
  } else {
    checks.push({
      ok: calls >= 1 && calls <= stats.requests,
      note: `backend calls ${calls} ≤ answers ${stats.requests}`,
    });
  }
  return { stats, calls, bound, peakRssMb, otherCpuPct: otherCpu, checks };
}

/** A run during which other processes used more than this share of the CPU is run again (full mode). */
const DISTURBED_PCT = 10;
/** Re-runs left for disturbed runs; bounded so a busy machine cannot stretch the run without end. */
let retries = QUICK ? 0 : 6;

/** Waits (at most 30 s) until other processes use under 5% of the CPU for 2 s in a row. */
async function waitForQuiet(): Promise<void> {
  const until = performance.now() + 30_000;
  let quiet = 0;
  while (performance.now() < until && quiet < 2) {
    const from = cpuSnapshot();
    await sleep(1_000);
    quiet = otherCpuPct(from, cpuSnapshot()) < 5 ? quiet + 1 : 0;
  }
}

/**
 * `a` relative to `b`: the median over rounds of a's round i / b's round i. Neighbouring rounds saw the same
 * machine, so the ratio cancels most of the drift that the plain req/s columns carry.
 */
function pairedRatio(a: Row, b: Row): number {
  const n = Math.min(a.rpsRounds.length, b.rpsRounds.length);
  return median(Array.from({ length: n }, (_, i) => a.rpsRounds[i] / b.rpsRounds[i]));
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A display name: `proxy`, or `proxy @ 4,000 req/s` for an open-loop row. */
function targetLabel(row: { target: TargetName; rate?: number }): string {
  return row.rate ? `${row.target.replace("@rate", "")} @ ${fmt(row.rate, 0)} req/s` : row.target;
}

/**
 * Runs one scenario on a fresh stack: every target is probed and warmed up, then measured in LOAD.rounds
 * interleaved rounds (direct, nginx, proxy, echo, direct, …) so that drift on a shared machine hits every
 * target alike; a row reports the median round's req/s and latency percentiles over all rounds' answers.
 */
async function runScenario(scenario: Scenario, tmp: string): Promise<{ rows: Row[]; hot?: HotRun }> {
  console.error(
    `\n== (${scenario.id}) ${scenario.name}: starting backend, proxy${nginxVersion ? ", nginx" : ""}, echo`,
  );
  // The relay (bench/relay_server.ts) is the runtime's ceiling where every call goes to the backend.
  const withRelay = scenario.keys !== "hot";
  const stack = await startStack(`s${scenario.id}`, tmp, scenario, true, withRelay);
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
      await warmUp(scenario, t, tmp, bodyFile);
    }
    const rounds = new Map<TargetSpec, Round[]>(targets.map((t) => [t, []]));
    for (let r = 0; r < LOAD.rounds; r++) {
      for (const t of targets) {
        let round = await measureRound(scenario, stack, t, tmp, bodyFile);
        if (round.otherCpuPct > DISTURBED_PCT && retries > 0) {
          // Another job took a share of the 2 cores: wait for a quiet moment and run the round again.
          retries--;
          console.error(
            `   ${t.name.padEnd(10)} round ${r + 1} disturbed (other processes used ${
              fmt(round.otherCpuPct, 0)
            }% CPU); running it again`,
          );
          await waitForQuiet();
          const again = await measureRound(scenario, stack, t, tmp, bodyFile);
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
      const latencies = new Float64Array(list.reduce((n, round) => n + round.stats.latenciesMs.length, 0));
      let offset = 0;
      for (const round of list) {
        latencies.set(round.stats.latenciesMs, offset);
        offset += round.stats.latenciesMs.length;
      }
      latencies.sort();
      const requests = list.reduce((n, round) => n + round.stats.requests, 0);
      const calls = list.reduce((n, round) => n + round.calls, 0);
      const bounds = list.map((round) => round.bound);
      const peak = Math.max(...list.map((round) => round.peakRssMb));
      const rpsList = list.map((round) => round.stats.rps);
      const row: Row = {
        scenario: scenario.id,
        target: t.name,
        rate: t.rate,
        tool: scenario.tool,
        rps: median(rpsList),
        rpsMin: Math.min(...rpsList),
        rpsMax: Math.max(...rpsList),
        rpsRounds: rpsList,
        rounds: list.length,
        p50Ms: percentile(latencies, 0.5),
        p99Ms: percentile(latencies, 0.99),
        requests,
        errors: list.reduce((n, round) => n + round.stats.errors, 0),
        backendCalls: calls,
        collapseRatio: calls > 0 ? requests / calls : null,
        backendCallBound: bounds.every((b) => b !== undefined)
          ? bounds.reduce((a, b) => a! + b!, 0)
          : undefined,
        peakRssMb: Number.isFinite(peak) ? peak : null,
        otherCpuPct: Math.max(...list.map((round) => round.otherCpuPct)),
        vsDirect: null,
        vsNginx: null,
        verified: checks.every((c) => c.ok),
        checks: checks.map((c) => `${c.ok ? "✓" : "✗"} ${c.note}`),
      };
      rows.push(row);
      console.error(
        `   ${t.name.padEnd(10)} median ${fmt(row.rps, 0).padStart(7)} req/s  p50 ${
          fmt(row.p50Ms, 2)
        } ms  p99 ${fmt(row.p99Ms, 2)} ms  backend calls ${row.backendCalls}  RSS ${
          fmt(row.peakRssMb, 1)
        } MB  ${row.verified ? "verified" : "NOT VERIFIED"}`,
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
    if (scenario.id === "a" && PARTS.has("hot")) hot = await hotRun(stack, tmp, bodyFile);
    return { rows, hot };
  } finally {
    await stopStack(stack);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Herd check and the long hot-key run

interface HerdResult {
  requests: number;
  backendDelayMs: number;
  targets: {
    target: "direct" | "proxy";
    ok: number;
    failed: number;
    backendCalls: number;
    maxInflight: number;
    sendSpanMs: number;
    firstAnswerMs: number;
    allInFlightAtOnce: boolean;
    seconds: number;
  }[];
  verified: boolean;
}

async function herd(tmp: string): Promise<HerdResult> {
  console.error(
    `\n== herd: ${HERD.requests} concurrent identical calls, backend ${HERD.delayMs} ms per call`,
  );
  const stack = await startStack("herd", tmp, { delayMs: HERD.delayMs }, false);
  try {
    const result: HerdResult = {
      requests: HERD.requests,
      backendDelayMs: HERD.delayMs,
      targets: [],
      verified: true,
    };
    for (const target of ["direct", "proxy"] as const) {
      const server = target === "direct" ? stack.backend : stack.proxy;
      const key = `herd-${target}`;
      const before = await backendCalls(stack.backend.port);
      const r = await loadgen(
        server.port,
        [
          "--keys",
          "hot",
          "--hot-key",
          key,
          "--requests",
          String(HERD.requests),
          "--burst",
          "--connections",
          String(HERD.connections),
        ],
        tmp,
        120_000,
      );
      const calls = (await backendCalls(stack.backend.port)) - before;
      // All calls were open at once if every request was sent before the first answer came back.
      const allInFlightAtOnce = r.maxInflight === HERD.requests && r.sendSpanMs! < r.firstAnswerMs!;
      result.targets.push({
        target,
        ok: r.ok,
        failed: r.failed,
        backendCalls: calls,
        maxInflight: r.maxInflight,
        sendSpanMs: r.sendSpanMs!,
        firstAnswerMs: r.firstAnswerMs!,
        allInFlightAtOnce,
        seconds: r.seconds,
      });
      const expected = target === "proxy" ? 1 : HERD.requests;
      if (r.ok !== HERD.requests || calls !== expected || !allInFlightAtOnce) result.verified = false;
      console.error(
        `   ${
          target.padEnd(6)
        } ${r.ok}/${HERD.requests} ok → ${calls} backend call(s) (expected ${expected}); ` +
          `all sent in ${fmt(r.sendSpanMs!, 0)} ms, first answer at ${fmt(r.firstAnswerMs!, 0)} ms`,
      );
    }
    return result;
  } finally {
    await stopStack(stack);
  }
}

interface HotRun {
  seconds: number;
  requests: number;
  rps: number;
  backendCalls: number;
  bound: number;
  withinBound: boolean;
  /** CPU (% of all cores) other processes used during the run. */
  otherCpuPct: number;
  /** Per sample: seconds since start, requests answered so far, backend calls so far. */
  series: [number, number, number][];
}

/** A HOT_RUN_MS hot-key run through the proxy; samples the backend counter every 100 ms for the chart. */
async function hotRun(stack: Stack, tmp: string, bodyFile: string): Promise<HotRun> {
  console.error(`\n== hot-key run: ${HOT_RUN_MS / 1000} s through the proxy, backend calls vs the bound`);
  const port = stack.backend.port;
  const base = await backendCalls(port);
  const samples: [number, number][] = [];
  let sampling = true;
  const cpuBefore = cpuSnapshot();
  const t0 = Date.now();
  const sampler = (async () => {
    while (sampling) {
      const at = Date.now();
      try {
        samples.push([at, (await backendCalls(port)) - base]);
      } catch {
        // a missed sample is a gap in the chart, nothing more
      }
      await sleep(Math.max(0, 100 - (Date.now() - at)));
    }
  })();
  let run: H2loadResult;
  try {
    run = await h2load(stack.proxy.port, bodyFile, {
      durationMs: HOT_RUN_MS,
      minAnswerBytes: minAnswerBytes("hot-a", false),
      keepAnswers: true,
    }, tmp);
  } finally {
    sampling = false;
    await sampler;
  }
  const wallMs = Date.now() - t0;
  const otherCpu = otherCpuPct(cpuBefore, cpuSnapshot());
  const calls = (await backendCalls(port)) - base;
  samples.push([Date.now(), calls]);
  const bound = Math.ceil(wallMs / CACHE_TTL_MS) + 1;
  // Requests answered so far at each sample time, from h2load's per-request log.
  const answeredAt = run.answeredAt!.sort();
  const start = Math.min(t0, answeredAt[0] ?? t0);
  const series: [number, number, number][] = [];
  let j = 0;
  for (const [at, c] of samples) {
    while (j < answeredAt.length && answeredAt[j] <= at) j++;
    series.push([(at - start) / 1000, j, c]);
  }
  console.error(
    `   ${run.requests} requests → ${calls} backend calls; bound ${bound}; ${fmt(run.rps, 0)} req/s`,
  );
  return {
    seconds: wallMs / 1000,
    requests: run.requests,
    rps: run.rps,
    backendCalls: calls,
    bound,
    withinBound: calls <= bound && run.answerCheck.ok && run.errors === 0,
    otherCpuPct: otherCpu,
    series,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Output: Markdown, JSON, SVG

function fmt(n: number | null | undefined, digits: number): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const ratio = (n: number | null) => (n === null || !Number.isFinite(n) ? "—" : `${fmt(n, n < 10 ? 2 : 1)}x`);

interface TargetCheck {
  goal: string;
  measured: string;
  met: boolean | null;
}

function evaluate(rows: Row[], hot?: HotRun): TargetCheck[] {
  const get = (s: Scenario["id"], t: TargetName) => rows.find((r) => r.scenario === s && r.target === t);
  const out: TargetCheck[] = [];
  const d = { proxy: get("d", "proxy"), direct: get("d", "direct"), nginx: get("d", "nginx") };
  if (d.proxy && d.direct) {
    out.push({
      goal: "(d) slow backend: proxy throughput ≥ 10x direct",
      measured: `${fmt(d.proxy.rps, 0)} vs ${fmt(d.direct.rps, 0)} req/s (medians); paired ratio ${
        ratio(d.proxy.vsDirect)
      }`,
      met: d.proxy.vsDirect! >= 10,
    });
  }
  if (d.proxy && d.nginx) {
    out.push({
      goal: "(d) slow backend: proxy throughput ≥ 10x nginx",
      measured: `${fmt(d.proxy.rps, 0)} vs ${fmt(d.nginx.rps, 0)} req/s (medians); paired ratio ${
        ratio(d.proxy.vsNginx)
      }`,
      met: d.proxy.vsNginx! >= 10,
    });
  }
  if (d.proxy) {
    const limit = 2 * (SCENARIOS.find((s) => s.id === "d")!.delayMs);
    const rated = get("d", "proxy@rate");
    const echoRated = get("d", "echo@rate");
    out.push({
      goal: `(d) slow backend: proxy p99 ≤ 2x backend latency (${limit} ms)`,
      measured: `p99 ${fmt(d.proxy.p99Ms, 2)} ms (p50 ${fmt(d.proxy.p50Ms, 2)} ms) at saturation, ` +
        `${LOAD.connections * LOAD.streams} streams in flight` +
        (rated
          ? `; p99 ${fmt(rated.p99Ms, 2)} ms (p50 ${fmt(rated.p50Ms, 2)} ms) at a fixed ${
            fmt(rated.rate, 0)
          } req/s`
          : "") +
        (echoRated ? ` (echo server at that rate: p99 ${fmt(echoRated.p99Ms, 2)} ms)` : ""),
      // Judged at saturation, the stricter of the two.
      met: d.proxy.p99Ms <= limit,
    });
  }
  const a = { proxy: get("a", "proxy"), echo: get("a", "echo") };
  if (a.proxy && a.echo) {
    const r = pairedRatio(a.proxy, a.echo);
    out.push({
      goal: "(a) cache hits: proxy throughput ≥ 0.9x the bare echo server",
      measured: `${fmt(a.proxy.rps, 0)} vs ${fmt(a.echo.rps, 0)} req/s (medians); paired ratio ${ratio(r)}`,
      met: r >= 0.9,
    });
  }
  const b = { proxy: get("b", "proxy"), nginx: get("b", "nginx"), relay: get("b", "relay") };
  if (b.proxy && b.nginx) {
    out.push({
      goal: "(b) unique keys: proxy/direct ≥ nginx/direct",
      measured: `${ratio(b.proxy.vsDirect)} vs ${ratio(b.nginx.vsDirect)}` +
        (b.relay ? `; the bare node:http2 relay (the runtime's ceiling): ${ratio(b.relay.vsDirect)}` : ""),
      met: b.proxy.vsDirect! >= b.nginx.vsDirect!,
    });
  }
  const proxyRows = rows.filter((r) => r.target.startsWith("proxy") && r.peakRssMb !== null);
  if (proxyRows.length) {
    const worst = proxyRows.reduce((x, y) => (y.peakRssMb! > x.peakRssMb! ? y : x));
    const fastest = Math.max(...proxyRows.map((r) => r.rps));
    out.push({
      goal: "proxy RSS ≤ 150 MB at 10k req/s",
      measured: `peak ${fmt(worst.peakRssMb, 1)} MB in (${worst.scenario}) at ${fmt(worst.rps, 0)} req/s; ` +
        `fastest proxy run ${fmt(fastest, 0)} req/s${fastest < 10_000 ? " (10k req/s not reached)" : ""}`,
      met: worst.peakRssMb! <= 150,
    });
  }
  if (hot) {
    out.push({
      goal: `hot-key run: backend calls ≤ (seconds / TTL) + 1`,
      measured: `${hot.backendCalls} calls for ${fmt(hot.requests, 0)} requests in ${
        fmt(hot.seconds, 2)
      } s; bound ${hot.bound}`,
      met: hot.withinBound,
    });
  }
  return out;
}

function markdown(report: Report): string {
  const m = report.meta;
  const lines: string[] = [];
  lines.push(`# Load results${m.quick ? " (quick smoke run — numbers are not meaningful)" : ""}`, "");
  lines.push(
    `Generated by \`deno task bench:load${
      m.quick ? " --quick" : ""
    }\` on ${m.date} — ${m.cpu} (${m.cpus} cores), ` +
      `Deno ${m.deno}, ${m.h2load}, ${
        m.nginx ? `nginx ${m.nginx}` : "nginx not installed"
      }; commit ${m.commit}` +
      `${m.proxyFlags ? `; proxy run with \`${m.proxyFlags}\`` : ""}` +
      `${m.proxyEntry !== "main.ts" ? `; proxy entry \`${m.proxyEntry}\` (not main.ts)` : ""}.`,
    "",
    `Load per target: ${m.load.connections} connections × ${m.load.streams} streams in flight (closed loop), ` +
      `${m.load.warmupMs / 1000} s warm-up, then ${m.load.rounds} round${m.load.rounds > 1 ? "s" : ""} of ` +
      `${
        m.load.roundMs / 1000
      } s, interleaved across the targets (direct, nginx, proxy, echo, direct, …) so that ` +
      `drift on the shared machine hits every target alike. req/s = the median round (range = slowest–fastest ` +
      `round); p50/p99 over every answer of every round. Each scenario runs on a fresh backend, proxy, nginx and ` +
      `echo server. Proxy cache TTL ${m.cacheTtlMs} ms.`,
    "",
    `Backend: the example backend (grpc-js) — 0 ms per call in (a)–(c); 20 ms per call, at most 16 at once ` +
      `(later calls queue) in (d). nginx: 1 worker, \`grpc_pass\` to an upstream keepalive pool. echo: a bare ` +
      `\`node:http2\` server answering every call with a fixed message — the runtime's ceiling; it never calls ` +
      `the backend. relay (in (b) and (c)): a bare \`node:http2\` relay that forwards every call to the backend ` +
      `and nothing else (bench/relay_server.ts) — the runtime's ceiling for a proxy that calls the backend. ` +
      `In (d), \`@ ${fmt(m.fixedRate, 0)} req/s\` rows are open loop (h2load \`--rps\`) at a fixed ` +
      `rate: latency below saturation.`,
    "",
    "h2load sends one body for every request, so (a) and (d) use h2load and (b), (c) use `bench/loadgen.ts` " +
      "(node:http2, a new body per request; it checks every answer's grpc-status and key). vs direct / vs nginx " +
      "= the median over rounds of this target's round / that target's same round (paired, so drift cancels). " +
      "Requests = answers " +
      "in the measured rounds; backend calls = the example backend's own counter over the same rounds; collapse " +
      "ratio = requests / backend calls; peak RSS = VmHWM of the serving process (nginx: master + worker), reset " +
      "before each round; other CPU = share of the machine's CPU used by processes the harness did not start " +
      "(worst round; above a few % the numbers are disturbed).",
    "",
  );
  lines.push(
    "| Scenario | Target | Tool | req/s | range | p50 ms | p99 ms | Requests | Backend calls | Collapse ratio | Errors | vs direct | vs nginx | Peak RSS MB | Other CPU | Verified |",
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
  );
  for (const r of report.rows) {
    const s = SCENARIOS.find((x) => x.id === r.scenario)!;
    const calls = r.backendCalls === null
      ? "—"
      : `${fmt(r.backendCalls, 0)}${r.backendCallBound ? ` (bound ${r.backendCallBound})` : ""}`;
    const collapse = r.collapseRatio === null ? "—" : fmt(r.collapseRatio, r.collapseRatio < 10 ? 2 : 0);
    lines.push(
      `| (${s.id}) ${s.name} | ${targetLabel(r)} | ${r.tool} | ${fmt(r.rps, 0)} | ${fmt(r.rpsMin, 0)}–${
        fmt(r.rpsMax, 0)
      } | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${
        fmt(r.requests, 0)
      } | ${calls} | ${collapse} | ${r.errors} | ` +
        `${ratio(r.vsDirect)} | ${ratio(r.vsNginx)} | ${fmt(r.peakRssMb, 1)} | ${fmt(r.otherCpuPct, 0)}% | ${
          r.verified ? "✓" : "✗"
        } |`,
    );
  }
  if (report.herd) {
    const h = report.herd;
    lines.push(
      "",
      `## Herd: ${fmt(h.requests, 0)} concurrent identical calls (backend ${h.backendDelayMs} ms per call)`,
      "",
      "All calls are opened at once over " +
        `${m.herd.connections} connections; "all in flight at once" means ` +
        "every one was sent before the first answer came back.",
      "",
      "| Target | OK | Backend calls | All in flight at once | Sent within | First answer at | Last answer at |",
      "|---|--:|--:|:-:|--:|--:|--:|",
    );
    for (const t of h.targets) {
      lines.push(
        `| ${t.target} | ${fmt(t.ok, 0)} | ${fmt(t.backendCalls, 0)} | ${
          t.allInFlightAtOnce ? "yes" : "no"
        } | ` +
          `${fmt(t.sendSpanMs, 0)} ms | ${fmt(t.firstAnswerMs, 0)} ms | ${fmt(t.seconds * 1000, 0)} ms |`,
      );
    }
  }
  if (report.hot) {
    const h = report.hot;
    lines.push(
      "",
      `## Hot key for ${fmt(h.seconds, 1)} s through the proxy`,
      "",
      `${fmt(h.requests, 0)} requests (${fmt(h.rps, 0)} req/s) → ${h.backendCalls} backend calls; ` +
        `bound (seconds / TTL) + 1 = ${h.bound}: ${
          h.withinBound ? "within" : "EXCEEDED"
        }. Without the proxy ` +
        `every request is a backend call. Other processes used ${
          fmt(h.otherCpuPct, 0)
        }% of the CPU meanwhile.`,
      "",
      "![Backend calls vs requests: the herd, and a hot key over time](herd.svg)",
    );
  }
  lines.push("", "## Targets", "", "| Target | Measured | Met |", "|---|---|:-:|");
  for (const t of report.targets) {
    lines.push(`| ${t.goal} | ${t.measured} | ${t.met === null ? "—" : t.met ? "✓" : "✗"} |`);
  }
  lines.push("", "## Checks per target", "");
  for (const r of report.rows) lines.push(`- (${r.scenario}) ${targetLabel(r)}: ${r.checks.join("; ")}`);
  return lines.join("\n") + "\n";
}

/** Hand-written SVG: the herd as log-scale bars, and the hot-key run as cumulative curves on a log axis. */
function svg(herdResult: HerdResult | undefined, hot: HotRun | undefined): string {
  const W = 900, H = 420;
  const out: string[] = [];
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const text = (x: number, y: number, s: string, extra = "") =>
    out.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${extra}>${esc(s)}</text>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  );
  const logAxis = (x0: number, y0: number, h: number, decades: number, label: string) => {
    // The axis starts at 0.5 so that a count of 1 still shows as a small bar.
    const floor = Math.log10(2);
    const y = (v: number) => y0 + h - ((Math.log10(Math.max(0.5, v)) + floor) / (decades + floor)) * h;
    const names = ["1", "10", "100", "1k", "10k", "100k", "1M", "10M"];
    for (let d = 0; d <= decades; d++) {
      const yy = y(10 ** d);
      out.push(`<line x1="${x0}" x2="${x0 - 4}" y1="${yy}" y2="${yy}" stroke="#333"/>`);
      out.push(`<line x1="${x0}" x2="${x0 + (x0 < 200 ? 300 : 430)}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
      text(x0 - 6, yy + 4, names[d] ?? `1e${d}`, `text-anchor="end" fill="#333"`);
    }
    out.push(`<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y0 + h}" stroke="#333"/>`);
    text(
      x0 - 48,
      y0 + h / 2,
      label,
      `transform="rotate(-90 ${x0 - 48} ${y0 + h / 2})" text-anchor="middle" fill="#333"`,
    );
    return y;
  };
  const top = 50, plotH = 260;
  // Left: the herd.
  if (herdResult) {
    text(
      20,
      24,
      `Herd: ${fmt(herdResult.requests, 0)} concurrent identical calls`,
      `font-size="14" font-weight="bold"`,
    );
    const decades = Math.ceil(Math.log10(herdResult.requests)) || 1;
    const x0 = 80;
    const y = logAxis(x0, top, plotH, decades, "count (log scale)");
    const direct = herdResult.targets.find((t) => t.target === "direct");
    const proxy = herdResult.targets.find((t) => t.target === "proxy");
    const bars: [string, number, string][] = [
      ["requests", herdResult.requests, "#9aa5b1"],
      ["backend calls, direct", direct?.backendCalls ?? NaN, "#d9534f"],
      ["backend calls, proxy", proxy?.backendCalls ?? NaN, "#2e7d32"],
    ];
    const together = herdResult.targets.every((t) => t.allInFlightAtOnce);
    text(
      20,
      top + plotH + 58,
      `${
        together ? "All" : "NOT all"
      } calls in flight at once; backend answers after ${herdResult.backendDelayMs} ms.`,
      `font-size="11"`,
    );
    const allOk = herdResult.targets.every((t) => t.ok === herdResult.requests && t.failed === 0);
    text(
      20,
      top + plotH + 74,
      allOk
        ? "Every caller got a checked answer (grpc-status 0, its key)."
        : "Some callers got NO correct answer.",
      `font-size="11"`,
    );
    bars.forEach(([label, v, color], i) => {
      if (!Number.isFinite(v)) return;
      const bx = x0 + 20 + i * 90, yy = y(v);
      out.push(
        `<rect x="${bx}" y="${yy.toFixed(1)}" width="60" height="${
          (top + plotH - yy).toFixed(1)
        }" fill="${color}"/>`,
      );
      text(bx + 30, yy - 6, fmt(v, 0), `text-anchor="middle" font-weight="bold"`);
      const [l1, l2] = label.includes(",") ? label.split(", ") : [label, ""];
      text(bx + 30, top + plotH + 16, l1, `text-anchor="middle"`);
      if (l2) text(bx + 30, top + plotH + 30, l2, `text-anchor="middle"`);
    });
  }
  // Right: the hot-key run.
  if (hot && hot.series.length > 1) {
    const x0 = 430, plotW = 430;
    text(
      x0 - 60,
      24,
      `Hot key for ${fmt(hot.seconds, 0)} s through the proxy (TTL ${CACHE_TTL_MS} ms)`,
      `font-size="14" font-weight="bold"`,
    );
    const maxReq = Math.max(hot.requests, ...hot.series.map((s) => s[1]));
    const decades = Math.max(1, Math.ceil(Math.log10(maxReq)));
    const y = logAxis(x0, top, plotH, decades, "cumulative count (log scale)");
    const tMax = Math.max(hot.seconds, hot.series.at(-1)![0]);
    const x = (t: number) => x0 + (t / tMax) * plotW;
    out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
    const step = tMax > 5 ? 2 : tMax > 2 ? 1 : 0.5;
    for (let t = 0; t <= tMax + 1e-9; t += step) {
      out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#333"/>`);
      text(x(t), top + plotH + 16, `${t}`, `text-anchor="middle" fill="#333"`);
    }
    text(x0 + plotW / 2, top + plotH + 32, "seconds", `text-anchor="middle" fill="#333"`);
    const path = (points: [number, number][], color: string, dash = "") =>
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${
          dash ? ` stroke-dasharray="${dash}"` : ""
        } points="${
          points.filter(([, v]) => v >= 1).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")
        }"/>`,
      );
    path(hot.series.map(([t, r]) => [t, r]), "#9aa5b1");
    path(hot.series.map(([t, , c]) => [t, c]), "#2e7d32");
    path(
      [[0, 1], ...hot.series.map(([t]) => [t, t * 1000 / CACHE_TTL_MS + 1] as [number, number])],
      "#555",
      "5,4",
    );
    const legend: [string, string, string][] = [
      ["#9aa5b1", "", `requests answered = backend calls without the proxy (${fmt(hot.requests, 0)})`],
      ["#2e7d32", "", `backend calls through the proxy (${hot.backendCalls})`],
      ["#555", "5,4", `bound: seconds / TTL + 1 (${hot.bound})`],
    ];
    legend.forEach(([color, dash, label], i) => {
      const ly = top + plotH + 54 + i * 16;
      const lx = x0;
      out.push(
        `<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"${
          dash ? ` stroke-dasharray="${dash}"` : ""
        }/>`,
      );
      text(lx + 30, ly + 4, label, `font-size="11"`);
    });
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

interface Report {
  meta: {
    date: string;
    quick: boolean;
    parts: string[];
    deno: string;
    h2load: string;
    nginx: string | null;
    cpu: string;
    cpus: number;
    commit: string;
    proxyFlags: string | null;
    proxyEntry: string;
    cacheTtlMs: number;
    load: typeof LOAD;
    fixedRate: number;
    herd: typeof HERD;
    hotRunMs: number;
  };
  rows: Row[];
  herd?: HerdResult;
  hot?: HotRun;
  targets: TargetCheck[];
}

async function commandText(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, cwd: ROOT, stdout: "piped", stderr: "piped" }).output();
    return (new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)).trim();
  } catch {
    return "";
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
  nginxVersion = await detectNginx();
  if (!nginxVersion) console.error("bench:load: nginx not found or disabled: nginx rows are skipped");
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
      const result = await runScenario(scenario, tmp);
      rows.push(...result.rows);
      hot ??= result.hot;
    }
    if (PARTS.has("hot") && !PARTS.has("a")) {
      const stack = await startStack("hot", tmp, { delayMs: 0 }, false);
      try {
        const bodyFile = `${tmp}/body-a.bin`;
        await Deno.writeFile(bodyFile, requestBody("hot-a"));
        await probe(stack.proxy.port, "hot-a", false);
        hot = await hotRun(stack, tmp, bodyFile);
      } finally {
        await stopStack(stack);
      }
    }
    if (PARTS.has("herd")) herdResult = await herd(tmp);
  } catch (err) {
    failed = true;
    console.error(`\nbench:load failed: ${(err as Error).stack ?? err}`);
    console.error(`process logs are kept in ${tmp}`);
  } finally {
    await stopAll();
    for (const c of clients.values()) c.close();
    clients.clear();
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
    targets: evaluate(rows, hot),
  };
  const md = markdown(report);
  const json = JSON.stringify(
    report,
    (_k, v) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v),
    2,
  ) + "\n";
  const chart = svg(herdResult, hot);
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
  if (!QUICK && complete && !flags["cpu-prof"] && !flags["proxy-flags"] && !flags["proxy-entry"]) {
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
