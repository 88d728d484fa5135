/**
 * The container image, built and run for real with podman: read-only root (no tmpfs either), uid 65532, the
 * proxy as PID 1, in front of a real backend on the host (`--network host`), a 10,000-call herd collapsed to one
 * backend call, and SIGTERM draining a call in flight before exiting 0.
 *
 * Needs podman and runc. It builds the image with container/build.ts (podman's layer cache makes a rebuild of
 * unchanged source take seconds); set COLLAPSER_IMAGE to test an image built already.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { admin, gate, newClient, parse, startTestBackend, unary, until } from "./_helpers.ts";
import { buildImage, NONROOT_UID } from "../container/build.ts";
import { podman, runContainer } from "../container/run.ts";
import { needs } from "./_needs.ts";

const test = needs("podman", "runc").test;

const UNARY = "/test.Test/Unary";
const HERD = 10_000;

/** A value from the proxy's /metrics, 0 if absent. */
async function metric(port: number, name: string): Promise<number> {
  const { body } = await admin(port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

test("the container image collapses a 10,000-call herd and drains on SIGTERM, read-only as uid 65532", async (t) => {
  const image = Deno.env.get("COLLAPSER_IMAGE") ?? await buildImage({ quiet: true });

  await t.step(
    "the image runs as 65532, with the proxy as its entrypoint, its ports and SIGTERM",
    async () => {
      const config = JSON.parse(await podman("image", "inspect", "--format", "{{json .Config}}", image));
      assert.equal(config.User, `${NONROOT_UID}:${NONROOT_UID}`);
      assert.equal(config.StopSignal, "SIGTERM");
      assert.deepEqual(Object.keys(config.ExposedPorts).sort(), ["2112/tcp", "50052/tcp"]);
      assert.ok(
        config.Entrypoint.some((part: string) => /main\.ts$|collapser$/.test(part)),
        config.Entrypoint,
      );
      assert.equal(config.Cmd ?? null, null, "no CMD: the flags are the caller's");
      assert.match(config.Labels["org.opencontainers.image.version"], /^\d+\.\d+\.\d+/);
    },
  );

  // Each backend call waits on the gate of its moment, so the test decides when answers come.
  let held = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      held.promise.then(() => callback(null, Buffer.from(JSON.stringify({ echo: parse(call.request) }))));
    },
  });
  let client: grpc.Client | undefined;
  try {
    await using container = await runContainer(image, [
      "--backend",
      backend.address,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--metrics-port",
      "0",
    ]);
    client = newClient(container.port);

    await t.step("the proxy is PID 1, as uid 65532", async () => {
      const rows = (await podman("top", container.name, "pid", "huser", "comm")).trim().split("\n").slice(1)
        .map((row) => row.trim().split(/\s+/));
      assert.deepEqual(rows.map(([pid, user]) => [pid, user]), [["1", String(NONROOT_UID)]], `${rows}`);
    });

    await t.step("/health and /ready answer on the admin port", async () => {
      assert.equal((await admin(container.metricsPort, "/health")).status, 200);
      await until(async () => (await admin(container.metricsPort, "/ready")).status === 200, "/ready");
    });

    await t.step("the proxy's own probe works inside the image (no shell, read-only)", async () => {
      const { Entrypoint } = JSON.parse(
        await podman("image", "inspect", "--format", "{{json .Config}}", image),
      );
      const port = String(container.metricsPort);
      await podman("exec", container.name, ...Entrypoint, "--probe", "ready", "--metrics-port", port);
      await assert.rejects(
        podman("exec", container.name, ...Entrypoint, "--probe", "ready", "--metrics-port", "1"),
        /collapser: http:\/\/127\.0\.0\.1:1\/ready: /,
        "a probe of a port with nothing on it fails",
      );
    });

    await t.step(`a herd of ${HERD} identical calls is one backend call`, async () => {
      const calls = Array.from({ length: HERD }, () => unary(client!, UNARY, { q: "herd" }));
      await until(
        async () => await metric(container.metricsPort, "collapser_waiting_callers") === HERD,
        "the whole herd to wait on one flight",
        60_000,
      );
      held.open();
      const results = await Promise.all(calls);
      assert.equal(
        results.filter((r) => r.error === null).length,
        HERD,
        `${results.find((r) => r.error)?.error}`,
      );
      assert.equal(new Set(results.map((r) => r.response?.toString())).size, 1);
      assert.equal(backend.calls.Unary, 1);
    });

    await t.step("SIGTERM drains the call in flight, then the container exits 0", async () => {
      held = gate();
      const inFlight = unary(client!, UNARY, { q: "in flight at SIGTERM" });
      await until(() => backend.calls.Unary === 2, "the call to reach the backend");
      await podman("kill", "--signal", "SIGTERM", container.name);
      await until(
        async () => (await admin(container.metricsPort, "/ready")).body.includes("draining"),
        "/ready to say draining",
      );
      held.open();
      const result = await inFlight;
      assert.equal(result.error, null, `${result.error}`);
      assert.equal(await container.status, 0);
      const messages = container.logs.map((entry) => entry.message);
      assert.ok(messages.some((m) => /^SIGTERM: draining 1 calls/.test(String(m))), messages.join("\n"));
      assert.ok(messages.includes("drained; exiting"), messages.join("\n"));
      assert.deepEqual(
        container.otherOutput,
        [],
        "nothing but JSON logs: no warning about an unwritable cache",
      );
    });
  } finally {
    client?.close();
    held.open();
    backend.close();
  }
});
