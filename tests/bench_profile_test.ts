/**
 * bench/lib/profile.ts: a `.cpuprofile` split into runtime, GC, the proxy's `src/` and npm, on a small
 * profile whose answer is known (the same split docs/performance.md quotes for a miss).
 */

import assert from "node:assert/strict";
import { breakdown } from "../bench/lib/profile.ts";

Deno.test("breakdown() splits a CPU profile's busy time: runtime, GC, src/ (by function) and npm; idle left out", () => {
  const node = (id: number, functionName: string, url: string) => ({ id, callFrame: { functionName, url } });
  const profile = {
    nodes: [
      node(1, "(idle)", ""),
      node(2, "(garbage collector)", ""),
      node(3, "collapseKey", "file:///app/src/policy/key.ts"),
      node(4, "encodeFrame", "file:///app/src/wire/grpc_wire.ts"),
      node(5, "observe", "file:///app/node_modules/.deno/prom-client/lib/histogram.js"),
      node(6, "writev", ""),
      node(7, "emit", "ext:deno_node/_events.mjs"),
    ],
    // Sample i lasted timeDeltas[i] µs: idle 500, GC 200, key 100 + 100, frame 50, npm 50, runtime 300 + 200.
    samples: [1, 2, 3, 4, 3, 5, 6, 7],
    timeDeltas: [500, 200, 100, 50, 100, 50, 300, 200],
  };
  const b = breakdown("p.cpuprofile", profile, 2);
  assert.equal(b.busyMs, 1);
  assert.deepEqual(b.shares, { runtime: 50, gc: 20, src: 25, npm: 5 });
  assert.deepEqual(b.topSrc, [
    { name: "policy/key.ts collapseKey", pct: 20 },
    { name: "wire/grpc_wire.ts encodeFrame", pct: 5 },
  ]);
});
