/**
 * Idle backend sessions: a backend with an idle-connection policy (grpc-js `grpc.max_connection_idle_ms`,
 * as grpc-go's `MaxConnectionIdle` and Envoy's `idle_timeout`) sends GOAWAY to a proxy whose sessions sat
 * idle, and the proxy serves the next calls on new ones; and the raw channel closes an idle session itself,
 * before the backend would (denoland/deno#36788: on Deno 2.9.x a GOAWAY on a long-idle client session could
 * abort the process; bench/idle_goaway.ts measures that).
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { H2Channel } from "../src/backend/h2_channel.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import { Proxy } from "../src/server/proxy.ts";
import { bytes, gate, identity, newClient, parse, TEST_SERVICE, unary, until } from "./_helpers.ts";

const UNARY = "/test.Test/Unary";

/** channelz's GetServerSockets handler, called in-process: the sockets a server has open. */
type GetServerSockets = (
  call: { request: { server_id: string; start_socket_id: string; max_results: string } },
  callback: (err: unknown, value?: { socket_ref: { socket_id: string }[] }) => void,
) => void;

/** A grpc-js backend of `test.Test` that closes connections idle for `idleMs`, and lists its connections. */
async function idleBackend(idleMs: number, options: { hold?: Promise<void> } = {}) {
  let calls = 0;
  const server = new grpc.Server({ "grpc.max_connection_idle_ms": idleMs });
  server.addService(TEST_SERVICE, {
    async Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls++;
      if (parse(call.request).hold === true) await options.hold;
      callback(null, bytes({ echo: parse(call.request) }));
    },
    ClientStream(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls++;
      let received = 0;
      call.on("data", () => received++);
      call.on("end", () => callback(null, bytes({ received })));
    },
    ServerStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => call.end(),
    Bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => call.end(),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  const getServerSockets = grpc.getChannelzHandlers().GetServerSockets as unknown as GetServerSockets;
  return {
    address: `127.0.0.1:${port}`,
    get calls() {
      return calls;
    },
    /** Connections the server has open now, as it counts them itself (channelz socket ids). */
    connections(): Promise<string[]> {
      const request = {
        server_id: String(server.getChannelzRef().id),
        start_socket_id: "0",
        max_results: "0",
      };
      return new Promise((resolve, reject) =>
        getServerSockets(
          { request },
          (err, value) => err ? reject(err) : resolve(value!.socket_ref.map((ref) => ref.socket_id)),
        )
      );
    },
    close: () => server.forceShutdown(),
  };
}

/** A client-streaming call of two messages: not collapsible, so the proxy passes it through over grpc-js. */
function clientStream(client: grpc.Client): Promise<{ error: grpc.ServiceError | null; received?: number }> {
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(
      "/test.Test/ClientStream",
      identity,
      identity,
      (error, value) => resolve({ error, received: value && parse(value).received as number }),
    );
    call.write(bytes({ n: 1 }));
    call.write(bytes({ n: 2 }));
    call.end();
  });
}

/** One call over `channel`; resolves with its status code. */
function channelCall(channel: H2Channel, request: unknown): Promise<number> {
  return new Promise((resolve) => {
    channel.call(UNARY, bytes(request), {}, (event) => event.type === "status" && resolve(event.code));
  });
}

Deno.test("Proxy serves calls again after the backend sent GOAWAY to its idle sessions (raw and grpc-js)", async () => {
  const backend = await idleBackend(300);
  // The raw channel's own idle timeout (30 s) is far off: the backend's GOAWAY comes first.
  const proxy = await Proxy.start({ backend: backend.address, host: "127.0.0.1", port: 0, cacheTtlMs: 0 });
  const client = newClient(proxy.port);
  try {
    for (let round = 1; round <= 2; round++) {
      const collapsed = await unary(client, UNARY, { round });
      assert.equal(collapsed.error, null, `round ${round}: collapsed call`);
      assert.deepEqual(parse(collapsed.response), { echo: { round } });
      const passed = await clientStream(client);
      assert.equal(passed.error, null, `round ${round}: passthrough call`);
      assert.equal(passed.received, 2);
      assert.equal((await backend.connections()).length, 2, "one raw HTTP/2 session and one grpc-js session");
      // Both sessions now sit idle until the backend sends GOAWAY and closes them.
      await until(
        async () => (await backend.connections()).length === 0,
        "the backend to close the idle sessions",
      );
    }
    const after = await Promise.all([unary(client, UNARY, { after: true }), clientStream(client)]);
    assert.deepEqual(after.map((r) => r.error), [null, null]);
    assert.equal(backend.calls, 6, "every call reached the backend");
  } finally {
    client.close();
    await proxy.close();
    backend.close();
  }
});

