/**
 * A short soak: the proxy as its own process under mixed HTTP/2 load. Deno 2.9.x aborted under this kind of
 * load on our machines (nghttp2 assertion, `free(): invalid pointer`); this test is here so that a runtime
 * upgrade that crashes fails CI instead of production.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { bytes, identity, newClient, startCollapserProcess, startTestBackend, unary } from "./_helpers.ts";

const CONNECTIONS = 4;
const CALLS_PER_CONNECTION = 3_000;
const CONCURRENCY = 64;

Deno.test("collapser survives mixed HTTP/2 load (hot keys, unique keys, streams, cancels) and answers every call", async () => {
  const backend = await startTestBackend();
  const proc = await startCollapserProcess(["--cache-ttl", "20ms"], { BACKEND_ADDRESS: backend.address });
  const clients = Array.from({ length: CONNECTIONS }, () => newClient(proc.port));
  let ok = 0;
  let cancelled = 0;
  const failures: string[] = [];
  try {
    await Promise.all(clients.map(async (client, c) => {
      let next = 0;
      const worker = async () => {
        while (next < CALLS_PER_CONNECTION) {
          const i = next++;
          const kind = i % 10;
          if (kind === 9) {
            // A bidi stream with two round trips.
            const chat = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
            chat.on("error", () => {});
            let replies = 0;
            chat.on("data", () => {
              if (++replies === 2) chat.end();
            });
            chat.write(bytes({ i }));
            chat.write(bytes({ i: i + 1 }));
            const status = await new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
            if (status.code === grpc.status.OK && replies === 2) ok++;
            else failures.push(`bidi ${status.code} ${status.details}`);
          } else if (kind === 8) {
            // A caller that gives up at once.
            const result = await unary(client, "/test.Test/Unary", { hot: i % 3 }, {
              onCall: (call) => queueMicrotask(() => call.cancel()),
            });
            if (result.status.code === grpc.status.CANCELLED || result.status.code === grpc.status.OK) {
              cancelled++;
            } else failures.push(`cancel ${result.status.code} ${result.status.details}`);
          } else {
            const request = kind < 5 ? { hot: i % 3 } : { unique: `${c}-${i}` };
            const result = await unary(client, "/test.Test/Unary", request);
            if (result.status.code === grpc.status.OK) ok++;
            else failures.push(`unary ${result.status.code} ${result.status.details}`);
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    }));
  } finally {
    for (const client of clients) client.close();
  }
  const total = CONNECTIONS * CALLS_PER_CONNECTION;
  // Still alive and answering after the load (and after its clients closed their connections):
  const after = newClient(proc.port);
  const afterResult = await unary(after, "/test.Test/Unary", { after: true });
  after.close();
  const status = await proc.stop();
  backend.close();
  const died = `the proxy process ended with ${JSON.stringify(status)}; its last output: ${
    proc.otherOutput.slice(-5).join(" | ")
  }`;
  assert.equal(afterResult.status.code, grpc.status.OK, died);
  assert.equal(status.code, 0, died);
  assert.deepEqual(failures.slice(0, 5), []);
  assert.equal(ok + cancelled, total);
  assert.ok(backend.calls.Unary < total, "hot keys were collapsed");
});
