/**
 * What may be shared: request metadata in the key, per-method collapse control, and method knowledge from
 * the service (descriptor set built by buf, reflection served by the backend).
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Policy } from "../src/policy/policy.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import { methodPatterns } from "../src/policy/policy.ts";
import { buildDescriptorSet } from "./_protos.ts";
import { PolicySource } from "../src/policy/policy_source.ts";
import {
  bytes,
  frame,
  gate,
  identity,
  metadata,
  newClient,
  parse,
  rawCall,
  startStack,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { Proxy } from "../src/server/proxy.ts";

const UNARY = "/test.Test/Unary";
const ECHO_INITIAL = "x-grpc-test-echo-initial";
const ECHO_TRAILING = "x-grpc-test-echo-trailing-bin";

Deno.test("Proxy never gives a caller another caller's answer to a header it did not send (interop custom_metadata)", async (t) => {
  // As the gRPC interop server's custom_metadata case: echo x-grpc-test-echo-initial in the response
  // headers and x-grpc-test-echo-trailing-bin in the trailers.
  const release = gate();
  await using stack = await startStack({
    proxy: { cacheTtlMs: 60_000 },
    handlers: {
      Unary(call, callback) {
        const initial = call.metadata.get(ECHO_INITIAL)[0];
        const trailing = call.metadata.get(ECHO_TRAILING)[0];
        if (initial !== undefined) call.sendMetadata(metadata({ [ECHO_INITIAL]: initial }));
        const trailers = trailing === undefined
          ? undefined
          : metadata({ [ECHO_TRAILING]: trailing as Buffer });
        release.promise.then(() => callback(null, bytes({ n: stack.backend.calls.Unary }), trailers));
      },
    },
  });
  const secret = () => metadata({ [ECHO_INITIAL]: "alice-value", [ECHO_TRAILING]: Buffer.from([1, 2, 3]) });
  const noEcho = (r: Awaited<ReturnType<typeof unary>>) => {
    assert.equal(r.status.code, grpc.status.OK);
    assert.deepEqual(r.headers?.get(ECHO_INITIAL), []);
    assert.deepEqual(r.status.metadata.get(ECHO_TRAILING), []);
  };
  await t.step("concurrently: B is not a follower of A's flight", async () => {
    const a = unary(stack.client, UNARY, { same: 1 }, { metadata: secret() });
    const b = unary(stack.client, UNARY, { same: 1 });
    await until(() => stack.backend.calls.Unary === 2, "two backend calls, one per caller");
    release.open();
    const [ra, rb] = await Promise.all([a, b]);
    assert.deepEqual(ra.headers?.get(ECHO_INITIAL), ["alice-value"]);
    assert.deepEqual(ra.status.metadata.get(ECHO_TRAILING), [Buffer.from([1, 2, 3])]);
    noEcho(rb);
  });
  await t.step("within the TTL: B is not served A's cached answer, C with A's headers is", async () => {
    const before = stack.backend.calls.Unary;
    noEcho(await unary(stack.client, UNARY, { same: 1 }));
    const c = await unary(stack.client, UNARY, { same: 1 }, { metadata: secret() });
    assert.deepEqual(c.headers?.get(ECHO_INITIAL), ["alice-value"]);
    assert.equal(stack.backend.calls.Unary, before, "both from the cache: each from its own entry");
  });
  await t.step("a header the operator ignores widens sharing, on purpose", async () => {
    const policy = new Policy({ ttlMs: 60_000, ignoreHeaders: ["x-request-id"] });
    stack.proxy.policy = policy;
    const first = await unary(stack.client, UNARY, { other: 1 }, {
      metadata: metadata({ "x-request-id": "r1" }),
    });
    const second = await unary(stack.client, UNARY, { other: 1 }, {
      metadata: metadata({ "x-request-id": "r2" }),
    });
    assert.equal(parse(second.response).n, parse(first.response).n);
  });
});

for (const backendClient of ["h2", "grpc-js"] as const) {
  Deno.test(`Proxy passes the backend's response content-type through (${backendClient} client, and passthrough)`, async (t) => {
    await using stack = await startStack({
      proxy: {
        backendClient,
        policy: new Policy({
          noCollapse: methodPatterns("/test.Test/ServerStream", { allowDeclared: false }),
        }),
      },
    });
    // grpc-js servers answer application/grpc+proto.
    for (
      const [what, path, request] of [["collapsed", UNARY, { q: 1 }], [
        "passed through",
        "/test.Test/ServerStream",
        { count: 1 },
      ]] as const
    ) {
      await t.step(what, async () => {
        const result = await rawCall(stack.proxy.port, path, frame(request));
        assert.equal(result.grpcStatus, 0);
        assert.equal(result.headers["content-type"], "application/grpc+proto");
      });
    }
  });
}

Deno.test("Proxy passes through, as the caller's own call, every method --no-collapse or a rule names", async (t) => {
  const release = gate();
  const deadlines: number[] = [];
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        deadlines.push(Number(call.getDeadline()));
        release.promise.then(() =>
          callback(null, bytes({ n: deadlines.length, who: call.metadata.get("x-who")[0] }))
        );
      },
    },
  });
  const concurrentPair = () => {
    const soon = Date.now() + 30_000;
    const a = unary(stack.client, UNARY, { same: 1 }, {
      metadata: metadata({ "x-who": "a" }),
      deadline: soon,
    });
    const b = unary(stack.client, UNARY, { same: 1 }, { metadata: metadata({ "x-who": "a" }) });
    return [a, b];
  };
  const cases: [string, Policy][] = [
    ["--no-collapse", new Policy({ noCollapse: methodPatterns("/test.*/Un*", { allowDeclared: false }) })],
    [
      "an allowlist (--collapse) that does not name it",
      new Policy({ collapse: methodPatterns("/test.Test/Other", { allowDeclared: false }) }),
    ],
    [
      "a rule, over an allowlist that names it",
      new Policy({ collapse: methodPatterns("*", { allowDeclared: false }) }, {
        rules: parsePolicy('{"rules":[{"method":"/test.Test/*","collapse":false}]}', "t"),
      }),
    ],
  ];
  for (const [name, policy] of cases) {
    await t.step(name, async () => {
      stack.proxy.policy = policy;
      deadlines.length = 0;
      const before = stack.backend.calls.Unary;
      const calls = concurrentPair();
      await until(() => stack.backend.calls.Unary === before + 2, "each caller its own backend call");
      assert.equal(stack.proxy.collapser.stats().waiting, 0, "nobody waits on a shared call");
      const withDeadline = deadlines.filter((d) => Number.isFinite(d));
      assert.equal(withDeadline.length, 1, "the caller's own deadline reaches the backend");
      release.open();
      for (const r of await Promise.all(calls)) assert.equal(r.status.code, grpc.status.OK);
    });
  }
  await t.step("the denylist wins over the allowlist; other methods still collapse", () => {
    const policy = new Policy({
      collapse: methodPatterns("/test.Test/*", { allowDeclared: false }),
      noCollapse: methodPatterns("/test.Test/Unary", { allowDeclared: false }),
    });
    assert.equal(policy.resolve(UNARY).collapse, false);
    assert.equal(policy.resolve("/test.Test/ServerStream").collapse, true);
  });
});