Deno.test("H2Channel closes a session idle for idleTimeoutMs itself, and the next call opens a new one", async (t) => {
  const held = gate();
  // The backend's own idle limit is far off: anything closed here, the channel closed.
  const backend = await idleBackend(600_000, { hold: held.promise });
  // Long enough that the checks right after a call see the session still open on a slow machine.
  const channel = new H2Channel(backend.address, { idleTimeoutMs: 200 });
  try {
    await t.step("an idle session is closed, on both ends", async () => {
      assert.equal(await channelCall(channel, { first: true }), Status.OK);
      assert.equal(channel.sessionCount, 1);
      await until(() => channel.sessionCount === 0, "the channel to close its idle session");
      await until(async () => (await backend.connections()).length === 0, "the backend to see it closed");
    });
    await t.step("the next call opens a new session", async () => {
      assert.equal(await channelCall(channel, { second: true }), Status.OK);
      assert.equal(channel.sessionCount, 1);
      assert.equal((await backend.connections()).length, 1);
      await until(() => channel.sessionCount === 0, "the new session to be closed when idle again");
    });
    await t.step("a session with a call open is not closed, however long the call takes", async () => {
      const call = channelCall(channel, { hold: true });
      await until(() => backend.calls === 3, "the held call to reach the backend");
      const since = performance.now();
      // Three idle timeouts with the call open (this waits on time: what is checked is that nothing happens).
      await until(() => performance.now() - since > 600, "three idle timeouts to pass");
      assert.equal(channel.sessionCount, 1);
      assert.equal((await backend.connections()).length, 1);
      held.open();
      assert.equal(await call, Status.OK);
      await until(() => channel.sessionCount === 0, "the session to be closed once idle");
    });
  } finally {
    held.open();
    channel.close();
    backend.close();
  }
});

Deno.test("H2Channel.ready() probes the backend without keeping an idle session open", async (t) => {
  await t.step("a session kept by probes alone is still closed after idleTimeoutMs", async () => {
    const backend = await idleBackend(600_000);
    const channel = new H2Channel(backend.address, { idleTimeoutMs: 500 });
    try {
      assert.equal(await channel.ready(5_000), true);
      const [first] = await backend.connections();
      assert.equal(channel.sessionCount, 1);
      assert.equal(await channel.ready(5_000), true, "a connected session answers at once");
      assert.deepEqual(await backend.connections(), [first], "and no new one is opened");
      // Probing on every turn, as a readiness check does every few seconds: the first session still goes.
      await until(async () => {
        assert.equal(await channel.ready(5_000), true);
        return !(await backend.connections()).includes(first);
      }, "the probed idle session to be closed");
    } finally {
      channel.close();
      backend.close();
    }
  });
  await t.step("a backend that refuses connections, or does not speak HTTP/2, is not ready", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) held.push(conn);
    })();
    const silent = new H2Channel(`127.0.0.1:${listener.addr.port}`);
    const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    free.close();
    const refused = new H2Channel(`127.0.0.1:${free.addr.port}`);
    try {
      assert.equal(await refused.ready(5_000), false);
      assert.equal(await silent.ready(100), false);
    } finally {
      refused.close();
      silent.close();
      listener.close();
      for (const conn of held) conn.close();
      await accepting.catch(() => {});
    }
  });
});

Deno.test("H2Channel refuses an idle timeout that is not a positive number", () => {
  for (const idleTimeoutMs of [0, -1, NaN]) {
    assert.throws(
      () => new H2Channel("127.0.0.1:1", { idleTimeoutMs }),
      (err) => err instanceof RangeError && /idleTimeoutMs must be a positive number/.test(err.message),
      String(idleTimeoutMs),
    );
  }
  new H2Channel("127.0.0.1:1", { idleTimeoutMs: Infinity }).close();
});
