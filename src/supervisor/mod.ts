/**
 * Several processes as one proxy (`--workers N|auto`): a supervisor that starts one worker per core on one
 * port (SO_REUSEPORT), starts a dead one again, replaces one that passed its recycling bound (memory or
 * connections) before draining it, drains them all on SIGTERM, and serves one admin port for them all
 * (supervisor.ts, admin.ts, metrics_merge.ts); and the worker's side: the messages it sends (protocol.ts)
 * and its recycling bounds (recycle.ts). It holds no gRPC code: a worker is this same program.
 *
 * @module
 */

export * from "./admin.ts";
export * from "./metrics_merge.ts";
export * from "./protocol.ts";
export * from "./recycle.ts";
export * from "./run.ts";
export * from "./supervisor.ts";