const TEST_PROTO = `
syntax = "proto3";
package test;
message Msg { string q = 1; }
service Test {
  rpc Unary(Msg) returns (Msg) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc ServerStream(Msg) returns (stream Msg);
  rpc ClientStream(stream Msg) returns (Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
}
`;

/** The test service's methods as a .proto declares them, for buf and for the reflection service. */
async function writeTestProto(): Promise<
  { dir: string; proto: string; [Symbol.asyncDispose](): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "collapser-sharing-" });
  const proto = `${dir}/test.proto`;
  await Deno.writeTextFile(proto, TEST_PROTO);
  return { dir, proto, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("Proxy follows what the service declares: --collapse declared, and declared streams pass at once", async (t) => {
  await using files = await writeTestProto();
  const descriptorSet = `${files.dir}/test.pb`;
  await buildDescriptorSet(files.dir, ["test.proto"], descriptorSet);

  // A backend that serves the test service (raw JSON bytes) and reflection describing it.
  const backend = await startTestBackend();
  const reflectionServer = new grpc.Server();
  new ReflectionService(protoLoader.loadSync(files.proto)).addToServer(reflectionServer);
  const reflectionPort = await new Promise<number>((resolve, reject) =>
    reflectionServer.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  try {
    const sources = {
      "a descriptor set built by buf": { descriptorSet },
      "the backend's reflection service": { reflection: `127.0.0.1:${reflectionPort}` },
    };
    for (const [name, source] of Object.entries(sources)) {
      await t.step(name, async () => {
        const policy = await new PolicySource({
          collapse: methodPatterns("declared", { allowDeclared: true }),
        }, source).load();
        assert.equal(policy.resolve(UNARY).collapse, true, "declared NO_SIDE_EFFECTS");
        assert.equal(policy.resolve("/test.Test/ServerStream").collapse, false, "declares nothing");
        assert.equal(policy.resolve("/test.Other/Unknown").collapse, false, "unknown: only the globs apply");
        const proxy = await Proxy.start({ backend: backend.address, host: "127.0.0.1", port: 0, policy });
        const client = newClient(proxy.port);
        try {
          const before = { ...backend.calls };
          const [a, b] = await Promise.all([unary(client, UNARY, { q: 1 }), unary(client, UNARY, { q: 1 })]);
          assert.equal(parse(a.response).n, parse(b.response).n);
          assert.equal(backend.calls.Unary, before.Unary + 1, "collapsed");
          const streams = [0, 1].map(() =>
            new Promise<void>((resolve) => {
              const call = client.makeServerStreamRequest(
                "/test.Test/ServerStream",
                identity,
                identity,
                bytes({ count: 1 }),
              );
              call.on("data", () => {});
              call.on("error", () => {});
              call.on("status", () => resolve());
            })
          );
          await Promise.all(streams);
          assert.equal(backend.calls.ServerStream, before.ServerStream + 2, "not declared: passed through");
          // A declared bidi stream reaches the backend before its client has sent anything.
          const bidi = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
          bidi.on("error", () => {});
          await until(() => backend.calls.Bidi === before.Bidi + 1, "the bidi call at the backend", 10_000);
          const reply = new Promise<Buffer>((resolve) => bidi.once("data", resolve));
          bidi.write(bytes({ ping: 1 }));
          assert.deepEqual(parse(await reply), { echo: { ping: 1 } });
          bidi.end();
        } finally {
          client.close();
          await proxy.close();
        }
      });
    }
  } finally {
    reflectionServer.forceShutdown();
    backend.close();
  }
});
