/**
 * `POST /purge` and the admin token, on real parts: the admin listener in front of a real proxy and
 * backend, called with fetch; the token's handling through the real process (logs, /status.json, the page).
 * Purging across a fleet on a real Redis: tests/http_cache_fleet_test.ts.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { serveAdmin } from "../src/admin/admin.ts";
import { Metrics } from "../src/admin/metrics.ts";
import { StatusBoard } from "../src/admin/status.ts";
import { Policy } from "../src/policy/policy.ts";
import { Proxy } from "../src/server/proxy.ts";
import { Secret } from "../src/util/secret.ts";
import {
  bytes,
  gate,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
  type UnaryResult,
  until,
} from "./_helpers.ts";

const TOKEN = "s3cret-admin-token-0123456789";

/** A backend whose answers are numbered and tagged as each request asks, held while `hold` is pending. */
async function taggingBackend(hold?: () => Promise<void>) {
  let n = 0;
  return await startTestBackend({
    async Unary(call, callback) {
      const ask = parse(call.request) as { item: unknown; sk?: string };
      const answer = ++n;
      await hold?.();
      const headers = new grpc.Metadata();
      if (ask.sk) headers.set("surrogate-key", ask.sk);
      call.sendMetadata(headers);
      callback(null, bytes({ item: ask.item, n: answer }));
    },
  });
}

/** A proxy (answers kept 60 s) with its admin listener; `token` undefined = purging off. */
async function adminStack(token: string | undefined, hold?: () => Promise<void>) {
  const backend = await taggingBackend(hold);
  const proxy = await Proxy.start({
    backend: backend.address,
    host: "127.0.0.1",
    port: 0,
    policy: new Policy({ ttlMs: 60_000 }),
  });
  const status = new StatusBoard({ hotKeys: 0 });
  const admin = await serveAdmin(proxy, {
    metrics: new Metrics({ defaultMetrics: false }),
    status,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    adminToken: token === undefined ? undefined : new Secret(token),
  });
  const client = newClient(proxy.port);
  const base = `http://127.0.0.1:${admin.addr.port}`;
  return {
    backend,
    proxy,
    status,
    base,
    call: (item: unknown, sk?: string, method = "/test.Test/Unary") => unary(client, method, { item, sk }),
    purge: async (body: string, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) => {
      const response = await fetch(`${base}/purge`, { method: "POST", body, headers });
      return { status: response.status, headers: response.headers, body: await response.text() };
    },
    async [Symbol.asyncDispose]() {
      client.close();
      await admin.shutdown();
      status[Symbol.dispose]();
      await proxy.close();
      backend.close();
    },
  };
}

const n = (r: UnaryResult) => parse(r.response as Buffer).n as number;
const keyOf = (r: UnaryResult) =>
  /key="([0-9a-f]{12})"/.exec(String(r.status.metadata.get("cache-status")[0]))![1];

