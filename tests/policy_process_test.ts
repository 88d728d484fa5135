/**
 * Per-method policy through the real `main.ts` process: SIGHUP reloads of the policy file, start-up
 * refusals of bad flags and files, and shadow mode end to end.
 */

import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  admin,
  collapserCommand,
  type CollapserProcess,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  type TestBackend,
  unary,
  until,
} from "./_helpers.ts";

const UNARY = "/test.Test/Unary";
/** Bound on a start-up that must fail: a hang fails as an assertion, not a hung suite. */
const EXIT_LIMIT_MS = 20_000;
/** Deadline of each call, so a stuck call fails as an assertion. */
const CALL_LIMIT_MS = 10_000;
const call = (client: grpc.Client, request: unknown) =>
  unary(client, UNARY, request, { deadline: Date.now() + CALL_LIMIT_MS });

/** Runs `fn` on dispose; `using` closes backends and clients whatever an assertion does. */
const onDispose = (fn: () => void): Disposable => ({ [Symbol.dispose]: fn });

/** A temporary directory, removed on dispose. */
async function tempDir(): Promise<{ path: string; file(name: string): string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "collapser_policy_" });
  return {
    path,
    file: (name) => `${path}/${name}`,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** The value of the exposition line `series` (name and labels exactly as prom-client writes them). */
async function metric(port: number, series: string): Promise<number | undefined> {
  const { body } = await admin(port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The sum of every sample of `name` whose labels include each of `labels` (e.g. `outcome="passthrough"`). */
async function metricSum(port: number, name: string, ...labels: string[]): Promise<number> {
  const { body } = await admin(port, "/metrics");
  return body.split("\n")
    .filter((l) => l.startsWith(name + "{") && labels.every((label) => l.includes(label)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** The backend call numbers (`n`) of two identical sequential calls. */
async function twoCalls(client: grpc.Client, request: unknown): Promise<[number, number]> {
  const first = await call(client, request);
  const second = await call(client, request);
  assert.equal(first.error, null);
  assert.equal(second.error, null);
  return [parse(first.response).n as number, parse(second.response).n as number];
}

/** Sends SIGHUP and waits for the `reloads`-th "policy reloaded" line; resolves with it. */
async function reload(proc: CollapserProcess, reloads: number): Promise<Record<string, unknown>> {
  const reloaded = () => proc.logs.filter((l) => String(l.message).startsWith("policy reloaded"));
  proc.signal("SIGHUP");
  await until(() => reloaded().length === reloads, `policy reload ${reloads}`);
  return reloaded()[reloads - 1].properties as Record<string, unknown>;
}

/** The proxy process in front of `backend`. */
function startProxy(backend: TestBackend, args: string[]): Promise<CollapserProcess> {
  return startCollapserProcess(["--backend", backend.address, ...args]);
}

Deno.test("collapser reloads a valid policy file on SIGHUP and collapses as the new file says", async () => {
  const backend = await startTestBackend();
  using _backend = onDispose(() => backend.close());
  await using dir = await tempDir();
  const policy = dir.file("policy.json");
  await Deno.writeTextFile(policy, `{"rules":[{"method":"/test.Test/*","collapse":false}]}`);
  await using proc = await startProxy(backend, ["--policy", policy, "--cache-ttl", "10s"]);
  const client = newClient(proc.port);
  using _client = onDispose(() => client.close());

  const [a, b] = await twoCalls(client, { q: "before" });
  assert.notEqual(a, b, "collapse: false: each call is its own backend call");
  assert.equal(backend.calls.Unary, 2);

  await Deno.writeTextFile(policy, `rules:\n  - method: "/test.Test/*"\n    collapse: true\n`);
  const reloaded = await reload(proc, 1);
  assert.equal(reloaded.outcome, "ok");
  assert.deepEqual(reloaded.rules, ["/test.Test/*"]);

  const [c, d] = await twoCalls(client, { q: "after" });
  assert.equal(c, d, "collapse: true: the second call is answered from the cache");
  assert.equal(backend.calls.Unary, 3);
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="ok"}`), 1);
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="failed"}`), 0);
  assert.deepEqual(proc.otherOutput, []);
});

Deno.test("collapser keeps the old policy when a SIGHUP finds the policy file invalid", async () => {
  const backend = await startTestBackend();
  using _backend = onDispose(() => backend.close());
  await using dir = await tempDir();
  const policy = dir.file("policy.yaml");
  await Deno.writeTextFile(policy, `rules:\n  - method: /test.Test/*\n    collapse: false\n`);
  await using proc = await startProxy(backend, ["--policy", policy, "--cache-ttl", "10s"]);
  const client = newClient(proc.port);
  using _client = onDispose(() => client.close());
  const [a, b] = await twoCalls(client, { q: 1 });
  assert.notEqual(a, b);

  await Deno.writeTextFile(policy, `rules:\n  - method: /test.Test/*\n    collapse: true\n    ttl: 5x\n`);
  const failed = await reload(proc, 1);
  assert.equal(failed.outcome, "partly failed");
  const error = proc.logs.find((l) => String(l.message).startsWith("policy reload:"));
  assert.ok(error, "an error line for the bad file");
  assert.equal(error.level, "ERROR");
  const message = String(error.message);
  assert.ok(message.includes(policy), `names the file: ${message}`);
  assert.ok(message.includes("rule 1 (/test.Test/*)"), `names the rule: ${message}`);
  assert.match(message, /ttl: invalid duration/, "names the field");
  assert.match(message, /keeping what it said before/);

  const [c, d] = await twoCalls(client, { q: 2 });
  assert.notEqual(c, d, "the old policy (collapse: false) stands");
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="failed"}`), 1);
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="ok"}`), 0);

  await Deno.writeTextFile(policy, `rules:\n  - method: /test.Test/*\n    collapse: true\n    ttl: 5s\n`);
  assert.equal((await reload(proc, 2)).outcome, "ok");
  const [e, f] = await twoCalls(client, { q: 3 });
  assert.equal(e, f, "the fixed file takes effect");
  assert.equal(backend.calls.Unary, 5);
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="ok"}`), 1);
  assert.equal(await metric(proc.metricsPort, `collapser_policy_reloads_total{result="failed"}`), 1);

  assert.deepEqual(proc.otherOutput, [], "no crash output");
  const status = await proc.stop();
  assert.equal(status.code, 0, "the process was up until SIGTERM and drained cleanly");
});

Deno.test("collapser exits 1 with one line naming the problem on bad policy input at start-up", async (t) => {
  const backend = await startTestBackend(); // serves test.Test, not reflection
  using _backend = onDispose(() => backend.close());
  await using dir = await tempDir();
  const missing = dir.file("missing.yaml");
  const badYaml = dir.file("bad.yaml");
  await Deno.writeTextFile(badYaml, `rules:\n  - method: /a.B/*\n   collapse: [false\n`);
  const unknownField = dir.file("unknown.yaml");
  await Deno.writeTextFile(
    unknownField,
    `rules:\n  - method: /a.B/*\n    collapse: false\n  - method: /c.D/*\n    colapse: true\n`,
  );
  const text = dir.file("notes.txt");
  await Deno.writeTextFile(text, "This is a text file, not a FileDescriptorSet.\n");
  const up = ["--backend", "127.0.0.1:1"];

  const cases: { name: string; args: string[]; message: RegExp; file?: string; usage: boolean }[] = [
    {
      name: "--policy: a missing file",
      args: [...up, "--policy", missing],
      message: /cannot read the policy file/,
      file: missing,
      usage: true,
    },
    {
      name: "--policy: a YAML syntax error",
      args: [...up, "--policy", badYaml],
      message: /not valid YAML or JSON/,
      file: badYaml,
      usage: true,
    },
    {
      name: "--policy: an unknown field in rule 2",
      args: [...up, "--policy", unknownField],
      message: /rule 2 \(\/c\.D\/\*\): colapse: unknown field/,
      file: unknownField,
      usage: true,
    },
    {
      name: "--descriptor-set: a missing file",
      args: [...up, "--descriptor-set", missing],
      message: /cannot read descriptor set .*no such file/,
      file: missing,
      usage: true,
    },
    {
      name: "--descriptor-set: a text file",
      args: [...up, "--descriptor-set", text],
      message: /is not a descriptor set/,
      file: text,
      usage: true,
    },
    {
      name: "--reflection: a backend without reflection",
      args: ["--backend", backend.address, "--reflection"],
      message: /does not serve grpc\.reflection/,
      usage: false,
    },
    {
      name: "--collapse declared without a descriptor source",
      args: [...up, "--collapse", "declared"],
      message: /--collapse: "declared" needs --descriptor-set or --reflection/,
      usage: true,
    },
    {
      name: "--no-collapse: a pattern without a leading slash",
      args: [...up, "--no-collapse", "shop.Cart"],
      message: /--no-collapse: invalid method pattern "shop\.Cart"/,
      usage: true,
    },
    {
      name: "--backend :::",
      args: ["--backend", ":::"],
      message: /--backend: invalid backend ":::"/,
      usage: true,
    },
  ];
  for (const { name, args, message, file, usage } of cases) {
    await t.step(name, async () => {
      const child = collapserCommand(args).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_LIMIT_MS);
      const { code, signal, stderr } = await child.output().finally(() => clearTimeout(timer));
      assert.equal(signal, null, `exited by itself within ${EXIT_LIMIT_MS} ms`);
      const output = new TextDecoder().decode(stderr);
      const first = output.split("\n")[0];
      assert.equal(code, 1, output);
      assert.ok(first.startsWith("collapser: "), first);
      assert.match(first, message);
      if (file !== undefined) assert.ok(first.includes(file), `names ${file}: ${first}`);
      if (usage) assert.match(output, /Usage: collapser/);
    });
  }
});

Deno.test("collapser --shadow passes every call through and counts what collapsing would have saved", async () => {
  const backend = await startTestBackend();
  using _backend = onDispose(() => backend.close());
  await using proc = await startProxy(backend, ["--shadow", "--cache-ttl", "10s"]);
  const client = newClient(proc.port);
  using _client = onDispose(() => client.close());

  const requests = [{ q: "same" }, { q: "same" }, { q: "same" }, { q: "same" }, { q: "other" }];
  const seen: number[] = [];
  for (const request of requests) {
    const result = await call(client, request);
    assert.equal(result.error, null);
    assert.deepEqual(parse(result.response).echo, request);
    seen.push(parse(result.response).n as number);
  }
  assert.equal(backend.calls.Unary, 5, "every call reached the backend");
  assert.equal(new Set(seen).size, 5, `every answer is its own backend call: ${seen}`);

  const shadow = (would: string) => `collapser_shadow_calls_total{method="${UNARY}",would="${would}"}`;
  await until(
    async () => await metricSum(proc.metricsPort, "collapser_requests_total") === 5,
    "all 5 calls counted",
  );
  assert.equal(await metric(proc.metricsPort, shadow("leader")), 2);
  assert.equal(await metric(proc.metricsPort, shadow("cache")), 3);
  assert.equal(await metric(proc.metricsPort, shadow("follower")), undefined);
  assert.equal(
    await metric(
      proc.metricsPort,
      `collapser_requests_total{method="${UNARY}",outcome="passthrough",code="OK"}`,
    ),
    5,
  );
  assert.equal(await metric(proc.metricsPort, "collapser_cache_hits_total"), 0, "nothing was served");
});
