import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import {
  encodeFrame,
  encodeGrpcMessage,
  FrameDecoder,
  frameOf,
  GrpcWireError,
  parseGrpcTimeout,
  Status,
} from "../src/wire/grpc_wire.ts";

Deno.test("FrameDecoder splits messages however the chunks fall", () => {
  const messages = [Buffer.from("a"), Buffer.alloc(0), Buffer.from("hello world"), Buffer.alloc(300, 7)];
  const wire = Buffer.concat(messages.map(encodeFrame));
  for (const chunkSize of [1, 2, 5, 6, 13, wire.length]) {
    const decoder = new FrameDecoder();
    const out: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += chunkSize) {
      out.push(...decoder.push(wire.subarray(i, i + chunkSize)));
    }
    decoder.finish();
    assert.deepEqual(out.map((m) => Buffer.from(m)), messages, `chunk size ${chunkSize}`);
  }
});

Deno.test("FrameDecoder.pushFrames() hands out whole frames: the backend's own bytes when they stand alone, a copy otherwise", () => {
  const message = new TextEncoder().encode("hello");
  const frame = encodeFrame(message);
  const alone = new FrameDecoder().pushFrames(frame);
  assert.equal(alone.length, 1);
  assert.equal(alone[0], frame, "a chunk that is one frame is passed on as it is");

  const decoder = new FrameDecoder();
  assert.deepEqual(decoder.pushFrames(frame.subarray(0, 3)), []);
  const joined = decoder.pushFrames(frame.subarray(3));
  assert.deepEqual(joined, [frame], "a frame split over chunks is joined");

  const big = new Uint8Array(4096);
  big.set(frame, 100);
  const inside = new FrameDecoder().pushFrames(big.subarray(100, 100 + frame.byteLength));
  assert.deepEqual(inside, [frame]);
  assert.notEqual(
    inside[0].buffer,
    big.buffer,
    "a small frame inside a large buffer is copied, not pinning it",
  );

  const two = new FrameDecoder().pushFrames(Buffer.concat([frame, encodeFrame(Uint8Array.of(1, 2))]));
  assert.deepEqual(two.map((f) => Array.from(f)), [
    Array.from(frame),
    Array.from(encodeFrame(Uint8Array.of(1, 2))),
  ]);

  const gz = gzipSync(message);
  const compressed = new Uint8Array(5 + gz.byteLength);
  compressed[0] = 1;
  new DataView(compressed.buffer).setUint32(1, gz.byteLength);
  compressed.set(gz, 5);
  assert.deepEqual(
    new FrameDecoder({ encoding: "gzip" }).pushFrames(compressed),
    [frame],
    "inflated, re-framed",
  );
});

Deno.test("FrameDecoder inflates gzip and deflate messages and enforces the size limit", async (t) => {
  const message = Buffer.from("x".repeat(1000));
  await t.step("gzip", () => {
    const compressed = gzipSync(message);
    const wire = Buffer.from(encodeFrame(compressed));
    wire[0] = 1;
    assert.deepEqual(Buffer.from(new FrameDecoder({ encoding: "gzip" }).push(wire)[0]), message);
  });
  await t.step("a frame longer than the limit", () => {
    const error = assert.throws(
      () => new FrameDecoder({ maxMessageBytes: 999 }).push(encodeFrame(message)),
      (err: unknown) => err instanceof GrpcWireError && err.code === Status.RESOURCE_EXHAUSTED,
    );
    return error;
  });
  await t.step("a gzip bomb: small frame, large inflated message", () => {
    const wire = Buffer.from(encodeFrame(gzipSync(Buffer.alloc(100_000))));
    wire[0] = 1;
    assert.throws(
      () => new FrameDecoder({ encoding: "gzip", maxMessageBytes: 1000 }).push(wire),
      (err: unknown) => err instanceof GrpcWireError,
    );
  });
  await t.step("a stream that ends inside a message", () => {
    const decoder = new FrameDecoder();
    decoder.push(encodeFrame(message).subarray(0, 10));
    assert.throws(() => decoder.finish(), GrpcWireError);
  });
});

Deno.test("parseGrpcTimeout() reads every unit and rejects malformed values", () => {
  assert.equal(parseGrpcTimeout(undefined), undefined);
  assert.equal(parseGrpcTimeout("1H"), 3_600_000);
  assert.equal(parseGrpcTimeout("2M"), 120_000);
  assert.equal(parseGrpcTimeout("3S"), 3_000);
  assert.equal(parseGrpcTimeout("100m"), 100);
  assert.equal(parseGrpcTimeout("5000u"), 5);
  assert.equal(parseGrpcTimeout("2000000n"), 2);
  for (const bad of ["", "10", "123456789S", "1s", "-1S", "1.5S"]) {
    assert.throws(() => parseGrpcTimeout(bad), GrpcWireError, bad);
  }
});

Deno.test("encodeGrpcMessage() percent-encodes what the spec asks", () => {
  assert.equal(encodeGrpcMessage("plain text"), "plain text");
  assert.equal(encodeGrpcMessage("100%"), "100%25");
  assert.equal(encodeGrpcMessage("nö\n"), "n%C3%B6%0A");
});

Deno.test("frameOf: a decoded message's own header is reused (a view, no copy); anything else is re-encoded", () => {
  const message = new TextEncoder().encode('{"key":"k"}');
  const frame = encodeFrame(message);
  const [decoded] = new FrameDecoder().push(frame);
  const reused = frameOf(decoded);
  assert.deepEqual(reused, frame);
  assert.equal(reused.buffer, frame.buffer); // the same bytes, not a copy
  // A message without its header before it (here: a bare array, and one behind a header of another length).
  assert.deepEqual(frameOf(message), frame);
  const other = new Uint8Array([0, 0, 0, 0, 99, ...message]);
  const misleading = frameOf(other.subarray(5));
  assert.deepEqual(misleading, frame);
  assert.notEqual(misleading.buffer, other.buffer);
  // A compressed frame's header (flag 1) is never reused for the inflated message.
  const flagged = new Uint8Array([1, 0, 0, 0, message.byteLength, ...message]);
  assert.deepEqual(frameOf(flagged.subarray(5)), frame);
});
