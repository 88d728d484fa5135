/**
 * descriptor.ts and protobuf.ts against descriptor sets that buf (npm `@bufbuild/buf`, see _protos.ts) builds
 * here, byte for byte what `protoc -o` writes, from .proto files the tests write: no binary fixture is
 * checked in.
 */

import { ADMIN_PROTO, buildDescriptorSet, CATALOG_PROTO } from "./_protos.ts";
import assert from "node:assert/strict";
import {
  DescriptorError,
  loadDescriptorSetFile,
  type MethodInfo,
  methodsFromFileDescriptors,
  parseDescriptorSet,
} from "../src/policy/descriptor.ts";
import { ProtobufError, ProtoReader, ProtoWriter } from "../src/wire/protobuf.ts";

const info = (
  clientStreaming: boolean,
  serverStreaming: boolean,
  idempotency: MethodInfo["idempotency"] = "IDEMPOTENCY_UNKNOWN",
): MethodInfo => ({ clientStreaming, serverStreaming, idempotency });

const ADMIN_METHODS: [string, MethodInfo][] = [
  ["/demo.admin.Admin/Ping", info(false, false, "NO_SIDE_EFFECTS")],
  ["/demo.admin.Admin/Restock", info(false, false)],
];

const EXPECTED = new Map<string, MethodInfo>([
  ["/demo.catalog.Catalog/Get", info(false, false, "NO_SIDE_EFFECTS")],
  ["/demo.catalog.Catalog/Put", info(false, false, "IDEMPOTENT")],
  ["/demo.catalog.Catalog/Delete", info(false, false)],
  ["/demo.catalog.Catalog/Upload", info(true, false)],
  ["/demo.catalog.Catalog/Watch", info(false, true)],
  ["/demo.catalog.Catalog/Chat", info(true, true)],
  ...ADMIN_METHODS,
]);

/** A temporary directory holding `files`, removed on dispose. */
async function tempDir(files: Record<string, string>): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "descriptor_test_" });
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${path}/${name}`, text);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** A deterministic PRNG (mulberry32), so random input is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(next: () => number, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => Math.floor(next() * 256));
}

Deno.test("parseDescriptorSet() reads what a compiler (buf, as protoc --include_imports) declares", async (t) => {
  await using dir = await tempDir({ "catalog.proto": CATALOG_PROTO, "admin.proto": ADMIN_PROTO });
  await buildDescriptorSet(dir.path, ["admin.proto"], `${dir.path}/set.pb`);
  const set = await Deno.readFile(`${dir.path}/set.pb`);

  await t.step("streaming flags and idempotency of every method, imported files included", () => {
    assert.deepEqual(parseDescriptorSet(set), EXPECTED);
  });

  await t.step("loadDescriptorSetFile() returns the same catalog", async () => {
    assert.deepEqual(await loadDescriptorSetFile(`${dir.path}/set.pb`), EXPECTED);
  });

  await t.step("without --include_imports only the named file's services are there", async () => {
    await buildDescriptorSet(dir.path, ["admin.proto"], `${dir.path}/alone.pb`, { includeImports: false });
    assert.deepEqual(parseDescriptorSet(await Deno.readFile(`${dir.path}/alone.pb`)), new Map(ADMIN_METHODS));
  });

  await t.step("methodsFromFileDescriptors() reads the set's files one by one", () => {
    const files: Uint8Array[] = [];
    const reader = new ProtoReader(set);
    while (reader.next()) files.push(reader.bytes());
    assert.equal(files.length, 3); // empty.proto, catalog.proto, admin.proto
    assert.deepEqual(methodsFromFileDescriptors(files), EXPECTED);
    assert.deepEqual(methodsFromFileDescriptors([...files, ...files]), EXPECTED, "a file given twice");
  });

  await t.step("a service outside any package has the path /Service/Method", async () => {
    const bare = `syntax = "proto3"; message M {} service Bare { rpc Call(M) returns (stream M); }`;
    await Deno.writeTextFile(`${dir.path}/bare.proto`, bare);
    await buildDescriptorSet(dir.path, ["bare.proto"], `${dir.path}/bare.pb`, { includeImports: false });
    assert.deepEqual(
      parseDescriptorSet(await Deno.readFile(`${dir.path}/bare.pb`)),
      new Map([["/Bare/Call", info(false, true)]]),
    );
  });

  await t.step("only DescriptorError comes out of random or mutated sets, and quickly", () => {
    const next = random(0x5eed);
    const started = performance.now();
    for (let i = 0; i < 4000; i++) {
      let input: Uint8Array;
      if (i % 4 === 0) input = randomBytes(next, Math.floor(next() * 512));
      else if (i % 4 === 1) input = set.subarray(0, Math.floor(next() * set.length));
      else {
        input = set.slice();
        for (let flips = 1 + Math.floor(next() * 3); flips > 0; flips--) {
          input[Math.floor(next() * input.length)] = Math.floor(next() * 256);
        }
      }
      try {
        parseDescriptorSet(input);
      } catch (err) {
        if (!(err instanceof DescriptorError)) throw new Error(`input #${i} raised ${err}`, { cause: err });
      }
    }
    assert.ok(performance.now() - started < 5_000, "4000 parses took over 5 s");
  });
});

