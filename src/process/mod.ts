/**
 * A process's wiring, above every other folder: {@linkcode serve} runs one serving process (the proxy, its
 * admin port, reloads, recycling and the drain on a signal) from a parsed configuration. main.ts chooses it
 * (or the supervisor, or a probe) and imports it only then.
 *
 * @module
 */

export * from "./serve.ts";
