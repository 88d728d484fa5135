/**
 * The raw HTTP/2 client for collapsed calls, against a real grpc-js backend and against raw `node:http2`
 * servers that answer the way misbehaving or restarting backends do.
 */

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { H2Channel, plainAuthority } from "../src/backend/h2_channel.ts";
import { statusForHttp } from "../src/backend/h2_mapping.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import type { ResponseEvent, StatusEvent } from "../src/wire/response.ts";
import { frame, parse, startTestBackend, until } from "./_helpers.ts";

/** Runs one call to its status; returns every event. */
function callOnce(
  channel: H2Channel,
  method: string,
  message: Uint8Array,
  headers: http2.IncomingHttpHeaders = {},
): Promise<{ events: ResponseEvent[]; status: StatusEvent }> {
  return new Promise((resolve) => {
    const events: ResponseEvent[] = [];
    channel.call(method, message, headers, (event) => {
      events.push(event);
      if (event.type === "status") resolve({ events, status: event });
    });
  });
}

/** The message bytes of every `message` event (without the 5-byte prefix). */
function messages(events: ResponseEvent[]): Buffer[] {
  return events.flatMap((e) => e.type === "message" ? [Buffer.from(e.frame.subarray(5))] : []);
}

/** A raw HTTP/2 server on a loopback port; `handle` answers each stream. */
async function rawBackend(
  handle: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
) {
  const sessions = new Set<http2.ServerHttp2Session>();
  let sessionsOpened = 0;
  const server = http2.createServer();
  server.on("session", (session) => {
    sessionsOpened++;
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    // Answer once the request has been read, as a unary server does.
    stream.resume();
    stream.on("end", () => handle(stream as http2.ServerHttp2Stream, headers));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    authority: `127.0.0.1:${port}`,
    sessions,
    get sessionsOpened() {
      return sessionsOpened;
    },
    close: () => {
      for (const s of sessions) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

Deno.test("plainAuthority() accepts host:port and [v6]:port only; statusForHttp() follows the gRPC mapping", () => {
  assert.equal(plainAuthority("127.0.0.1:50051"), "127.0.0.1:50051");
  assert.equal(plainAuthority("backend.svc.cluster.local:8080"), "backend.svc.cluster.local:8080");
  assert.equal(plainAuthority("[::1]:50051"), "[::1]:50051");
  for (const other of ["dns:///backend:50051", "unix:/tmp/sock", "ipv4:10.0.0.1:1,10.0.0.2:1", "backend"]) {
    assert.equal(plainAuthority(other), undefined, other);
  }
  assert.equal(statusForHttp(400), Status.INTERNAL);
  assert.equal(statusForHttp(401), Status.UNAUTHENTICATED);
  assert.equal(statusForHttp(403), Status.PERMISSION_DENIED);
  assert.equal(statusForHttp(404), Status.UNIMPLEMENTED);
  for (const s of [429, 502, 503, 504]) assert.equal(statusForHttp(s), Status.UNAVAILABLE);
  assert.equal(statusForHttp(500), Status.UNKNOWN);
});

Deno.test("H2Channel carries the caller's metadata as sent and reports headers, message and status", async () => {
  const backend = await startTestBackend();
  const channel = new H2Channel(backend.address);
  try {
    const binary = Buffer.from([0, 1, 2, 250]).toString("base64");
    const { events, status } = await callOnce(channel, "/test.Test/Unary", frame({ q: 1 }).subarray(5), {
      ":path": "/ignored",
      authorization: "Bearer a",
      "x-trace-bin": binary,
      "grpc-timeout": "1S",
      te: "trailers",
    });
    assert.equal(status.code, Status.OK);
    assert.equal(events[0].type, "headers");
    assert.deepEqual(messages(events).map((m) => parse(m)), [{ echo: { q: 1 }, auth: "Bearer a", n: 1 }]);
    const received = backend.metadata[0];
    assert.deepEqual(received.get("x-trace-bin"), [Buffer.from([0, 1, 2, 250])]);
    assert.equal(received.get("grpc-timeout").length, 0, "per-hop headers are not forwarded");
  } finally {
    channel.close();
    backend.close();
  }
});

Deno.test("H2Channel maps what a misbehaving backend sends to gRPC statuses", async (t) => {
  const backend = await rawBackend((stream, headers) => {
    const grpcOk = { ":status": 200, "content-type": "application/grpc" };
    switch (headers[":path"]) {
      case "/http503":
        return stream.respond({ ":status": 503 }, { endStream: true });
      case "/refused":
        return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      case "/trailers-only":
        return stream.respond(
          { ...grpcOk, "grpc-status": "5", "grpc-message": "n%C3%B6pe 100%25", "x-why": "gone" },
          { endStream: true },
        );
      case "/gzip": {
        const packed = gzipSync(Buffer.from('{"packed":true}'));
        const body = Buffer.alloc(5 + packed.length);
        body[0] = 1;
        body.writeUInt32BE(packed.length, 1);
        packed.copy(body, 5);
        stream.respond({ ...grpcOk, "grpc-encoding": "gzip" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        return stream.end(body);
      }
      case "/no-status":
        stream.respond(grpcOk);
        return stream.end();
      case "/huge":
        stream.respond(grpcOk, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        return stream.end(Buffer.concat([Buffer.from([0, 0, 0, 4, 0]), Buffer.alloc(1024)]));
      case "/http429-with-status":
        return stream.respond(
          { ":status": 429, "grpc-status": "8", "grpc-message": "slow down" },
          { endStream: true },
        );
      case "/empty-status":
        stream.respond(grpcOk, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "" }));
        return stream.end();
      case "/truncated":
        stream.respond(grpcOk, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        return stream.end(Buffer.from([0, 0, 0, 0, 10, 1, 2, 3]));
      case "/bad-status":
        stream.respond(grpcOk, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "banana" }));
        return stream.end();
    }
  });
  const channel = new H2Channel(backend.authority, { maxMessageBytes: 100 });
  const cases: [path: string, code: number, details?: RegExp][] = [
    ["/http503", Status.UNAVAILABLE, /503/],
    ["/refused", Status.UNAVAILABLE],
    ["/no-status", Status.UNKNOWN],
    ["/huge", Status.RESOURCE_EXHAUSTED],
    ["/bad-status", Status.UNKNOWN, /banana/],
    ["/http429-with-status", Status.RESOURCE_EXHAUSTED, /slow down/],
    ["/empty-status", Status.UNKNOWN],
    ["/truncated", Status.INTERNAL, /inside a message/],
  ];
  try {
    for (const [path, code, details] of cases) {
      await t.step(`${path} → ${code}`, async () => {
        const { status } = await callOnce(channel, path, new Uint8Array(3));
        assert.equal(status.code, code);
        if (details) assert.match(status.details, details);
      });
    }
    await t.step("trailers-only: status, decoded message and metadata, no headers event", async () => {
      const { events, status } = await callOnce(channel, "/trailers-only", new Uint8Array(0));
      assert.deepEqual(events.map((e) => e.type), ["status"]);
      assert.equal(status.code, Status.NOT_FOUND);
      assert.equal(status.details, "nöpe 100%");
      assert.equal(status.trailers["x-why"], "gone");
      assert.equal(status.trailers["grpc-message"], "n%C3%B6pe 100%25");
    });
    await t.step(
      "a gzip-compressed answer is handed on decompressed (with the default, unlimited size)",
      async () => {
        const unlimited = new H2Channel(backend.authority);
        const { events, status } = await callOnce(unlimited, "/gzip", new Uint8Array(0)).finally(() =>
          unlimited.close()
        );
        assert.equal(status.code, Status.OK);
        assert.deepEqual(messages(events).map((m) => parse(m)), [{ packed: true }]);
        const first = events.find((e) => e.type === "message")!;
        assert.equal(first.type === "message" && first.frame[0], 0, "re-framed uncompressed");
      },
    );
  } finally {
    channel.close();
    await backend.close();
  }
});

Deno.test("H2Channel opens a new session when the backend drops or retires the old one", async () => {
  const held = new Set<http2.ServerHttp2Stream>();
  const answer = (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame({ ok: true }));
  };
  const backend = await rawBackend((stream, headers) => {
    if (headers[":path"] === "/held") held.add(stream);
    else answer(stream);
  });
  const channel = new H2Channel(backend.authority);
  try {
    assert.equal((await callOnce(channel, "/a", new Uint8Array(0))).status.code, Status.OK);
    assert.equal(backend.sessionsOpened, 1);
    // A graceful restart with a call still in flight: GOAWAY, and the old connection stays open for it.
    const inFlight = callOnce(channel, "/held", new Uint8Array(0));
    await until(() => held.size === 1, "the held call to arrive");
    for (const s of backend.sessions) s.close();
    assert.equal((await callOnce(channel, "/b", new Uint8Array(0))).status.code, Status.OK);
    assert.equal(backend.sessionsOpened, 2, "a call after GOAWAY goes to a new session");
    for (const stream of held) answer(stream);
    assert.equal((await inFlight).status.code, Status.OK, "the call in flight finished on the old one");
    // An abrupt one: the connection is reset.
    for (const s of backend.sessions) s.destroy();
    await until(() => backend.sessions.size === 0, "the sessions to close");
    assert.equal((await callOnce(channel, "/c", new Uint8Array(0))).status.code, Status.OK);
    assert.equal(backend.sessionsOpened, 3);
  } finally {
    channel.close();
    await backend.close();
  }
});

Deno.test("H2Channel: an unreachable backend, or one that stops answering pings, is UNAVAILABLE", async (t) => {
  await t.step("connection refused", async () => {
    const gone = await rawBackend(() => {});
    await gone.close();
    const channel = new H2Channel(gone.authority);
    try {
      const { status } = await callOnce(channel, "/x", new Uint8Array(0));
      assert.equal(status.code, Status.UNAVAILABLE);
    } finally {
      channel.close();
    }
  });
  await t.step("a peer that accepts TCP but never speaks HTTP/2", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) held.push(conn);
    })();
    const channel = new H2Channel(`127.0.0.1:${listener.addr.port}`, {
      keepaliveMs: 20,
      keepaliveTimeoutMs: 20,
    });
    try {
      const { status } = await callOnce(channel, "/x", new Uint8Array(0));
      assert.equal(status.code, Status.UNAVAILABLE);
      assert.match(status.details, /keepalive/);
    } finally {
      channel.close();
      listener.close();
      for (const conn of held) conn.close();
      await accepting.catch(() => {});
    }
  });
});

