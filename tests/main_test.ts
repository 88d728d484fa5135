import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  collapserCommand,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
} from "./_helpers.ts";

Deno.test("collapser exits 1 with one clear line and the usage on bad input", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'/],
    [[], /no backend: set --backend HOST:PORT or BACKEND_ADDRESS/],
    [["--backend", "127.0.0.1:1", "--cache-ttl", "soon"], /--cache-ttl: invalid duration "soon"/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" ") || "(no arguments)", async () => {
      const { code, stderr } = await collapserCommand(args).output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1);
      assert.match(text.split("\n")[0], message);
      assert.match(text, /Usage: collapser --backend HOST:PORT/);
    });
  }
});

Deno.test("collapser --help prints the usage and exits 0", async () => {
  const { code, stdout } = await collapserCommand(["--help"]).output();
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /--cache-ttl DURATION/);
});

Deno.test("collapser proxies calls from the command line, logs JSON, and exits 0 on SIGTERM", async () => {
  const backend = await startTestBackend();
  let client: grpc.Client | undefined;
  const proc = await startCollapserProcess([], { BACKEND_ADDRESS: backend.address });
  try {
    const startup = proc.logs[0] as { level: string; properties: Record<string, unknown> };
    assert.equal(startup.level, "INFO");
    assert.equal(startup.properties.backend, backend.address);
    assert.equal(startup.properties.cacheTtl, "100ms");
    client = newClient(proc.port);
    const result = await unary(client, "/test.Test/Unary", { hello: "cli" });
    assert.deepEqual(parse(result.response).echo, { hello: "cli" });
  } finally {
    client?.close();
    const status = await proc.stop();
    backend.close();
    assert.equal(status.code, 0);
  }
});
