import * as grpc from "@grpc/grpc-js";
import { resetSync } from "@logtape/logtape";
import assert from "node:assert/strict";
import { jsonLine, setupLogging } from "../src/util/log.ts";
import { bytes, startStack, unary } from "./_helpers.ts";

Deno.test("Logs are JSON lines: one per call at debug, none per call at info, backend errors at warn", async (t) => {
  const lines: Record<string, unknown>[] = [];
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        if (JSON.parse(call.request.toString()).fail) {
          callback({ code: grpc.status.INTERNAL, details: "boom" });
        } else callback(null, bytes({ ok: 1 }));
      },
    },
  });
  try {
    await t.step("debug: method, short key, role, status and duration of every call", async () => {
      setupLogging("debug", (line) => lines.push(JSON.parse(line)));
      await unary(stack.client, "/test.Test/Unary", { q: 1 });
      await unary(stack.client, "/test.Test/Unary", { q: 1 });
      const calls = lines.filter((l) => (l.properties as Record<string, unknown>)?.role !== undefined);
      assert.equal(calls.length, 2);
      const [first, second] = calls.map((l) => l.properties as Record<string, unknown>);
      assert.equal(calls[0].level, "DEBUG");
      assert.equal(first.method, "/test.Test/Unary");
      assert.equal(first.role, "leader");
      assert.equal(second.role, "cache");
      assert.equal(first.code, 0);
      assert.match(String(first.key), /^[0-9a-f]{12}$/);
      assert.equal(first.key, second.key);
      assert.equal(typeof first.durationMs, "number");
    });
    await t.step("info: no line per call, but a backend error is a warning", async () => {
      lines.length = 0;
      setupLogging("info", (line) => lines.push(JSON.parse(line)));
      for (let i = 0; i < 20; i++) await unary(stack.client, "/test.Test/Unary", { q: i });
      assert.equal(lines.length, 0, JSON.stringify(lines));
      await unary(stack.client, "/test.Test/Unary", { fail: true });
      assert.equal(lines.length, 1);
      assert.equal(lines[0].level, "WARN");
      // The message reads as plain text; the properties keep the values.
      assert.equal(lines[0].message, "backend call /test.Test/Unary failed: 13 boom");
      assert.deepEqual(lines[0].properties, { method: "/test.Test/Unary", code: 13, details: "boom" });
    });
  } finally {
    resetSync();
  }
});

Deno.test("jsonLine() writes the message as plain text and keeps the values typed in properties", () => {
  const line = jsonLine({
    category: ["collapser"],
    level: "info",
    message: ["collapser listening on ", "0.0.0.0", ":", 50052, ", rules ", ["/a/*"], ""],
    rawMessage: "collapser listening on {host}:{port}, rules {rules}",
    timestamp: Date.UTC(2026, 10, 29, 12, 0, 0),
    properties: { host: "0.0.0.0", port: 50052, rules: ["/a/*"] },
  });
  assert.ok(line.endsWith("\n"));
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": "2026-11-29T12:00:00.000Z",
    level: "INFO",
    message: 'collapser listening on 0.0.0.0:50052, rules ["/a/*"]',
    logger: "collapser",
    properties: { host: "0.0.0.0", port: 50052, rules: ["/a/*"] },
  });
});
