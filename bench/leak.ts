/**
 * Leak check: the proxy's resident memory across repeated cycles of 100,000 requests. Every request has a
 * key of its own (the cache fills and churns, and every call is a new flight), so anything the proxy keeps
 * per call and forgets to release shows as growth from cycle to cycle.
 *
 * ```sh
 * deno task bench:leak            # 5 cycles × 100,000 requests (about 3 minutes on 2 cores)
 * deno task bench:leak --quick    # 5 cycles × 5,000 (a smoke run)
 * deno task bench:leak --cycles 1 --requests 1000000 --cache-ttl 10s   # a flood that fills the cache
 * ```
 *
 * `--cache-ttl` is passed to the proxy (its default, 100 ms, holds only a few hundred answers at these rates,
 * so the entry bound is reached only with a longer one); `--proxy-args="..."` passes any other proxy flags.
 *
 * Besides RSS, each cycle records the cache's size as the proxy reports it (`collapser_cache_entries` and
 * `collapser_cache_bytes` on the admin port's /metrics), sampled every 250 ms during the cycle and once
 * after it, and checks the largest against the cache's bounds (src/core/ttl_cache.ts: 10,000 entries, 64 MiB).
 * Peak RSS is the proxy's VmHWM, its largest resident set since it started; `--max-rss MB` fails the run
 * past that bound. Measured on 2 cores with Deno 2.8.3 (2026-11-29): peak 258 MB over 5 × 100,000 with the
 * default TTL, 316 MB over 1,000,000 with `--cache-ttl 10s` (cache full at 10,000 entries from the first
 * 40 s on, RSS 291–314 MB from then to the end).
 *
 * Writes bench/out/leak-latest.{md,json} and prints the table. Cycle 1 includes the runtime's warm-up (JIT,
 * heap growth); "growth" compares the last cycle with the second. Exits 1 if a request failed or a bound
 * was exceeded.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_CACHE_MAX_BYTES, DEFAULT_CACHE_MAX_ENTRIES } from "../src/core/ttl_cache.ts";
import { runLoad } from "./loadgen.ts";
import { V8_FLAGS_ARG } from "../src/util/v8_flags.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    cycles: { type: "string" },
    requests: { type: "string" },
    "cache-ttl": { type: "string" },
    "proxy-args": { type: "string", default: "" },
    "max-rss": { type: "string" },
  },
});
/** Fail if the proxy's peak RSS goes past this many MB (off unless given). */
const MAX_RSS_MB = flags["max-rss"] === undefined ? Infinity : Number(flags["max-rss"]);
const CYCLES = Number(flags.cycles ?? 5);
const REQUESTS = Number(flags.requests ?? (flags.quick ? 5_000 : 100_000));
const ROOT = new URL("../", import.meta.url).pathname;
/** Flags for the proxy beyond the addresses. */
const proxyFlags = [
  ...(flags["cache-ttl"] === undefined ? [] : ["--cache-ttl", flags["cache-ttl"]]),
  ...flags["proxy-args"].split(/\s+/).filter((arg) => arg !== ""),
];

function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
}

/** Reads lines from a stream until one matches; the rest of the stream is drained in the background. */
async function waitForLine(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<RegExpMatchArray> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`process ended before printing ${pattern}: ${buffered}`);
    buffered += value;
    const match = buffered.match(pattern);
    if (match) {
      (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })();
      return match;
    }
  }
}

/** The process's resident set now (VmRSS) and its largest since it started (VmHWM), in MB. */
function rssMb(pid: number): { now: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]);
  return { now: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** The proxy's cache gauges from its admin port's /metrics. */
async function cacheGauges(metricsPort: number): Promise<{ entries: number; bytes: number }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  return { entries: gauge("collapser_cache_entries"), bytes: gauge("collapser_cache_bytes") };
}

