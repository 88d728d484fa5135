import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { MethodLabels, Metrics } from "../src/admin/metrics.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import { Proxy } from "../src/server/proxy.ts";
import { bytes, gate, identity, newClient, startTestBackend, unary, until } from "./_helpers.ts";

/** The value of one sample line, e.g. `collapser_requests_total{method="/a",outcome="leader",code="OK"}`. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

async function withMetricsStack(
  fn: (s: { proxy: Proxy; metrics: Metrics; client: grpc.Client; release: () => void }) => Promise<void>,
) {
  const hold = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      const request = JSON.parse(call.request.toString());
      if (request.fail) return callback({ code: grpc.status.FAILED_PRECONDITION, details: "no" });
      hold.promise.then(() => callback(null, bytes({ ok: true })));
    },
  });
  const metrics = new Metrics({ maxMethodLabels: 3 });
  // A long TTL, so the repeat below is a cache hit however slow the machine.
  const proxy = await Proxy.start({
    backend: backend.address,
    host: "127.0.0.1",
    port: 0,
    observer: metrics,
    cacheTtlMs: 60_000,
  });
  metrics.attach({ proxyStats: () => proxy.stats(), collapserStats: () => proxy.collapser.stats() });
  const client = newClient(proxy.port);
  try {
    await fn({ proxy, metrics, client, release: hold.open });
  } finally {
    client.close();
    await proxy.close();
    backend.close();
  }
}

Deno.test("Metrics count calls by outcome and status, backend calls, cache and gauges", async () => {
  await withMetricsStack(async ({ proxy, metrics, client, release }) => {
    const U = "/test.Test/Unary";
    const herd = Array.from({ length: 5 }, () => unary(client, U, { q: 1 }));
    await until(() => proxy.collapser.stats().waiting === 5, "5 waiting");
    const during = await metrics.text();
    assert.equal(sample(during, "collapser_waiting_callers"), 5);
    assert.equal(sample(during, "collapser_inflight_requests"), 1);
    release();
    await Promise.all(herd);
    await unary(client, U, { q: 1 }); // cache hit
    await unary(client, U, { fail: true }); // error, its own key
    await unary(client, "/no.Such/Thing", {}); // backend UNIMPLEMENTED
    const chat = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
    chat.write(bytes({ a: 1 }));
    chat.write(bytes({ a: 2 }));
    chat.end();
    chat.on("data", () => {});
    await new Promise((resolve) => chat.on("status", resolve));

    const text = await metrics.text();
    const requests = (method: string, outcome: string, code: string) =>
      sample(text, `collapser_requests_total{method="${method}",outcome="${outcome}",code="${code}"}`);
    assert.equal(requests(U, "leader", "OK"), 1);
    assert.equal(requests(U, "follower", "OK"), 4);
    assert.equal(requests(U, "cache", "OK"), 1);
    assert.equal(requests(U, "leader", "FAILED_PRECONDITION"), 1);
    assert.equal(requests("_unknown", "leader", "UNIMPLEMENTED"), 1);
    assert.equal(requests("/test.Test/Bidi", "passthrough", "OK"), 1);
    assert.equal(sample(text, `collapser_backend_calls_total{method="${U}",code="OK"}`), 1);
    assert.equal(sample(text, `collapser_backend_calls_total{method="${U}",code="FAILED_PRECONDITION"}`), 1);
    assert.equal(sample(text, `collapser_backend_latency_seconds_count{method="${U}"}`), 2);
    assert.equal(sample(text, `collapser_request_duration_seconds_count{outcome="follower"}`), 4);
    assert.equal(sample(text, "collapser_cache_hits_total"), 1);
    assert.equal(sample(text, "collapser_cache_misses_total"), 7); // 5 herd + 1 error + 1 unknown
    assert.equal(sample(text, "collapser_cache_entries"), 1);
    assert.ok(sample(text, "collapser_cache_bytes")! > 0);
    assert.equal(sample(text, "collapser_inflight_requests"), 0);
    assert.equal(sample(text, "collapser_waiting_callers"), 0);
    assert.equal(sample(text, "collapser_fanout_queued_events"), 0);
    // (3 leaders + 4 followers + 1 hit) / 3 leaders
    assert.equal(sample(text, "collapser_collapse_ratio"), 8 / 3);
    assert.ok(sample(text, "process_resident_memory_bytes")! > 0, "process metrics are exported");
  });
});

Deno.test("MethodLabels labels only methods the backend has shown it serves, up to the limit", () => {
  const labels = new MethodLabels(2);
  assert.equal(labels.label("/a/A"), "_unknown", "not yet answered");
  labels.learn("/a/A", Status.OK);
  assert.equal(labels.label("/a/A"), "/a/A");
  // Statuses that do not show the backend serves the method take no slot.
  for (const code of [Status.UNIMPLEMENTED, Status.UNAVAILABLE, Status.CANCELLED, Status.DEADLINE_EXCEEDED]) {
    labels.learn("/spray/1", code);
  }
  assert.equal(labels.label("/spray/1"), "_unknown");
  labels.learn("/b/B", Status.NOT_FOUND); // an application error is an answer
  assert.equal(labels.label("/b/B"), "/b/B");
  labels.learn("/c/C", Status.OK);
  assert.equal(labels.label("/c/C"), "_other", "past the limit");
  assert.equal(labels.label("/spray/2"), "_other");
  assert.equal(labels.label("/a/A"), "/a/A", "a known method keeps its label");
});

needs("promtool").test({
  name: "promtool check metrics reports nothing on the collapser_ families",
  fn: promtoolCheckMetrics,
});

async function promtoolCheckMetrics(t: Deno.TestContext) {
  let text = "";
  await withMetricsStack(async ({ metrics, client, release }) => {
    release();
    await unary(client, "/test.Test/Unary", { q: 1 });
    await unary(client, "/test.Test/Unary", { q: 1 });
    text = await metrics.text();
  });
  await t.step("promtool's findings name no collapser_ metric", async () => {
    const child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const output = await child.output();
    const findings = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    const ours = findings.split("\n").filter((line) => line.includes("collapser_"));
    assert.deepEqual(ours, []);
    assert.ok(text.includes("collapser_requests_total"), "the text checked holds our families");
  });
}

async function dashboardQueries(): Promise<string[]> {
  const dashboard = JSON.parse(
    await Deno.readTextFile(new URL("../dashboards/collapser.json", import.meta.url)),
  );
  return dashboard.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((t) => t.expr));
}

Deno.test("The Grafana dashboard queries only metric families the proxy exports", async () => {
  const exprs = await dashboardQueries();
  assert.ok(exprs.length >= 10);
  const exported = await new Metrics().text();
  const families = new Set(
    [...exported.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
      type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name]
    ),
  );
  for (const expr of exprs) {
    for (const [name] of expr.matchAll(/\b(?:collapser|process)_[a-z_]+/g)) {
      assert.ok(families.has(name), `${name} (in ${expr}) is exported`);
    }
  }
});

needs("promtool").test({
  name: "The Grafana dashboard's queries are valid PromQL (promtool check rules)",
  async fn() {
    const exprs = await dashboardQueries();
    const dir = await Deno.makeTempDir();
    try {
      const rules = exprs.map((expr, i) =>
        `      - record: dashboard:query_${i}\n        expr: ${
          JSON.stringify(expr.replaceAll("$__rate_interval", "5m").replaceAll("$job", ".*"))
        }`
      );
      await Deno.writeTextFile(
        `${dir}/rules.yml`,
        `groups:\n  - name: dashboard\n    rules:\n${rules.join("\n")}\n`,
      );
      const checked = await new Deno.Command("promtool", { args: ["check", "rules", `${dir}/rules.yml`] })
        .output();
      const output = new TextDecoder().decode(checked.stdout) + new TextDecoder().decode(checked.stderr);
      assert.ok(checked.success, output);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
