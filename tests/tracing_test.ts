import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { formatTraceparent, parseTraceparent } from "../src/wire/tracing.ts";
import {
  bytes,
  gate,
  metadata,
  newClient,
  startCollapserProcess,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  links?: { traceId: string; spanId: string }[];
  attributes?: { key: string; value: Record<string, unknown> }[];
}

/** A minimal OTLP/HTTP JSON receiver: collects every span posted to /v1/traces. */
function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const body = await request.json();
    if (new URL(request.url).pathname === "/v1/traces") {
      for (const resource of body.resourceSpans ?? []) {
        for (const scope of resource.scopeSpans ?? []) spans.push(...scope.spans);
      }
    }
    return Response.json({});
  });
  return { spans, port: server.addr.port, close: () => server.shutdown() };
}

Deno.test("parseTraceparent() reads W3C traceparent and formatTraceparent() writes it back", () => {
  const value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const parsed = parseTraceparent(value);
  assert.deepEqual(parsed, {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
    isRemote: true,
  });
  assert.equal(formatTraceparent(parsed!), value);
  for (const bad of [undefined, "", "00-xyz", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]) {
    assert.equal(parseTraceparent(bad), undefined, String(bad));
  }
  assert.equal(parseTraceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01"), undefined);
});

Deno.test("With OTEL_DENO=true the proxy exports a span per backend call; followers and cache hits link to it", async () => {
  const receiver = otlpReceiver();
  const release = gate();
  const backend = await startTestBackend({
    Unary(_call, callback) {
      release.promise.then(() => callback(null, bytes({ ok: true })));
    },
  });
  const leaderTrace = "00-11111111111111111111111111111111-1111111111111111-01";
  const followerTrace = "00-22222222222222222222222222222222-2222222222222222-01";
  const cacheTrace = "00-33333333333333333333333333333333-3333333333333333-01";
  const proc = await startCollapserProcess(["--cache-ttl", "1m"], {
    BACKEND_ADDRESS: backend.address,
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "collapser-test",
    OTEL_DENO_CONSOLE: "ignore",
  });
  const client = newClient(proc.port);
  try {
    const leader = unary(client, "/test.Test/Unary", { q: 1 }, {
      metadata: metadata({ traceparent: leaderTrace }),
    });
    await until(() => backend.calls.Unary === 1, "the backend call");
    const follower = unary(client, "/test.Test/Unary", { q: 1 }, {
      metadata: metadata({ traceparent: followerTrace }),
    });
    // The follower has joined once the admin endpoint says two callers wait.
    await until(async () => {
      const text = await (await fetch(`http://127.0.0.1:${proc.metricsPort}/metrics`)).text();
      return /^collapser_waiting_callers 2$/m.test(text);
    }, "the follower to join");
    release.open();
    assert.equal((await leader).status.code, grpc.status.OK);
    assert.equal((await follower).status.code, grpc.status.OK);
    const hit = await unary(client, "/test.Test/Unary", { q: 1 }, {
      metadata: metadata({ traceparent: cacheTrace }),
    });
    assert.equal(hit.status.code, grpc.status.OK);
    assert.equal(backend.calls.Unary, 1);
  } finally {
    client.close();
    await proc.stop(); // Deno flushes spans on exit
    backend.close();
  }
  try {
    const backendSpan = receiver.spans.find((s) => s.name === "collapser.backend /test.Test/Unary");
    assert.ok(backendSpan, `a backend-call span among ${receiver.spans.map((s) => s.name)}`);
    assert.equal(backendSpan.traceId, "11111111111111111111111111111111", "in the leader's trace");
    assert.equal(backendSpan.parentSpanId, "1111111111111111", "child of the leader's span");

    // The backend's parent is the proxy's span, or (Deno instruments node:http2 and injects its own
    // traceparent) a child of it.
    const seen = parseTraceparent(String(backend.metadata[0].get("traceparent")[0]));
    assert.equal(seen?.traceId, backendSpan.traceId);
    const parent = receiver.spans.find((s) => s.spanId === seen?.spanId);
    assert.ok(
      seen?.spanId === backendSpan.spanId || parent?.parentSpanId === backendSpan.spanId,
      `the backend's parent span ${seen?.spanId} descends from the backend-call span`,
    );

    for (const [role, traceId] of [["follower", "2".repeat(32)], ["cache", "3".repeat(32)]]) {
      const span = receiver.spans.find((s) => s.name === `collapser.${role} /test.Test/Unary`);
      assert.ok(span, `a ${role} span`);
      assert.equal(span.traceId, traceId, `${role} span in its caller's trace`);
      assert.deepEqual(
        span.links?.map((l) => [l.traceId, l.spanId]),
        [[backendSpan.traceId, backendSpan.spanId]],
        `${role} span links to the backend call`,
      );
    }
  } finally {
    await receiver.close();
  }
});