Deno.test("loadDescriptorSetFile() says what is wrong, naming the file", async (t) => {
  await using dir = await tempDir({
    "catalog.proto": CATALOG_PROTO,
    "none.proto": `syntax = "proto3"; package demo.none; message Only { int32 x = 1; }`,
  });
  await buildDescriptorSet(dir.path, ["catalog.proto"], `${dir.path}/set.pb`);
  await buildDescriptorSet(dir.path, ["none.proto"], `${dir.path}/none.pb`);
  const set = await Deno.readFile(`${dir.path}/set.pb`);
  await Deno.writeFile(`${dir.path}/random.pb`, randomBytes(random(42), 4096));
  await Deno.writeFile(`${dir.path}/truncated.pb`, set.subarray(0, set.length - 7));
  await Deno.writeFile(`${dir.path}/empty.pb`, new Uint8Array());

  const cases: [name: string, file: string, expected: RegExp][] = [
    ["a missing file", "missing.pb", /^cannot read descriptor set .*missing\.pb: no such file$/],
    ["a directory", ".", /^cannot read descriptor set .*\/\.: /],
    ["a text file (the .proto itself)", "catalog.proto", /catalog\.proto is not a descriptor set.*group/],
    ["random bytes", "random.pb", /random\.pb is not a descriptor set/],
    ["a truncated set", "truncated.pb", /truncated\.pb is not a descriptor set.*remain/],
    ["a set with no services", "none.pb", /none\.pb declares no services/],
    ["an empty file", "empty.pb", /empty\.pb declares no services/],
  ];
  for (const [name, file, expected] of cases) {
    await t.step(name, async () => {
      await assert.rejects(loadDescriptorSetFile(`${dir.path}/${file}`), (err) => {
        assert.ok(err instanceof DescriptorError, `${err}`);
        assert.match(err.message, expected);
        return true;
      });
    });
  }
});

Deno.test("parseDescriptorSet() rejects a descriptor that is well-formed protobuf but not sense", async (t) => {
  const file = (build: (w: ProtoWriter) => ProtoWriter) =>
    build(new ProtoWriter().string(1, "x.proto")).finish();
  const service = (name: string, method: string) =>
    new ProtoWriter().string(1, name).bytes(2, new ProtoWriter().string(1, method).finish()).finish();
  const cases: [name: string, bytes: Uint8Array, expected: RegExp][] = [
    ["a service without a name", file((w) => w.bytes(6, service("", "M"))), /"x\.proto": service name ""/],
    ["a method named with a dot", file((w) => w.bytes(6, service("S", "a.b"))), /method name "a\.b" in S/],
    ["a package with a slash", file((w) => w.string(2, "a/b").bytes(6, service("S", "M"))), /package "a\/b"/],
    ["a string that is not UTF-8", file((w) => w.bytes(2, Uint8Array.of(0xff))), /"x\.proto".*UTF-8/],
    ["a service that is a varint", file((w) => w.varint(6, 1)), /"x\.proto".*wire type 0, expected 2/],
  ];
  for (const [name, bytes, expected] of cases) {
    await t.step(name, () => {
      const set = new ProtoWriter().bytes(1, bytes).finish();
      assert.throws(() => parseDescriptorSet(set), (err) => {
        assert.ok(err instanceof DescriptorError, `${err}`);
        assert.match(err.message, expected);
        return true;
      });
    });
  }

  await t.step("the same method declared twice, differently", () => {
    const stream = new ProtoWriter().string(1, "M").bool(6, true).finish();
    const a = file((w) => w.bytes(6, service("S", "M")));
    const b = new ProtoWriter().string(1, "y.proto").bytes(
      6,
      new ProtoWriter().string(1, "S").bytes(2, stream).finish(),
    )
      .finish();
    assert.throws(
      () => methodsFromFileDescriptors([a, b]),
      /"y\.proto": \/S\/M is declared twice, differently/,
    );
  });
});

