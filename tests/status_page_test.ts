/**
 * The status page (`GET /` on the admin port) in a real browser: headless Chromium, driven over the DevTools
 * protocol with Deno's own WebSocket (no dependency), against the real proxy process in front of a real
 * backend, under real grpc-js traffic whose payload and credentials look secret.
 *
 * Every Chromium command and every wait is bounded, so a hang fails as an assertion; the browser is killed
 * and its profile removed however the test ends. Set `STATUS_SCREENSHOT=path.png` to keep the screenshot
 * (`deno task screenshot` writes docs/status-page.png).
 */

import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import type { StatusSnapshot } from "../src/admin/status.ts";
import { admin, metadata, newClient, startCollapserProcess, startTestBackend, unary } from "./_helpers.ts";

/** `Deno.test`, ignored where chromium is missing (see _needs.ts). */
const test = needs("chromium").test;

const CARD = "4111-1111-1111-1111";
const TOKEN = "s3cr3t-t0ken";
/** None of these may reach the page, its DOM, /status.json or /metrics. */
const SECRETS = [CARD, "card", TOKEN];
/** Identical concurrent calls per round (the hot key), a smaller herd on one of a few warm keys, and unique calls. */
const HERD = 40;
const WARM = 8;
const WARM_KEYS = 4;
const UNIQUE_PER_ROUND = 2;
/** Where to keep the screenshot, if anywhere. */
const SCREENSHOT = Deno.env.get("STATUS_SCREENSHOT");
/**
 * The traffic runs at least this long, and until the page has been seen live; longer for a screenshot worth
 * showing (a chart with more than a blip). Nothing asserted depends on it.
 */
const TRAFFIC_MS = SCREENSHOT ? 15_000 : 2_000;
/** The counters compared between the page, /status.json and each other once the proxy is quiet. */
const COUNTERS = [
  "sinceStart.requests",
  "sinceStart.backendCalls",
  "sinceStart.saved",
  "cache.entries",
  "cache.hits",
  "cache.misses",
] as const;
const WIDTH = 1280;
const HEIGHT = 1400;
/** Bound on one DevTools command, on a page reaching a state, and on the browser starting or stopping. */
const COMMAND_TIMEOUT_MS = 10_000;
const WAIT_TIMEOUT_MS = 15_000;
const LAUNCH_TIMEOUT_MS = 15_000;