Deno.test("POST /purge: off without a token (404); 401 without credentials, 403 with a wrong token", async (t) => {
  await t.step("no token configured: off, whatever is sent", async () => {
    await using s = await adminStack(undefined);
    const off = await s.purge(`{"tag":"x"}`);
    assert.equal(off.status, 404);
    assert.match(off.body, /^not found: POST \/purge is off \(start the proxy with --admin-token/);
  });
  await using s = await adminStack(TOKEN);
  await t.step("GET: 405 naming POST", async () => {
    const response = await fetch(`${s.base}/purge`);
    await response.body?.cancel();
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "POST");
  });
  await t.step("no credentials, or not Bearer: 401 with WWW-Authenticate", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` },
      { authorization: "Bearer" },
    ];
    for (const headers of attempts) {
      const r = await s.purge(`{"tag":"x"}`, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
    }
  });
  await t.step("a wrong token (shorter, longer, one character off): 403", async () => {
    for (const wrong of ["x", TOKEN.slice(0, -1), TOKEN + "0", TOKEN.slice(0, -1) + "X"]) {
      const r = await s.purge(`{"tag":"x"}`, { authorization: `Bearer ${wrong}` });
      assert.equal(r.status, 403);
      assert.equal(r.body, "forbidden: wrong admin token\n");
    }
  });
  await t.step("read-only endpoints stay open, token or not", async () => {
    for (const path of ["/metrics", "/health", "/status.json", "/"]) {
      const response = await fetch(`${s.base}${path}`);
      await response.body?.cancel();
      assert.equal(response.status, 200, path);
    }
  });
});

Deno.test("POST /purge: bad JSON, an unknown field or a bad value is 400 with a one-line reason; a huge body 413", async () => {
  await using s = await adminStack(TOKEN);
  const cases: [string, RegExp][] = [
    ["{", /^bad request: not JSON: /],
    ["", /^bad request: not JSON: /],
    [`{"tags":"x"}`, /^bad request: unknown field "tags" \(expected one of method, key, tag\)$/],
    [`{"tag":"x","key":"0123456789ab"}`, /^bad request: give one of method, key or tag, not several$/],
    [`{"method":"no-slash"}`, /^bad request: method: invalid method pattern "no-slash"/],
    [`{"key":"xyz"}`, /^bad request: key: expected 12 to 64 hex digits/],
    [`["tag"]`, /^bad request: expected a JSON object/],
  ];
  for (const [body, reason] of cases) {
    const r = await s.purge(body);
    assert.equal(r.status, 400, body);
    assert.match(r.body.trimEnd(), reason, body);
    assert.equal(r.body.trimEnd().split("\n").length, 1, "one line");
  }
  const huge = await s.purge(`{"tag":"${"x".repeat(70_000)}"}`);
  assert.equal(huge.status, 413);
});

Deno.test("POST /purge by method glob, key and tag drops what it names, says how many, and nothing else", async (t) => {
  await using s = await adminStack(TOKEN);
  const catalogA = await s.call("a", "product-123 catalog");
  await s.call("b", "product-456 catalog");
  await s.call("c", "product-123");
  assert.equal(s.proxy.collapser.stats().cacheEntries, 3);
  await t.step("by tag", async () => {
    const r = await s.purge(`{"tag":"product-123"}`);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), {
      kind: "tag",
      value: "product-123",
      dropped: 2,
      inFlight: 0,
      fleet: null,
    });
    assert.notEqual(n(await s.call("a", "product-123 catalog")), n(catalogA), "a: from the backend again");
    assert.equal(n(await s.call("b", "product-456 catalog")), 2, "b: still cached");
  });
  await t.step(
    "by key: the 12 hex digits cache-status (and the logs, and the status page) show",
    async () => {
      const hit = await s.call("b", "product-456 catalog");
      const r = await s.purge(JSON.stringify({ key: keyOf(hit).toUpperCase() }));
      assert.equal(JSON.parse(r.body).dropped, 1);
      assert.equal(s.backend.calls.Unary, 4);
      await s.call("b", "product-456 catalog");
      assert.equal(s.backend.calls.Unary, 5, "b: from the backend again");
    },
  );
  await t.step("by method glob", async () => {
    assert.equal(s.proxy.collapser.stats().cacheEntries, 2, "a and b, cached again");
    const r = await s.purge(`{"method":"/test.Test/*"}`);
    assert.equal(JSON.parse(r.body).dropped, 2);
    assert.equal(s.proxy.collapser.stats().cacheEntries, 0);
    assert.equal(JSON.parse((await s.purge(`{"method":"/other.Svc/*"}`)).body).dropped, 0, "names nothing");
  });
  await t.step("the status board lists them, newest first", () => {
    s.status.sample();
    const purges = s.status.snapshot().purges;
    assert.equal(purges.enabled, true);
    assert.equal(purges.total, 4);
    assert.equal(purges.dropped, 5);
    assert.deepEqual(purges.recent.map((p) => [p.kind, p.dropped, p.origin]), [
      ["method", 0, "admin"],
      ["method", 2, "admin"],
      ["key", 1, "admin"],
      ["tag", 2, "admin"],
    ]);
  });
});

Deno.test("POST /purge during a backend call: the callers waiting get the answer, it is not cached, newcomers start afresh", async (t) => {
  for (const body of [`{"method":"/test.Test/Unary"}`, `{"tag":"hot"}`]) {
    await t.step(body, async () => {
      let held = gate();
      await using s = await adminStack(TOKEN, () => held.promise);
      const waiting = Array.from({ length: 3 }, () => s.call("x", "hot"));
      await until(() => s.proxy.collapser.stats().waiting === 3, "3 callers on the flight");
      const r = JSON.parse((await s.purge(body)).body);
      // A method (or key) purge finds the flight; a tag is only known once the answer is: checked then.
      assert.equal(r.inFlight, body.includes("method") ? 1 : 0);
      held.open();
      for (const result of await Promise.all(waiting)) assert.equal(n(result), 1);
      assert.equal(s.proxy.collapser.stats().cacheEntries, 0, "not cached");
      held = gate();
      held.open();
      assert.equal(n(await s.call("x", "hot")), 2, "the next call goes to the backend");
    });
  }
});

Deno.test("admin token from a file, the admin port on its own host: never in logs, /status.json, the page or /metrics", async () => {
  const backend = await startTestBackend();
  const dir = await Deno.makeTempDir();
  const file = `${dir}/token`;
  await Deno.writeTextFile(file, `${TOKEN}\n`);
  try {
    await using proc = await startCollapserProcess(
      [
        "--backend",
        backend.address,
        "--admin-token-file",
        file,
        "--admin-host",
        "127.0.0.1",
        "--log-level",
        "debug",
      ],
      { COLLAPSER_CACHE_DURATION: "1m" },
    );
    const base = `http://127.0.0.1:${proc.metricsPort}`;
    const client = newClient(proc.port);
    const call = await unary(client, "/test.Test/Unary", { item: 1 });
    client.close();
    assert.equal(call.status.code, grpc.status.OK);
    const purge = await fetch(`${base}/purge`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: `{"method":"/test.Test/*"}`,
    });
    assert.equal(purge.status, 200);
    assert.equal((await purge.json()).dropped, 1);
    const wrong = await fetch(`${base}/purge`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}x` },
      body: `{"method":"/test.Test/*"}`,
    });
    await wrong.body?.cancel();
    assert.equal(wrong.status, 403);
    const texts = {
      "/status.json": await (await fetch(`${base}/status.json`)).text(),
      "/": await (await fetch(`${base}/`)).text(),
      "/metrics": await (await fetch(`${base}/metrics`)).text(),
    };
    const status = JSON.parse(texts["/status.json"]);
    assert.equal(status.config.adminToken, "set");
    assert.equal(status.config.adminHost, "127.0.0.1");
    assert.equal(status.purges.recent[0].value, "/test.Test/*");
    await until(
      () => proc.logs.some((l) => String(l.message).startsWith("admin: POST /purge refused")),
      "the refusal logged",
    );
    await proc.stop();
    const logs = proc.logs.map((l) => JSON.stringify(l)).join("\n") + proc.otherOutput.join("\n");
    assert.ok(logs.includes("purge method /test.Test/*"), "the purge is logged");
    for (const [where, text] of Object.entries({ ...texts, logs })) {
      assert.ok(!text.includes(TOKEN.slice(0, 12)), `${where} shows the token`);
    }
  } finally {
    backend.close();
    await Deno.remove(dir, { recursive: true });
  }
});
