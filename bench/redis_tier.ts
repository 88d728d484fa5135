/**
 * What the shared tier (`--redis`) buys and costs, and what `--reuse-port` scales to, measured side by side
 * in one run. Everything runs as its own process on free loopback ports: redis-server (tests/_redis.ts),
 * the example backend (examples/backend.ts, 20 ms per call for (A), none for (B) and (C)), proxies
 * (`deno run -A main.ts`, cache TTL 100 ms) and bench/loadgen.ts (which checks every answer's status and
 * key; a failed call stops the run).
 *
 * - (A) Fleet: 3 proxies in front of one backend, one loadgen per proxy at once (hot key, then a Zipf mix
 *   over 1,000 keys), without the tier vs with `--redis`: backend calls (the backend's own counter, and
 *   the sum of `collapser_backend_calls_total` over the 3 proxies), req/s, p50/p99.
 * - (B) The tier's price: one proxy, unique keys (every call a miss) at 8 connections × 16 streams and at
 *   1 × 1 (latency), and a hot key (cache hits), without vs with `--redis`.
 * - (C) `--reuse-port`: 1 process vs 2 on one port (without and with `--redis`), 16 connections (loadgen
 *   opens each with its own `http2.connect`, so the kernel spreads them), unique keys and a hot key.
 * - (D) Redis Cluster (3 masters + 3 replicas on loopback, tests/_redis_cluster.ts) vs one Redis: the fleet
 *   of (A) on each (backend calls per TTL for the hot key, Zipf: the tier's hit rate and the share of
 *   requests that needed no backend call), the miss path of (B) on each (cost per miss), and how the
 *   cluster's script round trips spread over its masters (`INFO commandstats`).
 *
 * Configurations alternate round by round (A B B A, A B C C B A) and the ratios compare them: the machine
 * is a shared 2-core box whose speed drifts. Tables go to stdout, then one JSON line; progress to stderr.
 *
 * ```sh
 * deno task bench:redis                   # full run, ~5 minutes
 * deno task bench:redis --quick           # smoke run (CI): tiny counts, < 40 s
 * deno run -A bench/redis_tier.ts --only a --rounds 4 --seconds 5
 * ```
 *
 * Flags: `--quick`; `--only a,b,c,d` (sections); `--rounds N` (rounds per configuration, default 2; quick 1;
 * (B)'s unique-key loads run twice as many); `--seconds S` (measured seconds per round after 0.5 s of
 * warm-up, default 3; quick 0.7); `-h`, `--help`. A bad flag prints the usage and exits 1.
 *
 * Measured 2026-11-29 with `deno task bench:redis`, two full runs back to back (3 min each; "run 1 / run 2",
 * ratios are with `--redis` over without):
 *
 * - (A) hot key: backend calls 176 → 57 / 176 → 64 (0.32x / 0.36x: 25.1/s → 8.1–9.1/s, so ~2.5 vs ~0.85
 *   calls per 100 ms TTL for the fleet); req/s 1.03x / 0.92x, p50 0.99x / 1.11x, p99 0.99x / 0.84x.
 *   Zipf: 6,747 → 4,730 / 6,664 → 3,980 (0.70x / 0.60x); req/s 0.92x / 0.72x (one round at 590 req/s).
 *   Every backend call with the tier was a lock's, a skipped lookup's or a fallen-back wait's (the check
 *   in the notes). Under this load the tier went down 2–3 times per run ("no answer from Redis within
 *   100 ms"; 358 / 878 Zipf lookups skipped) while a separate client's PING to the same Redis stayed
 *   ≤ 22 ms: the proxies' own event-loop lag trips `--redis-timeout`, not Redis.
 * - (B) miss path, 1 × 1: p50 1.73 → 2.11 ms (+382 µs, +22%) / 1.33 → 2.07 ms (+738 µs, +56%), req/s
 *   0.83x / 0.64x; at 8 × 16 req/s 0.83x / 0.90x (1/throughput +122 / +68 µs per call). Cache hits: req/s
 *   1.08x / 0.95x, p50 −5% / 0%; the tier was asked 0.0020 times per request (local leaders only).
 * - (C) `--reuse-port`, 2 processes vs 1: unique keys 1.15x / 1.14x, hot key 1.19x / 0.98x (connections
 *   split 50/50 to 60/40); 2 processes with `--redis`: 0.87x / 0.92x and 0.94x / 0.83x. On 2 cores shared
 *   with the loadgen and the backend there is little left to scale onto.
 *
 * Both problems those runs showed were fixed in the tier (three late replies in a row, not one, take it
 * down, and the default timeout is 250 ms; answers from Redis keep their backend call's duration for
 * refresh-ahead). The final run, `--only a,b`: hot key 184 → 62 backend calls (0.34x), req/s 1.17x, p99
 * 118 → 95 ms; Zipf 0.66x; 1 × 1 misses +295 µs (+20%); 8 × 16 misses 0.92x (+53 µs per call); cache hits
 * 1.00x; 0 outages, 0 skipped lookups.
 *
 * (D), 2026-12-03, `--only d`, two runs on a loaded machine: see docs/performance.md ("Redis Cluster vs
 * one Redis").
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BackendProcess,
  compare,
  type Config,
  Fleet,
  scriptsPerMaster,
  type Summary,
  summaryJson,
  table,
} from "./_fleet.ts";
import { freePort } from "../tests/_redis.ts";

const USAGE = "Usage: deno task bench:redis [--quick] [--only a,b,c,d] [--rounds N] [--seconds S] [-h]";
const flags = (() => {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string", default: "a,b,c,d" },
        rounds: { type: "string" },
        seconds: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    const only = new Set(values.only.split(",").map((s) => s.trim()));
    if (![...only].every((s) => ["a", "b", "c", "d"].includes(s))) throw new Error("--only takes a, b, c, d");
    const rounds = Number(values.rounds ?? (values.quick ? 1 : 2));
    const seconds = Number(values.seconds ?? (values.quick ? 0.7 : 3));
    if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds: a positive integer");
    if (!(seconds > 0 && seconds <= 60)) throw new Error("--seconds: a number in (0, 60]");
    return { ...values, only, rounds, seconds };
  } catch (err) {
    console.error(`bench:redis: ${(err as Error).message.split("\n")[0]}\n${USAGE}`);
    Deno.exit(1);
  }
})();
if (flags.help) {
  console.log(USAGE);
  Deno.exit(0);
}

const QUICK = flags.quick;
const TTL_MS = 100;
const DELAY_MS = 20;
/** Per loadgen: [connections, streams per connection]. */
const LOADS = {
  fleet: QUICK ? [2, 8] : [4, 16],
  busy: QUICK ? [4, 8] : [8, 16],
  serial: [1, 1],
  spread: QUICK ? [8, 4] : [16, 8],
} as const;

