/**
 * A backend whose connection breaks mid-answer, in front of a healthy one: a raw `node:http2` server that
 * sends the response headers (and the message) and then drops the connection before the trailers, as a
 * replica SIGKILLed under load does. With `retry: true` the call goes to the other address and its caller
 * sees that answer alone; without, it fails UNAVAILABLE after what it was already given.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { identity, newClient, startTestBackend } from "./_helpers.ts";
import { Proxy } from "../src/server/proxy.ts";
import { Policy } from "../src/policy/policy.ts";
import { encodeFrame } from "../src/wire/grpc_wire.ts";

const UNARY = "/test.Test/Unary";

/** A backend that answers every call with headers (and one message, `cut: "message"`), then drops. */
async function startCuttingBackend(cut: "headers" | "message") {
  let calls = 0;
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    calls++;
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      const drop = () => stream.session?.destroy();
      if (cut === "message") stream.write(encodeFrame(new TextEncoder().encode('{"from":"cut"}')), drop);
      else stream.write(new Uint8Array(0), drop);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls: () => calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** One call read as a server stream, so that a message given before a failure is seen too. */
function callSeeingAll(client: grpc.Client): Promise<{ messages: string[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: string[] = [];
    const call = client.makeServerStreamRequest(UNARY, identity, identity, Buffer.from('{"k":1}'), {
      deadline: Date.now() + 10_000,
    });
    call.on("data", (m: Buffer) => messages.push(m.toString()));
    call.on("error", () => {});
    call.on("status", (status) => resolve({ messages, status }));
  });
}

async function stack(cut: "headers" | "message", retry: boolean) {
  const cutting = await startCuttingBackend(cut);
  const good = await startTestBackend({
    Unary: (_call, callback) => callback(null, Buffer.from('{"from":"good"}')),
  });
  const rules = retry ? [{ method: "/test.Test/*", matches: () => true, retry: true }] : [];
  const proxy = await Proxy.start({
    // Round robin, the cutting backend first: the first call goes there.
    backend: `${cutting.address},${good.address}`,
    host: "127.0.0.1",
    port: 0,
    balancing: { lbPolicy: "round_robin" },
    policy: new Policy({}, { rules }),
  });
  const client = newClient(proxy.port);
  return {
    cutting,
    good,
    proxy,
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      await proxy.close();
      good.close();
      await cutting.close();
    },
  };
}

for (const cut of ["headers", "message"] as const) {
  Deno.test(`Proxy, retry: true: a backend that drops its connection after the ${cut} is retried on the other address; the caller sees that answer alone`, async () => {
    await using s = await stack(cut, true);
    const { messages, status } = await callSeeingAll(s.client);
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.deepEqual(messages, ['{"from":"good"}']);
    assert.equal(s.cutting.calls(), 1);
    assert.equal(s.good.calls.Unary, 1);
    assert.equal(s.proxy.backend.balancer!.stats().retries.idempotent, 1);
  });
}

Deno.test("Proxy, no retry rule: a backend that drops its connection after the message fails the call UNAVAILABLE, after the message it gave", async () => {
  await using s = await stack("message", false);
  const { messages, status } = await callSeeingAll(s.client);
  assert.equal(status.code, grpc.status.UNAVAILABLE, status.details);
  assert.deepEqual(messages, ['{"from":"cut"}'], "the part of the answer given before the cut");
  assert.equal(s.good.calls.Unary, 0);
  assert.equal(s.proxy.backend.balancer!.stats().retries.idempotent, 0);
});
