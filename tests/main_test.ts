import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { newClient, parse, startTestBackend, unary } from "./_helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function collapser(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

Deno.test("collapser exits 1 with one clear line and the usage on bad input", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'/],
    [[], /no backend: set --backend HOST:PORT or BACKEND_ADDRESS/],
    [["--backend", "127.0.0.1:1", "--cache-ttl", "soon"], /--cache-ttl: invalid duration "soon"/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" ") || "(no arguments)", async () => {
      const { code, stderr } = await collapser(args).output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1);
      assert.match(text.split("\n")[0], message);
      assert.match(text, /Usage: collapser --backend HOST:PORT/);
    });
  }
});

Deno.test("collapser --help prints the usage and exits 0", async () => {
  const { code, stdout } = await collapser(["--help"]).output();
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /--cache-ttl DURATION/);
});

Deno.test("collapser proxies calls from the command line, logs JSON, and exits 0 on SIGTERM", async () => {
  const backend = await startTestBackend();
  const child = collapser(["--port", "0", "--host", "127.0.0.1"], { BACKEND_ADDRESS: backend.address })
    .spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let client: grpc.Client | undefined;
  try {
    let buffered = "";
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`collapser exited early: ${buffered}`);
      buffered += value;
    }
    const startup = JSON.parse(buffered.split("\n")[0]);
    assert.equal(startup.level, "INFO");
    assert.equal(startup.properties.backend, backend.address);
    assert.equal(startup.properties.cacheTtl, "100ms");
    client = newClient(startup.properties.port);
    const result = await unary(client, "/test.Test/Unary", { hello: "cli" });
    assert.deepEqual(parse(result.response).echo, { hello: "cli" });
  } finally {
    client?.close();
    child.kill("SIGTERM");
    const status = await child.status;
    await lines.cancel();
    await child.stdout.cancel();
    backend.close();
    assert.equal(status.code, 0);
  }
});
