/**
 * `--probe health|ready`: the proxy's own health check, for images with no shell or curl. A real proxy process
 * and `main.ts --probe` as a second process, as Docker's HEALTHCHECK would run it.
 */

import assert from "node:assert/strict";
import { admin, collapserCommand, startCollapserProcess, startTestBackend, until } from "./_helpers.ts";
import { parseProbe } from "../src/config/probe_flags.ts";

/** Runs `main.ts --probe …`; resolves with its exit code and standard error. */
async function runProbe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; err: string }> {
  const output = await collapserCommand(args, env).output();
  return { code: output.code, err: new TextDecoder().decode(output.stderr) };
}

Deno.test("parseProbe() reads the admin port and address as the proxy does, and ignores other flags", () => {
  assert.equal(parseProbe(["--backend", "x:1"], {}), undefined, "no --probe: the proxy starts");
  assert.deepEqual(parseProbe(["--probe", "ready"], {}), {
    endpoint: "ready",
    host: "127.0.0.1",
    port: 2112,
  });
  assert.deepEqual(
    parseProbe(["--backend", "svc:50051", "--probe=health", "--cache-ttl", "1s"], { METRICS_PORT: "9000" }),
    { endpoint: "health", host: "127.0.0.1", port: 9000 },
  );
  assert.deepEqual(
    parseProbe(["--probe", "ready", "--metrics-port", "9001", "--host", "::"], { METRICS_PORT: "9000" }),
    { endpoint: "ready", host: "::1", port: 9001 },
    "the flag wins over the variable; a wildcard address is probed on loopback",
  );
  assert.throws(() => parseProbe(["--probe", "live"], {}), /--probe: expected health or ready, got "live"/);
  assert.throws(() => parseProbe(["--probe", "ready", "--metrics-port", "x"], {}), /invalid port "x"/);
});

Deno.test("main.ts --probe exits 0 while the proxy answers 200, 1 with the reason otherwise", async (t) => {
  const backend = await startTestBackend();
  await using proc = await startCollapserProcess(["--backend", backend.address]);
  const port = String(proc.metricsPort);
  await t.step("health and ready: 0", async () => {
    assert.deepEqual(await runProbe(["--probe", "health", "--metrics-port", port]), { code: 0, err: "" });
    assert.deepEqual(await runProbe(["--probe", "ready"], { METRICS_PORT: port }), { code: 0, err: "" });
  });
  await t.step("ready with the backend gone: 1, and why", async () => {
    backend.close();
    await until(async () => (await admin(proc.metricsPort, "/ready")).status === 503, "/ready to turn 503");
    const { code, err } = await runProbe(["--probe", "ready", "--metrics-port", port]);
    assert.equal(code, 1);
    assert.match(err, /\/ready: 503 not ready: backend unreachable/);
    assert.equal(
      (await runProbe(["--probe", "health", "--metrics-port", port])).code,
      0,
      "alive all the same",
    );
  });
  await proc.stop();
  await t.step("nothing listening: 1, and why", async () => {
    const { code, err } = await runProbe(["--probe", "health", "--metrics-port", port]);
    assert.equal(code, 1);
    assert.match(err, /\/health: .*(refused|connect)/i);
  });
  await t.step("a bad --probe: one line, the usage, 1", async () => {
    const { code, err } = await runProbe(["--probe", "alive"]);
    assert.equal(code, 1);
    assert.match(err, /^collapser: --probe: expected health or ready, got "alive"\n\nUsage: collapser/);
  });
});