Deno.test("ProtoReader and ProtoWriter round-trip every varint width, strings and bytes", () => {
  const values = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];
  const writer = new ProtoWriter();
  values.forEach((value, i) => writer.varint(i + 1, value));
  writer.string(100, "").string(536_870_911, "héllo ✓").bytes(101, Uint8Array.of(0, 255)).bool(102, true);
  const reader = new ProtoReader(writer.finish());
  const read: unknown[] = [];
  while (reader.next()) {
    if (reader.field <= values.length) read.push(reader.varint());
    else if (reader.field === 101) read.push([...reader.bytes()]);
    else if (reader.field === 102) read.push(reader.bool());
    else read.push(reader.string());
  }
  assert.deepEqual(read, [...values, "", "héllo ✓", [0, 255], true]);
});

Deno.test("ProtoReader skips unknown fields of wire types 0, 1, 2 and 5 and rejects the rest", async (t) => {
  await t.step("skip()", () => {
    // field 1 varint 300, field 2 fixed64, field 3 "ab", field 4 fixed32, field 5 varint 7
    const bytes = Uint8Array.of(
      0x08,
      0xac,
      0x02,
      0x11,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      0x1a,
      2,
      97,
      98,
      0x25,
      1,
      2,
      3,
      4,
      0x28,
      7,
    );
    const reader = new ProtoReader(bytes);
    let last = -1;
    while (reader.next()) {
      if (reader.field === 5) last = reader.varint();
      else reader.skip();
    }
    assert.equal(last, 7);
  });
  await t.step("message() reads an embedded message in place; its errors count from the outer buffer", () => {
    const outer = new ProtoReader(Uint8Array.of(0x08, 1, 0x12, 3, 0x08, 5, 0x0b));
    assert.ok(outer.next() && outer.varint() === 1 && outer.next());
    const inner = outer.message();
    assert.ok(inner.next() && inner.varint() === 5);
    assert.throws(() => inner.next(), /field 1 is a group \(wire type 3\).*at byte 6/);
    assert.equal(outer.next(), false);
  });
  const cases: [name: string, bytes: number[], expected: RegExp][] = [
    ["a start-group tag", [0x0b], /field 1 is a group \(wire type 3\).*at byte 0/],
    ["an end-group tag", [0x08, 0, 0x0c], /field 1 is a group \(wire type 4\).*at byte 2/],
    ["wire type 6", [0x0e], /invalid wire type 6/],
    ["wire type 7", [0x0f], /invalid wire type 7/],
    ["field number 0", [0x00], /invalid field number 0/],
    ["a truncated varint", [0x08, 0x80], /truncated varint at byte 1/],
    ["an 11-byte varint", [0x08, ...Array(10).fill(0xff), 1], /varint longer than 10 bytes/],
    ["a length past the end", [0x0a, 5, 1, 2], /field 1 is 5 bytes long but only 2 remain/],
    ["a truncated fixed64", [0x09, 1, 2, 3], /field 1 is truncated/],
    ["a truncated fixed32", [0x0d, 1], /field 1 is truncated/],
  ];
  for (const [name, bytes, expected] of cases) {
    await t.step(name, () => {
      const reader = new ProtoReader(Uint8Array.from(bytes));
      assert.throws(() => {
        while (reader.next()) reader.skip();
      }, (err) => err instanceof ProtobufError && expected.test(err.message));
    });
  }
});