const t0 = performance.now();
const progress = (s: string) => console.error(`[${((performance.now() - t0) / 1000).toFixed(0)} s] ${s}`);
const fleet = new Fleet();
let interrupted = false;
Deno.addSignalListener("SIGINT", () => {
  interrupted = true;
  progress("interrupted: stopping every process");
  fleet.close().then(() => Deno.exit(130));
});
const ROUNDS = {
  rounds: flags.rounds,
  ms: Math.round(flags.seconds * 1000),
  warmupMs: QUICK ? 200 : 500,
  progress,
};

const load = (
  keys: string,
  [connections, streams]: readonly number[],
) => ["--keys", keys, "--connections", String(connections), "--streams", String(streams)];
const int = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => n.toFixed(2);
const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const us = (v: number) => `${v >= 0 ? "+" : ""}${(v * 1000).toFixed(0)} µs`;
const pct = (a: number, b: number) => `${a >= b ? "+" : ""}${(100 * (a / b - 1)).toFixed(0)}%`;
const range = (s: Summary) => `${int(Math.min(...s.roundRps))}–${int(Math.max(...s.roundRps))}`;
/** Tier lookups: hit/lock/wait/skipped (tier down), waits that fell back to the backend, outages. */
const tierCell = ({ tier: t }: Summary) =>
  t.hit + t.lock + t.wait + t.skipped + t.error + t.outages === 0
    ? "—"
    : `${t.hit}/${t.lock}/${t.wait}/${t.skipped + t.error}` +
      (t.waitedLocal ? ` (${t.waitedLocal} fell back)` : "") +
      (t.outages ? ` outages ${t.outages}` : "");
