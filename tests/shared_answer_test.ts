import assert from "node:assert/strict";
import { decodeAnswer, encodeAnswer } from "../src/fleet/shared_answer.ts";
import type { ResponseEvent } from "../src/wire/response.ts";

const frame = (text: string) => new TextEncoder().encode(`\0\0\0\0${text}`);

Deno.test("shared answer: headers, messages, status and the call's duration survive the trip; the origin stays", () => {
  const events: ResponseEvent[] = [
    { type: "origin", spanContext: { traceId: "0".repeat(32), spanId: "1".repeat(16), traceFlags: 1 } },
    { type: "headers", headers: { "content-type": "application/grpc+proto", "x-a-bin": "AAE=" } },
    { type: "message", frame: frame("one") },
    { type: "message", frame: frame("") },
    { type: "status", code: 0, details: "", trailers: { "grpc-status": "0", "x-t": "v" } },
  ];
  const bytes = encodeAnswer(events, 42.5)!;
  // Without a stamp it reads as predating every purge, aged 0, stored for a TTL nobody noted.
  assert.deepEqual(decodeAnswer(bytes), {
    events: events.slice(1),
    tookMs: 42.5,
    stamp: 0,
    ageMs: 0,
    ttlMs: undefined,
  });
});

Deno.test("shared answer: the purge number its flight began with, its age and its stored TTL survive the trip", () => {
  const status: ResponseEvent = { type: "status", code: 0, details: "", trailers: { "grpc-status": "0" } };
  const bytes = encodeAnswer([status], 3, { stamp: 17, ageMs: 4_000, ttlMs: 60_000 })!;
  assert.deepEqual(decodeAnswer(bytes), {
    events: [status],
    tookMs: 3,
    stamp: 17,
    ageMs: 4_000,
    ttlMs: 60_000,
  });
});

Deno.test("shared answer: a trailers-only answer stays trailers-only; stale or unfinished answers are not shared", () => {
  const status: ResponseEvent = { type: "status", code: 5, details: "no", trailers: { "grpc-status": "5" } };
  assert.deepEqual(decodeAnswer(encodeAnswer([status], 1)!).events, [status]);
  assert.equal(encodeAnswer([{ type: "headers", headers: {}, stale: true }, status], 1), undefined);
  assert.equal(encodeAnswer([{ type: "headers", headers: {} }], 1), undefined, "no status: not an answer");
});

Deno.test("shared answer: bytes that are not an answer are refused with a RangeError, never misread", () => {
  const good = encodeAnswer([{ type: "message", frame: frame("x") }, {
    type: "status",
    code: 0,
    details: "",
    trailers: {},
  }], 1)!;
  for (
    const bad of [
      new Uint8Array(0),
      new Uint8Array([0, 0, 0, 9, 1]),
      good.subarray(0, good.byteLength - 1),
      new Uint8Array([...good, 7]),
      new Uint8Array([0, 0, 0, 2, 0x7b, 0x7d]), // "{}": no fields
    ]
  ) assert.throws(() => decodeAnswer(bad), RangeError);
});
