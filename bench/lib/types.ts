/**
 * The load harness's data model: scenarios and targets, the load shapes, a measured round, a report row, the
 * herd and hot-key results, the targets' verdicts, and the report that bench/results.json holds.
 *
 * @module
 */

import type { KeyMode } from "../loadgen.ts";
import type { Concurrency, RunStats } from "./drivers.ts";

export type TargetName = "direct" | "nginx" | "proxy" | "relay" | "echo" | "proxy@rate" | "echo@rate";

export interface Scenario {
  id: "a" | "b" | "c" | "d";
  name: string;
  tool: "h2load" | "loadgen";
  keys: KeyMode;
  delayMs: number;
  maxConcurrent?: number;
}

/** The load shape every target gets: connections × streams per connection in flight. */
export interface LoadShape extends Concurrency {
  warmupMs: number;
  rounds: number;
  roundMs: number;
}

/** The herd check: this many identical calls at once over this many connections, backend delay per call. */
export interface HerdShape {
  requests: number;
  connections: number;
  delayMs: number;
}

export interface Check {
  ok: boolean;
  note: string;
}

export interface Round {
  stats: RunStats;
  calls: number;
  bound?: number;
  peakRssMb: number;
  otherCpuPct: number;
  /** CPU time the target's processes used during the round (user + system), in ms. */
  cpuMs: number;
  checks: Check[];
}

export interface Row {
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
  /**
   * CPU time the target spent per answer, in µs: its processes' CPU over every round / the answers (null
   * without answers). Unlike req/s it does not depend on what else shares the cores.
   */
  cpuUsPerAnswer: number | null;
  /** CPU (% of all cores) used during the worst round by processes the harness did not start. */
  otherCpuPct: number;
  vsDirect: number | null;
  vsNginx: number | null;
  verified: boolean;
  checks: string[];
}

export interface HerdResult {
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
    /** Peak RSS of the serving process (tree) during the herd, in MB. */
    peakRssMb: number;
  }[];
  verified: boolean;
}

export interface HotRun {
  seconds: number;
  requests: number;
  rps: number;
  backendCalls: number;
  bound: number;
  withinBound: boolean;
  /** CPU (% of all cores) other processes used during the run. */
  otherCpuPct: number;
  /** Peak RSS of the proxy (process tree) during the run, in MB. */
  peakRssMb: number;
  /** Per sample: seconds since start, requests answered so far, backend calls so far. */
  series: [number, number, number][];
}

export interface TargetCheck {
  goal: string;
  measured: string;
  met: boolean | null;
}

export interface Report {
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
    proxyEnv: string | null;
    /** Extra proxy flags (`--proxy-args`). */
    proxyArgs?: string | null;
    proxyEntry: string;
    cacheTtlMs: number;
    load: LoadShape;
    fixedRate: number;
    herd: HerdShape;
    hotRunMs: number;
  };
  rows: Row[];
  herd?: HerdResult;
  hot?: HotRun;
  targets: TargetCheck[];
}
