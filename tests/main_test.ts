import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  bytes,
  collapserCommand,
  gate,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";

Deno.test("collapser exits 1 with one clear line and the usage on bad input", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'/],
    [[], /no backend: set --backend HOST:PORT or BACKEND_ADDRESS/],
    [["--backend", "127.0.0.1:1", "--cache-ttl", "soon"], /--cache-ttl: invalid duration "soon"/],
    [["--backend", "127.0.0.1:1", "--redis", "redis:/x:y"], /--redis: /],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" ") || "(no arguments)", async () => {
      const { code, stderr } = await collapserCommand(args).output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1);
      assert.match(text.split("\n")[0], message);
      assert.match(text, /Usage: collapser --backend TARGET/);
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

Deno.test("collapser exits at once, with status 1, on a second signal during the drain", async () => {
  const never = gate();
  const backend = await startTestBackend({
    Unary(_call, callback) {
      never.promise.then(() => callback(null, bytes({})));
    },
  });
  const proc = await startCollapserProcess([], { BACKEND_ADDRESS: backend.address });
  const client = newClient(proc.port);
  try {
    const stuck = unary(client, "/test.Test/Unary", { q: "stuck" });
    await until(() => backend.calls.Unary === 1, "a call in flight");
    proc.signal("SIGTERM");
    await until(() => proc.logs.some((l) => String(l.message).includes("draining")), "the drain to start");
    proc.signal("SIGINT");
    const status = await proc.stop();
    assert.equal(status.code, 1);
    assert.notEqual((await stuck).status.code, grpc.status.OK);
  } finally {
    client.close();
    never.open();
    backend.close();
  }
});