test("status page: headless Chromium shows /status.json's numbers, and no payload or credential", async (t) => {
  const backend = await startTestBackend();
  using _backend = { [Symbol.dispose]: () => backend.close() };
  await using proxy = await startCollapserProcess(["--backend", backend.address, "--cache-ttl", "200ms"]);
  const base = `http://127.0.0.1:${proxy.metricsPort}`;
  const client = newClient(proxy.port);
  using _client = { [Symbol.dispose]: () => client.close() };
  await using browser = await Chromium.launch();
  await using files = await TempDir.create();
  // A failed step stops the test: the next ones build on it.
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!(await t.step(name, fn))) throw new Error(`step failed: ${name}`);
  };

  // The traffic: rounds of herds and unique calls, until told to stop.
  let stop = false;
  let started = 0;
  const traffic = (async () => {
    let calls = 0;
    for (let round = 0; !stop; round++) {
      const call = (request: unknown) =>
        unary(client, "/test.Test/Unary", request, {
          metadata: metadata({ authorization: `Bearer ${TOKEN}` }),
        });
      const batch = [
        ...Array.from({ length: HERD }, () => call({ card: CARD })),
        ...Array.from({ length: WARM }, () => call({ card: CARD, warm: round % WARM_KEYS })),
        ...Array.from(
          { length: UNIQUE_PER_ROUND },
          (_, i) => call({ card: CARD, n: round * UNIQUE_PER_ROUND + i }),
        ),
      ];
      started += batch.length;
      for (const result of await Promise.all(batch)) {
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
      }
      calls += batch.length;
    }
    return calls;
  })();
  traffic.catch(() => {}); // awaited below; a failed call must not surface as an unhandled rejection first
  const trafficStarted = Date.now();
  let calls: number;
  try {
    await step("while traffic runs, the page draws live data", async () => {
      await using tab = await browser.open(`${base}/`);
      await tab.waitFor(
        `document.body.dataset.ready === "1" && document.querySelector('[data-field="hotKeys.keys.0.key"]') !== null`,
        "the page to draw a snapshot with a hot key",
      );
      const live = await tab.read();
      const requests = Number(live.fields["sinceStart.requests"]?.value);
      assert.ok(requests > 0 && requests <= started, `requests on the live page: ${requests}`);
      assert.equal(live.fields["hotKeys.keys.0.method"]?.value, "/test.Test/Unary");
    });
  } finally {
    await delay(Math.max(0, trafficStarted + TRAFFIC_MS - Date.now()));
    stop = true;
    calls = await traffic;
  }
  // The secret really went through: a leak would show.
  assert.equal(backend.metadata[0].get("authorization")[0], `Bearer ${TOKEN}`);

  const quiet = await quiescence(base, calls);
  let page!: PageState;
  let snapshot!: StatusSnapshot;
  let tab!: Tab;
  await using _tab = { [Symbol.asyncDispose]: () => tab?.[Symbol.asyncDispose]() };

  await step("once quiet, the page shows the same numbers as /status.json and /metrics", async () => {
    tab = await browser.open(`${base}/`);
    // A fresh page, and a snapshot taken after the counters settled.
    await tab.waitFor(
      `document.body.dataset.ready === "1" && document.body.dataset.generatedAt >= ${
        JSON.stringify(quiet.generatedAt)
      }`,
      "the page to draw a snapshot taken after the traffic",
    );
    page = await tab.read();
    snapshot = await statusJson(base);
    assert.ok(page.generatedAt <= snapshot.generatedAt, "the page drew a snapshot before ours");
    assert.equal(snapshot.sinceStart.requests, calls);
    for (const field of COUNTERS) {
      const expected = valueAt(snapshot, field);
      const shown = page.fields[field];
      assert.ok(shown, `no data-field="${field}" on the page`);
      assert.equal(Number(shown.value), expected, `${field}: data-value`);
      assert.equal(Number(shown.text.replaceAll(",", "")), expected, `${field}: as shown (${shown.text})`);
    }
    assert.ok(snapshot.sinceStart.saved > 0, "some calls were shared");
    const hot = page.fields["hotKeys.keys.0.key"]?.value;
    assert.equal(hot, snapshot.hotKeys.keys[0]?.key);
    assert.match(hot ?? "", /^[0-9a-f]{12}$/);
    assert.equal(page.fields["hotKeys.keys.0.method"]?.value, "/test.Test/Unary");

    const metrics = (await admin(proxy.metricsPort, "/metrics")).body;
    assert.equal(metricSum(metrics, "collapser_requests_total"), snapshot.sinceStart.requests);
    assert.equal(metricSum(metrics, "collapser_backend_calls_total"), snapshot.sinceStart.backendCalls);
    assert.equal(metricSum(metrics, "collapser_cache_hits_total"), snapshot.cache.hits);
    assert.equal(metricSum(metrics, "collapser_cache_entries"), snapshot.cache.entries);
  });

  await step("no payload or credential on the page, in its DOM, in /status.json or /metrics", async () => {
    const sources = {
      "page text": page.text,
      "DOM": page.html,
      "/status.json": (await admin(proxy.metricsPort, "/status.json")).body,
      "/metrics": (await admin(proxy.metricsPort, "/metrics")).body,
    };
    for (const [where, text] of Object.entries(sources)) {
      assert.ok(text.length > 0, `${where} is empty`);
      for (const secret of SECRETS) assert.ok(!text.includes(secret), `${where} contains ${secret}`);
    }
  });

  await step("a 1280-wide PNG screenshot", async () => {
    const path = SCREENSHOT ?? `${files.path}/status-page.png`;
    const png = await tab.screenshot();
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(path, png);
    const written = await Deno.readFile(path);
    assert.deepEqual([...written.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG");
    const header = new DataView(written.buffer, written.byteOffset, 24);
    assert.equal(header.getUint32(16), WIDTH, "PNG width");
    assert.ok(header.getUint32(20) >= 600, `PNG height: ${header.getUint32(20)}`);
    assert.ok(written.length > 30_000, `PNG of ${written.length} bytes: too small to be the page`);
  });

  await step("the admin port: 404, 405, and query parameters change nothing", async () => {
    assert.equal((await admin(proxy.metricsPort, "/no-such-page")).status, 404);
    for (const path of ["/", "/status.json"]) {
      const response = await fetch(`${base}${path}`, { method: "POST", body: "{}" });
      await response.body?.cancel();
      assert.equal(response.status, 405, `POST ${path}`);
    }
    const plain = await admin(proxy.metricsPort, "/");
    const debug = await admin(proxy.metricsPort, "/?debug=payload");
    assert.equal(debug.status, 200);
    assert.equal(debug.body, plain.body);
    await using debugTab = await browser.open(`${base}/?debug=payload`);
    await debugTab.waitFor(`document.body.dataset.ready === "1"`, "the page with ?debug=payload to draw");
    const shown = await debugTab.read();
    for (const field of COUNTERS) assert.equal(shown.fields[field]?.value, page.fields[field].value, field);
    for (const secret of SECRETS) {
      assert.ok(!shown.html.includes(secret), `?debug=payload DOM contains ${secret}`);
    }
  });

  await step("when /status.json stops answering, the page keeps its data and says so", async () => {
    await proxy.stop();
    await tab.waitFor(
      `!document.getElementById("error").hidden && document.getElementById("error").textContent.length > 0`,
      "the page to show that the proxy is gone",
    );
    const stale = await tab.read();
    assert.ok(stale.generatedAt >= page.generatedAt);
    for (const field of COUNTERS) assert.equal(stale.fields[field]?.value, page.fields[field].value, field);
  });
});

