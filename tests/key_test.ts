import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { collapseKey } from "../src/key.ts";

Deno.test("collapseKey() separates every input that differs", () => {
  const message = Buffer.from("request");
  const base = collapseKey("/a.B/C", ["Bearer x"], message);
  assert.match(base, /^[0-9a-f]{64}$/);
  assert.equal(collapseKey("/a.B/C", ["Bearer x"], Buffer.from("request")), base, "deterministic");
  const different = [
    collapseKey("/a.B/D", ["Bearer x"], message),
    collapseKey("/a.B/C", ["Bearer y"], message),
    collapseKey("/a.B/C", [undefined], message),
    collapseKey("/a.B/C", [""], message),
    collapseKey("/a.B/C", ["Bearer x"], Buffer.from("request2")),
    collapseKey("/a.B/C", ["Bearer x", undefined], message),
    // Field boundaries cannot be shifted to make a collision.
    collapseKey("/a.B/CBearer x", [""], message),
  ];
  assert.equal(new Set([base, ...different]).size, different.length + 1);
});

Deno.test("collapseKey() is SHA-256 over the documented length-prefixed layout, for any size", async (t) => {
  // An independent reference: build the bytes with Buffer.concat, hash with Web Crypto.
  const reference = async (method: string, values: (string | undefined)[], message: Uint8Array) => {
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    const field = (bytes: Uint8Array) => [u32(bytes.byteLength), bytes];
    const parts = [
      ...field(Buffer.from(method)),
      ...values.flatMap((v) => v === undefined ? [u32(0xffffffff)] : field(Buffer.from(v))),
      ...field(message),
    ];
    const digest = await crypto.subtle.digest("SHA-256", Buffer.concat(parts));
    return Buffer.from(digest).toString("hex");
  };
  const cases: [string, string, (string | undefined)[], Uint8Array][] = [
    ["small", "/a.B/C", ["Bearer x"], Buffer.from("request")],
    ["empty message, absent header", "/a.B/C", [undefined], new Uint8Array()],
    ["non-ASCII values", "/ünï.Cödé/Ω", ["Bearer 🔑", "tenant-ß"], Buffer.from([0, 255, 1])],
    ["a message larger than the scratch buffer", "/a.B/C", ["t"], Buffer.alloc(100_000, 7)],
  ];
  for (const [name, method, values, message] of cases) {
    await t.step(name, async () => {
      assert.equal(collapseKey(method, values, message), await reference(method, values, message));
    });
  }
});