Deno.test("H2Channel: after cancel() nothing is reported and the backend sees the stream reset", async () => {
  let reset: () => void;
  const wasReset = new Promise<void>((resolve) => reset = resolve);
  const backend = await rawBackend((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.write(frame({ first: true }));
    stream.on("close", () => {
      if (stream.rstCode === http2.constants.NGHTTP2_CANCEL) reset();
    });
  });
  const channel = new H2Channel(backend.authority);
  try {
    const events: ResponseEvent[] = [];
    let firstMessage: () => void;
    const gotMessage = new Promise<void>((resolve) => firstMessage = resolve);
    const call = channel.call("/slow", new Uint8Array(0), {}, (event) => {
      events.push(event);
      if (event.type === "message") firstMessage();
    });
    await gotMessage;
    call.cancel();
    await wasReset;
    assert.deepEqual(events.map((e) => e.type), ["headers", "message"]);
  } finally {
    channel.close();
    await backend.close();
  }
});

Deno.test("H2Channel: a refused stream is sent again once, on the same healthy session", async () => {
  let refusals = 0;
  const backend = await rawBackend((stream, headers) => {
    if (headers[":path"] === "/refuse-once" && refusals++ === 0) {
      return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame({ ok: true }));
  });
  const channel = new H2Channel(backend.authority);
  try {
    const { events, status } = await callOnce(channel, "/refuse-once", new Uint8Array(0));
    assert.equal(status.code, Status.OK);
    assert.equal(refusals, 2, "refused once, then answered");
    assert.deepEqual(messages(events).map((m) => parse(m)), [{ ok: true }]);
    assert.equal(backend.sessionsOpened, 1, "one refused stream does not retire the connection");
  } finally {
    channel.close();
    await backend.close();
  }
});