Deno.test("status page: purges made through POST /purge are listed as /status.json has them; the admin token shows nowhere", async () => {
  const backend = await startTestBackend();
  using _backend = { [Symbol.dispose]: () => backend.close() };
  const adminToken = "page-test-admin-token-7f3a9c";
  await using proxy = await startCollapserProcess(["--backend", backend.address, "--cache-ttl", "1m"], {
    COLLAPSER_ADMIN_TOKEN: adminToken,
  });
  const base = `http://127.0.0.1:${proxy.metricsPort}`;
  const client = newClient(proxy.port);
  using _client = { [Symbol.dispose]: () => client.close() };
  for (const item of [1, 2, 3]) {
    assert.equal((await unary(client, "/test.Test/Unary", { item })).status.code, grpc.status.OK);
  }
  const purge = async (body: string) => {
    const response = await fetch(`${base}/purge`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}` },
      body,
    });
    assert.equal(response.status, 200, body);
    return await response.json();
  };
  const hit = await unary(client, "/test.Test/Unary", { item: 1 });
  const key = /key="([0-9a-f]{12})"/.exec(String(hit.status.metadata.get("cache-status")[0]))![1];
  assert.equal((await purge(JSON.stringify({ key }))).dropped, 1);
  assert.equal((await purge(`{"method":"/test.Test/*"}`)).dropped, 2);
  await using browser = await Chromium.launch();
  await using tab = await browser.open(`${base}/`);
  await tab.waitFor(
    `document.body.dataset.ready === "1" && document.querySelector('[data-field="purges.recent.1.kind"]') !== null`,
    "the page to list two purges",
  );
  const page = await tab.read();
  const snapshot = await statusJson(base);
  assert.equal(snapshot.purges.enabled, true);
  for (const field of ["purges.total", "purges.dropped"]) {
    assert.equal(Number(page.fields[field]?.value), valueAt(snapshot, field), field);
  }
  const shown = [0, 1].map((i) =>
    ["kind", "value", "origin", "dropped"].map((f) => page.fields[`purges.recent.${i}.${f}`]?.text)
  );
  assert.deepEqual(shown, [["method", "/test.Test/*", "this proxy", "2"], ["key", key, "this proxy", "1"]]);
  const sources = {
    "page text": page.text,
    "DOM": page.html,
    "/status.json": JSON.stringify(snapshot),
    "/metrics": (await admin(proxy.metricsPort, "/metrics")).body,
  };
  for (const [where, text] of Object.entries(sources)) {
    assert.ok(!text.includes(adminToken), `${where} shows the token`);
  }
  assert.ok(page.text.includes("adminToken"), "the configuration says there is one");
});

/** GET /status.json. */
async function statusJson(base: string): Promise<StatusSnapshot> {
  const response = await fetch(`${base}/status.json`);
  assert.equal(response.status, 200);
  return await response.json();
}

/**
 * Waits until the proxy's counters have settled: every call counted, no flight running, and the same
 * counters in two snapshots in a row. Synchronization, not timing: it returns the settled snapshot.
 */
async function quiescence(base: string, calls: number): Promise<StatusSnapshot> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  let previous = "";
  for (;;) {
    const snapshot = await statusJson(base);
    const counters = JSON.stringify([snapshot.sinceStart, snapshot.cache, snapshot.flights.inProgress]);
    if (
      snapshot.sinceStart.requests === calls && snapshot.flights.inProgress === 0 && counters === previous
    ) {
      return snapshot;
    }
    if (Date.now() > deadline) {
      throw new Error(`the proxy did not settle at ${calls} requests: ${counters}`);
    }
    previous = counters;
    await delay(100);
  }
}

/** The value at a dotted path. */
function valueAt(object: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], object);
}

/** The sum of a Prometheus metric's samples over all its label sets. */
function metricSum(text: string, name: string): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? (\S+)$/);
    if (match?.[1] === name) {
      sum += Number(match[2]);
      found = true;
    }
  }
  assert.ok(found, `no ${name} in /metrics`);
  return sum;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `what` if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A temporary directory, removed on dispose. */
class TempDir implements AsyncDisposable {
  private constructor(readonly path: string) {}
  static async create(): Promise<TempDir> {
    return new TempDir(await Deno.makeTempDir({ prefix: "collapser-status-page-" }));
  }
  async [Symbol.asyncDispose](): Promise<void> {
    // Chromium's last helper processes may still be closing files in its profile for a moment.
    for (let attempt = 0;; attempt++) {
      try {
        return await Deno.remove(this.path, { recursive: true });
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return;
        if (attempt >= 20) throw err;
        await delay(50);
      }
    }
  }
}

/** What the page shows: every `data-field` element, its text and DOM, and the snapshot drawn. */
interface PageState {
  generatedAt: string;
  fields: Record<string, { value: string; text: string }>;
  text: string;
  html: string;
}

const READ_PAGE = `(() => ({
  generatedAt: document.body.dataset.generatedAt ?? "",
  fields: Object.fromEntries([...document.querySelectorAll("[data-field]")].map((node) =>
    [node.dataset.field, { value: node.dataset.value ?? "", text: node.textContent }])),
  text: document.body.innerText,
  html: document.documentElement.outerHTML,
}))()`;

/** The executable: `chromium` on the PATH. */
function chromiumPath(): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    try {
      const path = `${dir}/chromium`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    "chromium is not installed: this test drives headless Chromium; install the Debian package `chromium` " +
      "(apt-get install chromium)",
  );
}

type Message = { id?: number; result?: unknown; error?: { message: string }; sessionId?: string };

/** Headless Chromium with one DevTools protocol connection; dispose closes it, kills it if it must. */
class Chromium implements AsyncDisposable {
  #next = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #closed: Promise<void>;

  private constructor(
    readonly child: Deno.ChildProcess,
    readonly profile: TempDir,
    readonly stderr: string[],
    readonly reading: Promise<void>,
    readonly socket: WebSocket,
  ) {
    socket.onmessage = (event) => {
      const message: Message = JSON.parse(event.data);
      const pending = message.id === undefined ? undefined : this.#pending.get(message.id);
      if (!pending) return; // an event: nothing here listens to events
      this.#pending.delete(message.id!);
      if (message.error) pending.reject(new Error(`DevTools: ${message.error.message}`));
      else pending.resolve(message.result);
    };
    this.#closed = new Promise((resolve) => {
      socket.onclose = () => {
        for (const pending of this.#pending.values()) pending.reject(new Error("DevTools connection closed"));
        this.#pending.clear();
        resolve();
      };
    });
  }

  /** Starts Chromium on a fresh profile and connects to it. */
  static async launch(): Promise<Chromium> {
    const executable = chromiumPath();
    const profile = await TempDir.create();
    const child = new Deno.Command(executable, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        `--window-size=${WIDTH},${HEIGHT}`,
        `--user-data-dir=${profile.path}`,
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // Chromium says where DevTools listens on standard error; the rest is kept for a failure message.
    const stderr: string[] = [];
    const endpoint = Promise.withResolvers<string>();
    const reading = (async () => {
      let buffered = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          stderr.push(line);
          if (stderr.length > 40) stderr.shift();
          const match = line.match(/DevTools listening on (ws:\/\/\S+)/);
          if (match) endpoint.resolve(match[1]);
        }
      }
      endpoint.reject(new Error("chromium exited"));
    })();
    let socket: WebSocket | undefined;
    try {
      const url = await within(endpoint.promise, LAUNCH_TIMEOUT_MS, "chromium to start");
      socket = new WebSocket(url);
      const opened = new Promise<void>((resolve, reject) => {
        socket!.onopen = () => resolve();
        socket!.onerror = () => reject(new Error(`cannot connect to ${url}`));
      });
      await within(opened, LAUNCH_TIMEOUT_MS, "the DevTools connection");
      return new Chromium(child, profile, stderr, reading, socket);
    } catch (err) {
      socket?.close();
      await Chromium.#kill(child, reading, profile);
      throw new Error(`cannot start chromium: ${(err as Error).message}\n${stderr.join("\n")}`, {
        cause: err,
      });
    }
  }

  static async #kill(child: Deno.ChildProcess, reading: Promise<void>, profile: TempDir): Promise<void> {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    await reading.catch(() => {});
    await profile[Symbol.asyncDispose]();
  }

  /** Sends a DevTools command (to a page when `sessionId` is given) and resolves with its result. */
  send<T = Record<string, unknown>>(method: string, params: unknown = {}, sessionId?: string): Promise<T> {
    if (this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`${method}: the DevTools connection is closed`));
    }
    const id = this.#next++;
    const result = new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return within(result, COMMAND_TIMEOUT_MS, method).finally(() => this.#pending.delete(id));
  }

  /** Opens `url` in a new tab of WIDTH×HEIGHT. */
  async open(url: string): Promise<Tab> {
    const { targetId } = await this.send<{ targetId: string }>("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const tab = new Tab(this, targetId, sessionId);
    try {
      await tab.send("Emulation.setDeviceMetricsOverride", {
        width: WIDTH,
        height: HEIGHT,
        deviceScaleFactor: 1,
        mobile: false,
      });
      const navigated = await tab.send<{ errorText?: string }>("Page.navigate", { url });
      if (navigated.errorText) throw new Error(`cannot load ${url}: ${navigated.errorText}`);
      return tab;
    } catch (err) {
      await tab[Symbol.asyncDispose]();
      throw err;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.send("Browser.close");
    } catch {
      // killed below
    }
    this.socket.close();
    await within(this.#closed, 2_000, "the DevTools connection to close").catch(() => {});
    const exited = await within(this.child.status, 5_000, "chromium to exit").then(() => true, () => false);
    if (exited) {
      await this.reading.catch(() => {});
      await this.profile[Symbol.asyncDispose]();
    } else await Chromium.#kill(this.child, this.reading, this.profile);
  }
}

/** One page of the browser. */
class Tab implements AsyncDisposable {
  constructor(readonly browser: Chromium, readonly targetId: string, readonly sessionId: string) {}

  send<T = Record<string, unknown>>(method: string, params: unknown = {}): Promise<T> {
    return this.browser.send<T>(method, params, this.sessionId);
  }

  /** Evaluates `expression` in the page and resolves with its value. */
  async evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = await this.send<
      { result: { value: T }; exceptionDetails?: { text: string; exception?: { description?: string } } }
    >("Runtime.evaluate", { expression, returnByValue: true });
    if (exceptionDetails) {
      throw new Error(`in the page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
    }
    return result.value;
  }

  /** Resolves once `condition` holds in the page; fails after WAIT_TIMEOUT_MS, saying what it waited for. */
  async waitFor(condition: string, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_TIMEOUT_MS;
    // While the page loads, `document.body` may be null: an exception means "not yet".
    const check =
      `(() => { try { return { ok: Boolean(${condition}) }; } catch (e) { return { error: String(e) }; } })()`;
    for (;;) {
      const { ok, error } = await this.evaluate<{ ok?: boolean; error?: string }>(check);
      if (ok) return;
      if (Date.now() > deadline) {
        const says = await this.evaluate<string>(`document.getElementById("error")?.textContent ?? ""`);
        throw new Error(
          `timed out waiting for ${what}${error ? ` (last: ${error})` : ""}${
            says ? ` (the page says: ${says})` : ""
          }`,
        );
      }
      await delay(50);
    }
  }

  read(): Promise<PageState> {
    return this.evaluate<PageState>(READ_PAGE);
  }

  /** A PNG of the page, as wide as the viewport and as high as the page's content. */
  async screenshot(): Promise<Uint8Array> {
    const height = await this.evaluate<number>("Math.ceil(document.body.getBoundingClientRect().bottom)");
    const { data } = await this.send<{ data: string }>("Page.captureScreenshot", {
      format: "png",
      clip: { x: 0, y: 0, width: WIDTH, height, scale: 1 },
      captureBeyondViewport: true,
    });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.browser.send("Target.closeTarget", { targetId: this.targetId }).catch(() => {});
  }
}
