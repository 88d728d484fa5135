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
