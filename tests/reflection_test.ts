/**
 * fetchReflection() against real grpc-js backends on loopback: one serving reflection with the npm package
 * `@grpc/reflection` (which serves both v1 and v1alpha), one serving only v1alpha, one without reflection,
 * and scripted ones that answer wrongly. The catalog is checked against the descriptor set buf (npm
 * `@bufbuild/buf`, see _protos.ts) builds from the same .proto.
 */

import { ADMIN_PROTO, buildDescriptorSet, CATALOG_PROTO } from "./_protos.ts";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
// Inline until deno.json "imports" has them; then "@grpc/proto-loader" and "@grpc/reflection".
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { parseDescriptorSet } from "../src/policy/descriptor.ts";
import { ProtoWriter } from "../src/wire/protobuf.ts";
import { fetchReflection, ReflectionError } from "../src/policy/reflection.ts";

const V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/** Bound on every test: a bug fails as an assertion, not a hung suite. */
const TEST_LIMIT_MS = 15_000;

/** The .proto files in a temporary directory, their descriptor set from buf, and proto-loader's view. */
async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "reflection_test_" });
  await Deno.writeTextFile(`${dir}/catalog.proto`, CATALOG_PROTO);
  await Deno.writeTextFile(`${dir}/admin.proto`, ADMIN_PROTO);
  await buildDescriptorSet(dir, ["admin.proto"], `${dir}/set.pb`);
  return {
    expected: parseDescriptorSet(await Deno.readFile(`${dir}/set.pb`)),
    definition: protoLoader.loadSync("admin.proto", { includeDirs: [dir] }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A grpc-js server on a port-0 loopback socket, set up by `setup`; dispose shuts it down. */
async function serve(setup: (server: grpc.Server) => void) {
  const server = new grpc.Server();
  setup(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  return { address: `127.0.0.1:${port}`, [Symbol.dispose]: () => server.forceShutdown() };
}

const identity = (b: Buffer): Buffer => b;

/** A bidi method on `path` whose handler sees raw bytes, for scripting a reflection service. */
function rawBidi(path: string): grpc.ServiceDefinition {
  return {
    Info: {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };
}

/** A reflection v1 service that answers its nth request with `answers[n]`, and the rest not at all. */
function scripted(answers: Uint8Array[]) {
  return (server: grpc.Server) =>
    server.addService(rawBidi(V1), {
      Info(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
        let n = 0;
        call.on("data", () => {
          const answer = answers[n++];
          if (answer) call.write(Buffer.from(answer));
        });
        call.on("end", () => call.end());
      },
    });
}

/** A ServerReflectionResponse listing `services`. */
function listing(...services: string[]): Uint8Array {
  const list = new ProtoWriter();
  for (const name of services) list.bytes(1, new ProtoWriter().string(1, name).finish());
  return new ProtoWriter().bytes(6, list.finish()).finish();
}

/** A ServerReflectionResponse with `files` in a file_descriptor_response. */
function fileResponse(...files: Uint8Array[]): Uint8Array {
  const response = new ProtoWriter();
  for (const file of files) response.bytes(1, file);
  return new ProtoWriter().bytes(4, response.finish()).finish();
}

/** Rejects after `ms`; the timer is cleared either way. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** Awaits `promise`, expecting a ReflectionError whose message matches `expected`; returns it. */
async function reflectionError(promise: Promise<unknown>, expected: RegExp): Promise<ReflectionError> {
  const err = await within(TEST_LIMIT_MS, promise.then(() => undefined, (e) => e));
  assert.ok(err instanceof ReflectionError, `expected a ReflectionError, got ${err}`);
  assert.match(err.message, expected);
  return err;
}

Deno.test("fetchReflection() returns the catalog a compiler builds from the same .proto", async (t) => {
  await using files = await fixture();
  const catalog = files.definition["demo.catalog.Catalog"] as grpc.ServiceDefinition;
  using backend = await serve((server) => {
    new ReflectionService(files.definition).addToServer(server);
    server.addService(catalog, {
      Get: (call: grpc.ServerUnaryCall<{ id: string }, unknown>, callback: grpc.sendUnaryData<unknown>) =>
        callback(null, { id: call.request.id, body: "in stock" }),
    });
  });

  await t.step("streaming flags and idempotency of every method, imported files included", async () => {
    assert.equal(files.expected.size, 8);
    assert.deepEqual(await within(TEST_LIMIT_MS, fetchReflection(backend.address)), files.expected);
  });

  await t.step("the backend serves a real method beside reflection", async () => {
    const Client = grpc.makeGenericClientConstructor(catalog, "Catalog");
    const client = new Client(backend.address, grpc.credentials.createInsecure());
    try {
      const reply = await within(
        TEST_LIMIT_MS,
        new Promise((resolve, reject) =>
          client.Get({ id: "a" }, (err: Error | null, value: unknown) => err ? reject(err) : resolve(value))
        ),
      );
      assert.deepEqual(reply, { id: "a", body: "in stock" });
    } finally {
      client.close();
    }
  });
});

Deno.test("fetchReflection() falls back to v1alpha when the backend serves only that", async () => {
  await using files = await fixture();
  const offered: string[] = [];
  using backend = await serve((server) =>
    new ReflectionService(files.definition).addToServer({
      addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
        const path = Object.values(service)[0].path;
        offered.push(path);
        if (path !== V1) server.addService(service, implementation);
      },
    })
  );
  assert.deepEqual(
    offered,
    [V1, V1ALPHA],
    "@grpc/reflection offers both versions; the backend keeps v1alpha",
  );
  assert.deepEqual(await within(TEST_LIMIT_MS, fetchReflection(backend.address)), files.expected);
});

Deno.test("fetchReflection() does not ask about the backend's own grpc.reflection services", async (t) => {
  const method = new ProtoWriter().string(1, "M").string(2, ".demo.Req").string(3, ".demo.Res").finish();
  const file = new ProtoWriter().string(1, "s.proto").string(2, "demo")
    .bytes(6, new ProtoWriter().string(1, "S").bytes(2, method).finish()).finish();

  await t.step("only demo.S is asked for (one answer would be missing otherwise)", async () => {
    using backend = await serve(
      scripted([listing("grpc.reflection.v1.ServerReflection", "demo.S"), fileResponse(file)]),
    );
    assert.deepEqual(
      await within(TEST_LIMIT_MS, fetchReflection(backend.address)),
      new Map([["/demo.S/M", {
        clientStreaming: false,
        serverStreaming: false,
        idempotency: "IDEMPOTENCY_UNKNOWN",
      }]]),
    );
  });

  await t.step("a backend that lists nothing else gives an empty catalog", async () => {
    using backend = await serve(scripted([listing("grpc.reflection.v1alpha.ServerReflection")]));
    assert.deepEqual(await within(TEST_LIMIT_MS, fetchReflection(backend.address)), new Map());
  });
});

Deno.test("fetchReflection() says what is wrong", async (t) => {
  await t.step("a timeout that is not a positive number, or a target that is not one", async () => {
    await assert.rejects(fetchReflection("127.0.0.1:1", { timeoutMs: 0 }), RangeError);
    await reflectionError(fetchReflection(""), /^"" is not a gRPC target: /);
  });

  await t.step("a backend without reflection", async () => {
    using backend = await serve((server) => server.addService(rawBidi("/demo.Other/Info"), { Info() {} }));
    const err = await reflectionError(
      fetchReflection(backend.address),
      /^127\.0\.0\.1:\d+ does not serve grpc\.reflection\.v1 or v1alpha$/,
    );
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  });

  await t.step("an unreachable backend, well within the timeout", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const started = performance.now();
    const err = await reflectionError(
      fetchReflection(`127.0.0.1:${port}`, { timeoutMs: 3_000 }),
      new RegExp(`^cannot reach 127\\.0\\.0\\.1:${port} for reflection: `),
    );
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.ok(performance.now() - started < 3_000, "took the whole timeout");
  });

  await t.step("a backend that never answers, after timeoutMs", async () => {
    using backend = await serve(scripted([]));
    const started = performance.now();
    const err = await reflectionError(
      fetchReflection(backend.address, { timeoutMs: 300 }),
      /^127\.0\.0\.1:\d+ did not answer reflection within 300 ms$/,
    );
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(performance.now() - started >= 290, "gave up before the timeout");
  });

  await t.step("an error_response, with its code and message", async () => {
    const error = new ProtoWriter().varint(1, grpc.status.NOT_FOUND).string(2, "Symbol not found: demo.Gone");
    using backend = await serve(
      scripted([listing("demo.Gone"), new ProtoWriter().bytes(7, error.finish()).finish()]),
    );
    const err = await reflectionError(
      fetchReflection(backend.address),
      /could not answer reflection for the file declaring demo\.Gone: Symbol not found: demo\.Gone$/,
    );
    assert.equal(err.code, grpc.status.NOT_FOUND);
  });

  const malformed: [name: string, answers: Uint8Array[], expected: RegExp][] = [
    ["bytes that are not a message", [Uint8Array.of(0x0b, 1, 2)], /field 1 is a group/],
    ["files where the service list belongs", [fileResponse()], /expected list_services_response first/],
    [
      "a file that is not a FileDescriptorProto",
      [listing("demo.S"), fileResponse(new ProtoWriter().bytes(1, Uint8Array.of(0xff)).finish())],
      /file #1: not a FileDescriptorProto: field 1 is not valid UTF-8/,
    ],
    [
      "a service list where a file belongs",
      [listing("demo.S"), listing("demo.S")],
      /expected file_descriptor/,
    ],
  ];
  for (const [name, answers, expected] of malformed) {
    await t.step(`a malformed answer: ${name}`, async () => {
      using backend = await serve(scripted(answers));
      await reflectionError(
        fetchReflection(backend.address),
        new RegExp(`^malformed reflection answer from 127\\.0\\.0\\.1:\\d+: .*${expected.source}`),
      );
    });
  }
});