/** With the tier, every backend call is a lock's, a skipped or failed lookup's, or a wait's that fell back. */
const tierCalls = ({ tier: t, backendCalls }: Summary) => {
  const own = t.lock + t.skipped + t.error + t.waitedLocal;
  return `backend calls ${backendCalls} ${own === backendCalls ? "=" : "≠ (CHECK)"} tier's own ${own}`;
};
const shares = (s: Summary) => {
  const sum = s.perProcess.reduce((a, b) => a + b, 0);
  return s.perProcess.map((n) => `${(100 * n / sum).toFixed(0)}%`).join(" / ");
};

const HEAD = ["load", "config", "req/s", "rounds", "p50 ms", "p99 ms", "requests", "backend calls"];
const tierLookups = ({ tier: t }: Summary) => t.hit + t.lock + t.wait + t.skipped + t.error;

interface Section {
  title: string;
  backend: BackendProcess;
  configs: Config[];
  /** Scenarios; `rounds` per configuration, default `--rounds`. */
  scenarios: { label: string; keys: string; shape: readonly number[]; rounds?: number }[];
  /** Columns after HEAD's, and their cells. */
  head: string[];
  row(s: Summary, all: Summary[]): string[];
  note(all: Summary[], keys: string): string | undefined;
  /** Runs around each scenario; what `after` returns is added to its note. */
  around?: { before(): Promise<void>; after(): Promise<string> };
}

/** Runs a section's scenarios, each over all its configurations; returns its table and its JSON part. */
async function section(id: string, sec: Section): Promise<[string, Record<string, unknown>]> {
  const rows: string[][] = [], notes: string[] = [], part: Record<string, unknown> = {};
  for (const { label, keys, shape, rounds: n = flags.rounds } of sec.scenarios) {
    const rounds = { ...ROUNDS, rounds: n };
    await sec.around?.before();
    const all = await compare(fleet, sec.backend, sec.configs, `(${id}) ${label}`, load(keys, shape), rounds);
    const extra = await sec.around?.after();
    rows.push(...all.map((s) => [
      label,
      s.name,
      int(s.rps),
      range(s),
      ms(s.p50),
      ms(s.p99),
      int(s.requests),
      int(s.backendCalls),
      ...sec.row(s, all),
    ]));
    const note = [sec.note(all, keys), extra].filter(Boolean).join("; ");
    if (note) notes.push(`  ${label}: ${note}${n === flags.rounds ? "" : ` (${n} rounds per config)`}`);
    part[label] = all.map(summaryJson);
  }
  const text = `\n(${id}) ${sec.title}; ${flags.rounds} × ${flags.seconds} s per config, alternating\n` +
    [table([...HEAD, ...sec.head], rows), ...notes].join("\n");
  return [text, part];
}