Deno.test("H2Channel: a connection lost under a call, or close(), ends it UNAVAILABLE", async (t) => {
  const held: http2.ServerHttp2Stream[] = [];
  const backend = await rawBackend((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    held.push(stream);
  });
  try {
    await t.step("the backend drops the connection", async () => {
      const channel = new H2Channel(backend.authority);
      try {
        const call = callOnce(channel, "/held", new Uint8Array(0));
        await until(() => held.length === 1, "the call to arrive");
        for (const s of backend.sessions) s.destroy();
        const { status } = await call;
        assert.equal(status.code, Status.UNAVAILABLE);
      } finally {
        channel.close();
      }
    });
    await t.step("the proxy closes the channel", async () => {
      const channel = new H2Channel(backend.authority);
      const call = callOnce(channel, "/held", new Uint8Array(0));
      await until(() => held.length === 2, "the call to arrive");
      channel.close();
      assert.equal((await call).status.code, Status.UNAVAILABLE);
      assert.equal((await callOnce(channel, "/after", new Uint8Array(0))).status.code, Status.UNAVAILABLE);
    });
  } finally {
    await backend.close();
  }
});

Deno.test("H2Channel pings the backend only while calls are open", async () => {
  let pings = 0;
  const held: http2.ServerHttp2Stream[] = [];
  const backend = await rawBackend((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    held.push(stream);
  });
  const channel = new H2Channel(backend.authority, { keepaliveMs: 5, keepaliveTimeoutMs: 5_000 });
  try {
    const call = callOnce(channel, "/held", new Uint8Array(0));
    await until(() => backend.sessions.size === 1, "the session");
    for (const s of backend.sessions) s.on("ping", () => pings++);
    await until(() => pings >= 2, "pings while a call is open");
    held[0].end(frame({ ok: true }));
    assert.equal((await call).status.code, Status.OK);
    const after = pings;
    // Forty keepalive intervals with no call open: an idle connection gets no pings (grpc-go's default
    // policy answers them with GOAWAY too_many_pings).
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(pings <= after + 1, `idle pings: ${pings - after}`); // one may have been on the wire
  } finally {
    channel.close();
    await backend.close();
  }
});

Deno.test("H2Channel: a sink that cancels on a message gets no more, even from the same chunk", async () => {
  let serverClosed = false;
  const backend = await rawBackend((stream) => {
    stream.on("close", () => serverClosed = true);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(Buffer.concat([frame({ n: 1 }), frame({ n: 2 }), frame({ n: 3 })]));
  });
  const channel = new H2Channel(backend.authority);
  try {
    const events: ResponseEvent[] = [];
    const { promise: first, resolve } = Promise.withResolvers<void>();
    const call = channel.call("/three", new Uint8Array(0), {}, (event) => {
      events.push(event);
      if (event.type === "message") {
        call.cancel();
        resolve();
      }
    });
    await first;
    // Let the rest of the response arrive and be dropped.
    await until(() => serverClosed, "the stream to end");
    assert.deepEqual(events.map((e) => e.type), ["headers", "message"]);
  } finally {
    channel.close();
    await backend.close();
  }
});
