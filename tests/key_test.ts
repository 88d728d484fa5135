import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IncomingHttpHeaders } from "node:http2";
import { collapseKey, headerName, KeyFilter } from "../src/policy/key.ts";

/** Headers as node:http2 hands them over: pseudo-headers, transport headers, then the caller's metadata. */
function request(metadata: Record<string, string> = {}): IncomingHttpHeaders {
  return {
    ":method": "POST",
    ":path": "/a.B/C",
    ":scheme": "http",
    ":authority": "localhost:50052",
    "content-type": "application/grpc",
    te: "trailers",
    "user-agent": "grpc-node-js/1.14.7",
    "grpc-accept-encoding": "identity,deflate,gzip",
    ...metadata,
  };
}

Deno.test("collapseKey() separates every input that differs, metadata included", () => {
  const message = Buffer.from("request");
  const base = collapseKey("/a.B/C", request({ authorization: "Bearer x" }), message);
  assert.match(base, /^[0-9a-f]{64}$/);
  assert.equal(collapseKey("/a.B/C", request({ authorization: "Bearer x" }), Buffer.from("request")), base);
  const different = [
    collapseKey("/a.B/D", request({ authorization: "Bearer x" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer y" }), message),
    collapseKey("/a.B/C", request(), message),
    collapseKey("/a.B/C", request({ authorization: "" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer x" }), Buffer.from("request2")),
    collapseKey("/a.B/C", request({ authorization: "Bearer x", "x-locale": "de" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer x", "x-locale": "fr" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer x", "x-grpc-test-echo-initial": "v" }), message),
    // Field boundaries cannot be shifted to make a collision.
    collapseKey("/a.B/CBearer x", request({ authorization: "" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer x", "x-a": "b" }), message),
    collapseKey("/a.B/C", request({ authorization: "Bearer x", "x-ab": "" }), message),
  ];
  assert.equal(new Set([base, ...different]).size, different.length + 1);
});

Deno.test("collapseKey() leaves out transport, trace and pseudo headers, and what the operator ignores", async (t) => {
  const message = Buffer.from("m");
  const base = collapseKey("/a.B/C", request({ "x-tenant": "t1" }), message);
  await t.step("per-call transport and trace headers do not separate callers", () => {
    const perCall = request({
      "x-tenant": "t1",
      "grpc-timeout": "5S",
      "grpc-encoding": "gzip",
      "user-agent": "another-client/2",
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      tracestate: "congo=t61rcWkgMzE",
      "grpc-trace-bin": "AAE=",
      b3: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
      "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    });
    perCall[":authority"] = "another-name:50052";
    assert.equal(collapseKey("/a.B/C", perCall, message), base);
  });
  await t.step("the order metadata arrives in does not matter", () => {
    const a = collapseKey("/a.B/C", request({ "x-one": "1", "x-two": "2" }), message);
    const b = collapseKey("/a.B/C", request({ "x-two": "2", "x-one": "1" }), message);
    assert.equal(a, b);
  });
  await t.step("-bin values are keyed as bytes: padded and unpadded base64 share", () => {
    const padded = collapseKey("/a.B/C", request({ "x-id-bin": "AAEC/w==" }), message);
    const unpadded = collapseKey("/a.B/C", request({ "x-id-bin": "AAEC/w" }), message);
    const other = collapseKey("/a.B/C", request({ "x-id-bin": "AAEC/g" }), message);
    assert.equal(padded, unpadded);
    assert.notEqual(padded, other);
  });
  await t.step("--ignore-headers names and globs are left out; authorization and --key-headers never", () => {
    const filter = new KeyFilter({
      ignoreHeaders: ["x-request-id", "x-debug-*"],
      keyHeaders: ["user-agent"],
    });
    const key = (metadata: Record<string, string>) =>
      collapseKey("/a.B/C", request({ "x-tenant": "t1", ...metadata }), message, filter);
    const plain = key({});
    assert.equal(key({ "x-request-id": "r1" }), plain);
    assert.equal(key({ "x-debug-level": "3", "x-debug-": "" }), plain);
    assert.notEqual(key({ "x-debugger": "1" }), plain, "a glob matches whole names only");
    const ua = request({ "x-tenant": "t1" });
    ua["user-agent"] = "other";
    assert.notEqual(
      collapseKey("/a.B/C", ua, message, filter),
      plain,
      "--key-headers wins over the defaults",
    );
    const everything = new KeyFilter({ ignoreHeaders: ["*"] });
    assert.equal(everything.keyed("x-tenant"), false);
    assert.equal(everything.keyed("authorization"), true, "credentials are always keyed");
  });
});

Deno.test("collapseKey() is SHA-256 over the documented length-prefixed layout, for any size", async (t) => {
  // An independent reference: build the bytes with Buffer.concat, hash with Web Crypto.
  const reference = async (method: string, entries: [string, Uint8Array][], message: Uint8Array) => {
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    const field = (bytes: Uint8Array) => [u32(bytes.byteLength), bytes];
    const sorted = [...entries].sort(([a], [b]) => a < b ? -1 : 1);
    const parts = [
      ...field(Buffer.from(method)),
      u32(sorted.length),
      ...sorted.flatMap(([name, value]) => [...field(Buffer.from(name)), ...field(value)]),
      ...field(message),
    ];
    const digest = await crypto.subtle.digest("SHA-256", Buffer.concat(parts));
    return Buffer.from(digest).toString("hex");
  };
  const binValue = (...parts: Buffer[]) => Buffer.concat(parts.flatMap((p) => [u32be(p.length), p]));
  const cases: [string, string, Record<string, string>, [string, Uint8Array][], Uint8Array][] = [
    [
      "small",
      "/a.B/C",
      { authorization: "Bearer x" },
      [["authorization", Buffer.from("Bearer x")]],
      Buffer.from("r"),
    ],
    ["empty message, no metadata", "/a.B/C", {}, [], new Uint8Array()],
    [
      "non-ASCII values, two entries out of order",
      "/ünï.Cödé/Ω",
      { "x-tenant": "tenant-ß", authorization: "Bearer 🔑" },
      [["x-tenant", Buffer.from("tenant-ß")], ["authorization", Buffer.from("Bearer 🔑")]],
      Buffer.from([0, 255, 1]),
    ],
    [
      "a repeated -bin entry is its values' bytes, each length-prefixed",
      "/a.B/C",
      { "x-id-bin": "AAE=, /w==" },
      [["x-id-bin", binValue(Buffer.from([0, 1]), Buffer.from([255]))]],
      Buffer.from("m"),
    ],
    [
      "a message larger than the scratch buffer",
      "/a.B/C",
      { "x-t": "t" },
      [["x-t", Buffer.from("t")]],
      Buffer.alloc(100_000, 7),
    ],
  ];
  for (const [name, method, metadata, entries, message] of cases) {
    await t.step(name, async () => {
      assert.equal(
        collapseKey(method, request(metadata), message),
        await reference(method, entries, message),
      );
    });
  }
});

Deno.test("headerName() accepts metadata names (and globs where allowed), lower-cased, and nothing else", () => {
  assert.equal(headerName(" X-Tenant-ID ", { glob: false }), "x-tenant-id");
  assert.equal(headerName("x-request-*", { glob: true }), "x-request-*");
  for (const bad of ["x-request-*", ":authority", "x tenant", "", "x/y"]) {
    assert.throws(() => headerName(bad, { glob: false }), /invalid metadata name/, bad);
  }
});

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
