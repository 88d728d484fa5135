import assert from "node:assert/strict";
import { startBackend } from "../examples/backend.ts";
import { herd } from "../examples/client.ts";
import { Proxy } from "../src/server/proxy.ts";

Deno.test("the example client's herd reaches the example backend once through the proxy", async () => {
  const backend = await startBackend({ delayMs: 20 });
  // A long TTL: callers that arrive after the first answer (a slow machine sending the herd) are cache hits.
  const proxy = await Proxy.start({
    backend: `127.0.0.1:${backend.port}`,
    host: "127.0.0.1",
    port: 0,
    cacheTtlMs: 60_000,
  });
  try {
    const address = `127.0.0.1:${backend.port}`;
    const direct = await herd({ target: address, backend: address, calls: 300 });
    assert.equal(direct.ok, 300);
    assert.equal(direct.backendCalls, 300);
    const collapsed = await herd({
      target: `127.0.0.1:${proxy.port}`,
      backend: address,
      calls: 300,
      key: "k",
    });
    assert.equal(collapsed.ok, 300);
    assert.equal(collapsed.distinctAnswers, 1);
    assert.equal(collapsed.backendCalls, 1);
  } finally {
    await proxy.close();
    backend.close();
  }
});
