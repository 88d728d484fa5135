/**
 * Small things every layer uses and that know nothing of the project: structured logging (JSON lines
 * through LogTape), Go-style durations (`100ms`, `10s`), the version, SIGHUP wiring for reloads, and a
 * secret that can be checked but never printed (secret.ts), the cores a cgroup allows (cores.ts), and the
 * V8 flags the proxy runs with (v8_flags.ts), and timeouts of one delay on one timer (timeout_queue.ts).
 *
 * The bottom of the layering: it imports nothing of the project.
 *
 * @module
 */

export * from "./duration.ts";
export * from "./log.ts";
export * from "./reload.ts";
export * from "./version.ts";
export * from "./secret.ts";
export * from "./cores.ts";
export * from "./v8_flags.ts";
export * from "./timeout_queue.ts";
