/**
 * The V8 flags the proxy runs with wherever it starts: `deno task start`, the compiled binary
 * (`deno compile --v8-flags` builds them in), both container targets, the workers of `--workers`, and
 * bench:load. V8 reads them when the heap is made, so they must be on the command line (or in
 * `DENO_V8_FLAGS`): set from inside the program they change nothing (measured).
 *
 * - `--max-semi-space-size=4`: the young generation's semi-spaces stop at 4 MB instead of 16 MB. A call's
 *   garbage is short-lived; a smaller nursery is scavenged more often, each time as cheaply.
 * - `--heap-growing-percent=50`: after a full GC the old generation may grow to 1.5 times what survived,
 *   not up to 4 times. This is no cap: a larger live set (a full cache) still gets the room it needs.
 *
 * Under the unique-key load (8 × 16 streams, example backend) the proxy's peak RSS went from 234 MB to 143
 * MB at the same req/s; `bench/results.md` and docs/performance.md have the side-by-side runs. A hard cap
 * (`--max-old-space-size`) would save as much but turn a large cache into a crash.
 *
 * @module
 */

/** The flags, as V8 spells them. */
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=4", "--heap-growing-percent=50"];

/** The flags as one `deno run` / `deno compile` argument. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;