const results: Record<string, unknown> = {};
const out: string[] = [];
try {
  progress("starting redis-server, a Redis Cluster (section D), 2 backends and the proxies");
  const redis = await fleet.redis();
  const cluster = flags.only.has("d") ? await fleet.cluster() : undefined;
  const onCluster = (prefix: string) => [
    ...["--redis-cluster", cluster?.seeds.join(",") ?? "", "--redis-prefix", `bench-${prefix}:`],
  ];
  const [slow, fast] = await Promise.all([fleet.backend(`${DELAY_MS}ms`), fleet.backend("0ms")]);
  const tier = (prefix: string) => ["--redis", redis.url, "--redis-prefix", `bench-${prefix}:`];
  /** `n` proxies; on one port (`--reuse-port`) when `shared`, else each on its own. */
  const group = async (
    on: string,
    name: string,
    backend: number,
    n: number,
    args: string[],
    shared = false,
  ) => {
    if (!flags.only.has(on)) return undefined;
    const port = shared ? freePort() : undefined;
    const proxies = [];
    for (let i = 0; i < n; i++) {
      proxies.push(await fleet.proxy(backend, ["--cache-ttl", `${TTL_MS}ms`, ...args], port));
    }
    return { name, proxies, ports: port ? [port] : proxies.map((p) => p.port) };
  };
  const configs = await Promise.all([
    group("a", "3 proxies", slow.port, 3, []),
    group("a", "3 proxies + redis", slow.port, 3, tier("a")),
    group("b", "1 proxy", fast.port, 1, []),
    group("b", "1 proxy + redis", fast.port, 1, tier("b")),
    group("c", "1 process", fast.port, 1, ["--reuse-port"], true),
    group("c", "2 processes", fast.port, 2, ["--reuse-port"], true),
    group("c", "2 processes + redis", fast.port, 2, ["--reuse-port", ...tier("c")], true),
    group("d", "3 proxies + redis", slow.port, 3, tier("d")),
    group("d", "3 proxies + cluster", slow.port, 3, onCluster("d")),
    group("d", "1 proxy + redis", fast.port, 1, tier("d1")),
    group("d", "1 proxy + cluster", fast.port, 1, onCluster("d1")),
  ]);
  const [fleetA, tierA, oneB, tierB, oneC, twoC, twoTierC, fleetD, clusterD, oneD, oneClusterD] = configs;
  if (!QUICK) {
    // One section at a time (all of everything at once overloads the box: the tier times out).
    const sections = [configs.slice(0, 2), configs.slice(2, 4), configs.slice(4, 7), configs.slice(7)];
    for (const section of sections) {
      const ports = section.flatMap((c) => c?.ports ?? []);
      if (ports.length) progress(`warming up ${section.map((c) => c?.name).join(", ")} (Zipf keys, 1 s)`);
      await Promise.all(
        ports.map((p) => fleet.loadgen(p, [...load("zipf", [2, 8]), "--duration", "1s"], 60_000)),
      );
    }
  }

  if (fleetA && tierA) {
    const perSecond = (s: Summary) => (s.backendCalls / s.loadSeconds).toFixed(1);
    const [text, part] = await section("A", {
      title: `fleet of 3 proxies, one backend (${DELAY_MS} ms per call), cache TTL ${TTL_MS} ms; ` +
        `one loadgen per proxy at once, ${LOADS.fleet.join(" × ")} each`,
      backend: slow,
      configs: [fleetA, tierA],
      scenarios: ["hot", "zipf"].map((keys) => ({ label: keys, keys, shape: LOADS.fleet })),
      head: ["(proxies' count)", "tier hit/lock/wait/skip"],
      row: (s) => [int(s.proxyBackendCalls), tierCell(s)],
      note: ([a, b], keys) =>
        `backend calls with/without ${x(b.backendCalls, a.backendCalls)}` +
        (keys === "hot" ? ` (${perSecond(a)}/s vs ${perSecond(b)}/s; TTL ${TTL_MS} ms)` : "") +
        `; req/s ${x(b.rps, a.rps)}; p50 ${x(b.p50, a.p50)}; p99 ${x(b.p99, a.p99)}; ${tierCalls(b)}`,
    });
    out.push(text);
    results.a = part;
  }

  if (oneB && tierB) {
    // The miss path's cost is the smallest difference measured here: twice the rounds.
    const uniqueRounds = QUICK ? flags.rounds : 2 * flags.rounds;
    const [text, part] = await section("B", {
      title: "one proxy, backend without delay, without vs with --redis",
      backend: fast,
      configs: [oneB, tierB],
      scenarios: [
        { label: `unique ${LOADS.busy.join("×")}`, keys: "unique", shape: LOADS.busy, rounds: uniqueRounds },
        { label: "unique 1×1", keys: "unique", shape: LOADS.serial, rounds: uniqueRounds },
        { label: `hot ${LOADS.busy.join("×")}`, keys: "hot", shape: LOADS.busy },
      ],
      head: ["tier hit/lock/wait/skip"],
      row: (s) => [tierCell(s)],
      note: ([a, b], keys) =>
        `req/s with/without ${x(b.rps, a.rps)}; p50 ${us(b.p50 - a.p50)} (${pct(b.p50, a.p50)}), ` +
        `p99 ${us(b.p99 - a.p99)} (${pct(b.p99, a.p99)})` +
        (keys === "unique" ? `; 1/throughput ${us(1000 / b.rps - 1000 / a.rps)} per call` : "") +
        (keys === "hot" ? `; tier lookups per request ${(tierLookups(b) / b.requests).toFixed(4)}` : ""),
    });
    out.push(text);
    results.b = part;
  }

  if (oneC && twoC && twoTierC) {
    const [text, part] = await section("C", {
      title: `--reuse-port: processes on one port, backend without delay; one loadgen, ${
        LOADS.spread.join(" × ")
      }`,
      backend: fast,
      configs: [oneC, twoC, twoTierC],
      scenarios: ["unique", "hot"].map((keys) => ({ label: keys, keys, shape: LOADS.spread })),
      head: ["vs 1 process", "requests per process"],
      row: (s, [one]) => [x(s.rps, one.rps), shares(s)],
      note: () => undefined,
    });
    out.push(text);
    results.c = part;
  }

  if (cluster && fleetD && clusterD && oneD && oneClusterD) {
    const perTtl = (s: Summary) => (s.backendCalls / (s.loadSeconds * 1000 / TTL_MS)).toFixed(2);
    const hitRate = ({ tier: t }: Summary) => {
      const asked = t.hit + t.lock + t.wait + t.skipped + t.error;
      return asked === 0 ? "—" : `${(100 * t.hit / asked).toFixed(0)}%`;
    };
    const noCall = (s: Summary) => `${(100 * (1 - s.backendCalls / s.requests)).toFixed(1)}%`;
    let before = new Map<number, number>();
    const spread = {
      before: async () => void (before = await scriptsPerMaster(cluster)),
      after: async () => {
        const after = await scriptsPerMaster(cluster);
        const counts = [...after].map(([port, n]) => n - (before.get(port) ?? 0));
        const sum = counts.reduce((a, b) => a + b, 0);
        return `cluster scripts per master ${
          counts.map((n) => `${(100 * n / sum).toFixed(0)}%`).join(" / ")
        }` +
          ` of ${int(sum)}`;
      },
    };
    const [fleetText, fleetPart] = await section("D", {
      title:
        `Redis Cluster (3 masters + 3 replicas) vs one Redis: the fleet of (A), backend ${DELAY_MS} ms, ` +
        `TTL ${TTL_MS} ms`,
      backend: slow,
      configs: [fleetD, clusterD],
      scenarios: ["hot", "zipf"].map((keys) => ({ label: keys, keys, shape: LOADS.fleet })),
      head: ["calls per TTL", "tier hit", "no backend call", "tier hit/lock/wait/skip"],
      row: (s) => [perTtl(s), hitRate(s), noCall(s), tierCell(s)],
      note: ([a, b]) =>
        `backend calls cluster/single ${x(b.backendCalls, a.backendCalls)}; req/s ${x(b.rps, a.rps)}; ` +
        `p50 ${x(b.p50, a.p50)}; p99 ${x(b.p99, a.p99)}; ${tierCalls(b)}`,
      around: spread,
    });
    const [missText, missPart] = await section("D", {
      title: "Redis Cluster vs one Redis: the miss path of (B), one proxy, backend without delay",
      backend: fast,
      configs: [oneD, oneClusterD],
      scenarios: [
        { label: `unique ${LOADS.busy.join("×")}`, keys: "unique", shape: LOADS.busy },
        { label: "unique 1×1", keys: "unique", shape: LOADS.serial },
      ],
      head: ["tier hit/lock/wait/skip"],
      row: (s) => [tierCell(s)],
      note: ([a, b]) =>
        `cluster vs single: p50 ${us(b.p50 - a.p50)} (${pct(b.p50, a.p50)}), p99 ${us(b.p99 - a.p99)}; ` +
        `1/throughput ${us(1000 / b.rps - 1000 / a.rps)} per call`,
      around: spread,
    });
    out.push(fleetText, missText);
    results.d = { fleet: fleetPart, miss: missPart };
  }

  const complaints = configs.flatMap((c) =>
    c?.proxies.flatMap((p) => [
      ...p.process.logs.filter((l) => !["INFO", "DEBUG"].includes(String(l.level))).map((l) =>
        `${c.name}: ${l.message}`
      ),
      ...p.process.otherOutput.map((line) => `${c.name}: ${line}`),
    ]) ?? []
  );
  out.push(
    `\nproxy warnings and errors: ${
      complaints.length ? `\n  ${complaints.slice(0, 20).join("\n  ")}` : "none"
    }`,
  );
  out.push(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  console.log(out.join("\n"));
  console.log(JSON.stringify({
    date: new Date().toISOString(),
    quick: QUICK,
    ...ROUNDS,
    ttlMs: TTL_MS,
    fleetBackendDelayMs: DELAY_MS,
    ...results,
    proxyComplaints: complaints,
  }));
} catch (err) {
  if (!interrupted) throw err; // else a loadgen was stopped under the run: the SIGINT handler exits
} finally {
  await fleet.close();
}