const backend = spawn(["run", "-A", "examples/backend.ts", "--port", "0"]);
const proxyProcs: Deno.ChildProcess[] = [];
try {
  const backendPort = Number((await waitForLine(backend.stdout, /listening on 127\.0\.0\.1:(\d+)/))[1]);
  const proxy = spawn([
    "run",
    V8_FLAGS_ARG, // as users run it (src/util/v8_flags.ts)
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "main.ts",
    "--backend",
    `127.0.0.1:${backendPort}`,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--metrics-port",
    "0",
    ...proxyFlags,
  ]);
  proxyProcs.push(proxy);
  const startup = await waitForLine(proxy.stderr, /"port":(\d+)\D.*"metricsPort":(\d+)\D/);
  const [port, metricsPort] = [Number(startup[1]), Number(startup[2])];
  const target = `127.0.0.1:${port}`;

  const rows: {
    cycle: number;
    ok: number;
    failed: number;
    failures: Record<string, number>;
    rps: number;
    seconds: number;
    rssMb: number;
    peakRssMb: number;
    cacheEntries: number;
    cacheBytes: number;
    maxCacheEntries: number;
    maxCacheBytes: number;
    /** [seconds into the cycle, RSS MB], every 5 s. */
    rssTimeline: [number, number][];
  }[] = [];
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    let maxCacheEntries = 0;
    let maxCacheBytes = 0;
    const rssTimeline: [number, number][] = [];
    let samples = 0;
    const sample = async () => {
      if (samples++ % 20 === 0) {
        rssTimeline.push([Math.round((performance.now() - started) / 1000), rssMb(proxy.pid).now]);
      }
      const gauges = await cacheGauges(metricsPort);
      maxCacheEntries = Math.max(maxCacheEntries, gauges.entries);
      maxCacheBytes = Math.max(maxCacheBytes, gauges.bytes);
      return gauges;
    };
    const started = performance.now();
    let sampling = Promise.resolve();
    const sampler = setInterval(() => {
      sampling = sampling.then(sample).then(() => {}, (err) => console.error(`cannot read /metrics: ${err}`));
    }, 250);
    const { result } = await runLoad({
      target,
      keys: "unique",
      requests: REQUESTS,
      connections: 8,
      streams: 16,
      expect: "key",
    }).finally(() => clearInterval(sampler));
    const seconds = (performance.now() - started) / 1000;
    await sampling;
    // Let timers and the cache's TTL run out so the reading is of what stays, not what is in flight.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = await sample();
    const rss = rssMb(proxy.pid);
    const row = {
      cycle,
      ok: result.ok,
      failed: result.failed,
      failures: result.failures,
      rps: result.rps,
      seconds,
      rssMb: rss.now,
      peakRssMb: rss.peak,
      cacheEntries: after.entries,
      cacheBytes: after.bytes,
      maxCacheEntries,
      maxCacheBytes,
      rssTimeline,
    };
    rows.push(row);
    console.error(
      `cycle ${cycle}: ${row.ok} OK, ${row.failed} failed ${JSON.stringify(row.failures)}, ` +
        `${Math.round(row.rps)} req/s, ${seconds.toFixed(1)} s, RSS ${row.rssMb.toFixed(1)} MB ` +
        `(peak ${row.peakRssMb.toFixed(1)}), cache ${row.cacheEntries} entries / ${row.cacheBytes} B ` +
        `(max ${maxCacheEntries} / ${maxCacheBytes} B)`,
    );
  }
  const base = rows[Math.min(1, rows.length - 1)].rssMb;
  const last = rows[rows.length - 1].rssMb;
  const growth = rows.length >= 3 ? (last - base) / base : null;
  const lines = [
    `# Leak check: ${CYCLES} cycles × ${REQUESTS.toLocaleString("en-US")} unique-key requests`,
    "",
    `Generated by \`deno task bench:leak${Deno.args.map((a) => ` ${a}`).join("")}\` on ${
      new Date().toISOString()
    }, Deno ${Deno.version.deno}.`,
    `Proxy flags: ${[V8_FLAGS_ARG, ...proxyFlags].join(" ")} (the proxy's V8 flags, then any --proxy-flags).`,
    "RSS is the proxy process's VmRSS one second after each cycle; peak is its VmHWM (largest since start).",
    "Cache entries and bytes are the proxy's gauges one second after each cycle, and the largest sampled",
    `every 250 ms during it; bounds ${DEFAULT_CACHE_MAX_ENTRIES.toLocaleString("en-US")} entries, ${
      DEFAULT_CACHE_MAX_BYTES / 2 ** 20
    } MiB.`,
    "",
    "| Cycle | OK | Failed | req/s | s | RSS MB | Peak RSS MB | Cache entries (max) | Cache bytes (max) |",
    "| --: | --: | --: | --: | --: | --: | --: | --: | --: |",
    ...rows.map((r) =>
      `| ${r.cycle} | ${r.ok.toLocaleString("en-US")} | ${r.failed} | ${
        Math.round(r.rps).toLocaleString("en-US")
      } | ${r.seconds.toFixed(1)} | ${r.rssMb.toFixed(1)} | ${r.peakRssMb.toFixed(1)} | ${
        r.cacheEntries.toLocaleString("en-US")
      } (${r.maxCacheEntries.toLocaleString("en-US")}) | ${r.cacheBytes.toLocaleString("en-US")} (${
        r.maxCacheBytes.toLocaleString("en-US")
      }) |`
    ),
    "",
    growth === null
      ? "Growth from cycle to cycle: needs 3 cycles or more."
      : `Growth from cycle 2 to cycle ${CYCLES}: ${(growth * 100).toFixed(1)}% (${base.toFixed(1)} → ${
        last.toFixed(1)
      } MB).`,
    "",
  ];
  const text = lines.join("\n");
  console.log(text);
  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(`${ROOT}bench/out/leak-latest.md`, text);
  await Deno.writeTextFile(
    `${ROOT}bench/out/leak-latest.json`,
    JSON.stringify(
      {
        proxyFlags,
        bounds: { cacheEntries: DEFAULT_CACHE_MAX_ENTRIES, cacheBytes: DEFAULT_CACHE_MAX_BYTES },
        rows,
        growth,
      },
      null,
      2,
    ) + "\n",
  );
  if (rows.some((r) => r.failed > 0 || r.ok !== REQUESTS)) {
    console.error("some requests failed");
    Deno.exitCode = 1;
  }
  const over = rows.filter((r) =>
    !(r.maxCacheEntries <= DEFAULT_CACHE_MAX_ENTRIES && r.maxCacheBytes <= DEFAULT_CACHE_MAX_BYTES)
  );
  if (over.length > 0) {
    console.error(`the cache exceeded its bounds in cycle(s) ${over.map((r) => r.cycle).join(", ")}`);
    Deno.exitCode = 1;
  }
  const peak = Math.max(...rows.map((r) => r.peakRssMb));
  if (!(peak <= MAX_RSS_MB)) {
    console.error(`peak RSS ${peak.toFixed(1)} MB is over --max-rss ${MAX_RSS_MB}`);
    Deno.exitCode = 1;
  }
} finally {
  for (const child of [...proxyProcs, backend]) {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
  }
}
