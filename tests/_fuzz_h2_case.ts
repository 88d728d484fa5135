/**
 * The HTTP/2-level case generator of the fuzz-case library (see `tests/_fuzz.ts`): the bytes of a plain TCP
 * connection, a preface (or not) and then frames of every type, with bad stream ids, lengths, flags,
 * SETTINGS, WINDOW_UPDATEs, invalid HPACK and CONTINUATION floods, re-cut at random points. The frame and
 * HPACK encoding is `tests/_fuzz_h2.ts`.
 *
 * @module
 */

import {
  BASE64,
  concat,
  GRPC,
  grpcFrame,
  type H2Case,
  type Rng,
  splitBytes,
  TOKEN,
  UNARY,
} from "./_fuzz_core.ts";
import {
  ACK,
  END_HEADERS,
  END_STREAM,
  FrameType,
  h2Frame,
  headerFrames,
  hpackBlock,
  PADDED,
  PREFACE,
  PRIORITY_FLAG,
  u32s,
} from "./_fuzz_h2.ts";

/** Header blocks that are not valid HPACK. */
function garbageHpack(rng: Rng): Uint8Array {
  return rng.pick([
    () => rng.bytes(rng.range(1, 200)),
    () => Uint8Array.of(0x80), // indexed field 0
    () => Uint8Array.of(0xff, 0x80), // an index far beyond the tables
    () => Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), // integer overflow
    () => Uint8Array.of(0x00, 0x7f, 0xff, 0xff, 0x03, 0x61, 0x62), // a string longer than the block
    () => Uint8Array.of(0x00, 0x81, 0xff, 0x81, 0x00), // Huffman with invalid padding / EOS
    () => Uint8Array.of(0x3f, 0xff, 0xff, 0xff, 0x0f), // table size update beyond the setting
    () => Uint8Array.of(0x83, 0x20), // table size update after a field
    () => Uint8Array.of(0x40, 0x00, 0x00), // an empty name
  ])();
}

/** The header fields of a gRPC request, sometimes with something wrong in them. */
function requestFields(rng: Rng, labels: string[]): [string, string][] {
  const fields: [string, string][] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", rng.pick([UNARY, UNARY, "/test.Test/Bidi", "/test.Test/ServerStream", "/x.Y/Z"])],
    [":authority", "127.0.0.1"],
    ["content-type", GRPC],
    ["te", "trailers"],
  ];
  if (rng.chance(0.35)) {
    const flaw = rng.pick(
      [
        "upperName",
        "highByteName",
        "nulValue",
        "crlfValue",
        "pseudoAfterRegular",
        "duplicatePath",
        "missingPath",
        "missingMethod",
        "unknownPseudo",
        "connectionHeader",
        "teGzip",
        "binSeparatorRun",
        "emptyName",
        "hugeValue",
        "spaceInName",
      ] as const,
    );
    labels.push(`flaw:${flaw}`);
    switch (flaw) {
      case "upperName":
        fields.push(["X-Upper", "v"]);
        break;
      case "highByteName":
        fields.push([`x-\u00e9\u00ff${rng.int(10)}`, "v"]);
        break;
      case "nulValue":
        fields.push(["x-nul", "a\u0000b"]);
        break;
      case "crlfValue":
        fields.push(["x-crlf", "a\r\nx-injected: 1"]);
        break;
      case "pseudoAfterRegular":
        fields.push([":status", "200"]);
        break;
      case "duplicatePath":
        fields.push([":path", "/test.Test/Bidi"]);
        break;
      case "missingPath":
        fields.splice(2, 1);
        break;
      case "missingMethod":
        fields.splice(0, 1);
        break;
      case "unknownPseudo":
        fields.push([":foo", "bar"]);
        break;
      case "connectionHeader":
        fields.push(["connection", "close"]);
        break;
      case "teGzip":
        fields[5] = ["te", "gzip"];
        break;
      case "binSeparatorRun": {
        const n = rng.range(1_000, 5_000);
        fields.push(["x-run-bin", ",".repeat(n)]);
        break;
      }
      case "emptyName":
        fields.push(["", "v"]);
        break;
      case "hugeValue":
        fields.push(["x-huge", rng.text(rng.pick([20_000, 70_000]), BASE64)]);
        break;
      case "spaceInName":
        fields.push(["x bad", "v"]);
        break;
    }
  }
  if (rng.chance(0.3)) fields.push(["authorization", `Bearer ${rng.text(8, TOKEN)}`]);
  return fields;
}

interface StreamState {
  next: number;
  used: number[];
}

/** A stream id of a random kind: 0, a new one, even, reused, huge, with the reserved bit, or going backwards. */
function streamId(rng: Rng, state: StreamState, labels: string[]): number {
  const kind = rng.weighted(
    [
      [40, "new"],
      [10, "zero"],
      [10, "even"],
      [15, "reused"],
      [8, "huge"],
      [7, "reserved"],
      [10, "backwards"],
    ] as const,
  );
  if (kind !== "new") labels.push(`sid:${kind}`);
  switch (kind) {
    case "new": {
      const id = state.next;
      state.next += 2;
      state.used.push(id);
      return id;
    }
    case "zero":
      return 0;
    case "even":
      return 2 * rng.range(1, 1000);
    case "reused":
      return state.used.length > 0 ? rng.pick(state.used) : 1;
    case "huge":
      return 0x7fffffff - 2 * rng.int(3);
    case "reserved":
      return 0x80000000 | (state.next + 2 * rng.int(4));
    case "backwards":
      return Math.max(1, state.next - 2 * rng.range(1, 4)) | 1;
  }
}

/** The next few frames of a raw HTTP/2 case. */
function randomFrames(rng: Rng, state: StreamState, labels: string[]): Uint8Array[] {
  const kind = rng.weighted(
    [
      [16, "request"],
      [6, "headersGarbage"],
      [8, "data"],
      [4, "priority"],
      [6, "rstStream"],
      [8, "settings"],
      [2, "pushPromise"],
      [5, "ping"],
      [4, "goaway"],
      [8, "windowUpdate"],
      [3, "strayContinuation"],
      [4, "continuationFlood"],
      [5, "unknown"],
      [3, "manyStreams"],
      [6, "badLength"],
    ] as const,
  );
  labels.push(kind);
  const anyPayload = () => rng.bytes(rng.pick([0, 1, 4, 5, 8, 9, rng.range(0, 300)]));
  switch (kind) {
    case "request": {
      let stream: number;
      if (rng.chance(0.85)) {
        stream = state.next;
        state.next += 2;
        state.used.push(stream);
      } else stream = streamId(rng, state, labels);
      const block = hpackBlock(rng, requestFields(rng, labels));
      const flags = rng.chance(0.1) ? END_STREAM : 0;
      const frames = headerFrames(block, stream, flags);
      for (let i = rng.weighted([[70, 1], [15, 0], [15, 2]] as const); i > 0; i--) {
        const message = grpcFrame(0, new TextEncoder().encode(JSON.stringify({ raw: rng.int(20) })));
        frames.push(h2Frame(FrameType.DATA, i === 1 && rng.chance(0.9) ? END_STREAM : 0, stream, message));
      }
      return frames;
    }
    case "headersGarbage": {
      let flags = rng.chance(0.8) ? END_HEADERS : 0;
      let payload = garbageHpack(rng);
      if (rng.chance(0.2)) {
        flags |= PADDED;
        payload = concat([Uint8Array.of(rng.int(256)), payload]); // a pad length that may exceed the frame
      }
      if (rng.chance(0.2)) {
        flags |= PRIORITY_FLAG;
        const self = state.next;
        payload = concat([u32s(rng.chance(0.5) ? self : rng.u32()), Uint8Array.of(rng.int(256)), payload]);
      }
      return [h2Frame(FrameType.HEADERS, flags, streamId(rng, state, labels), payload)];
    }
    case "data": {
      let flags = rng.int(256) & (END_STREAM | PADDED | rng.int(256));
      let payload = anyPayload();
      if (rng.chance(0.2)) {
        flags |= PADDED;
        payload = concat([Uint8Array.of(rng.int(256)), payload]);
      }
      return [h2Frame(FrameType.DATA, flags, streamId(rng, state, labels), payload)];
    }
    case "priority": {
      const stream = streamId(rng, state, labels);
      const payload = rng.chance(0.7)
        ? concat([u32s(rng.chance(0.3) ? stream : rng.u32()), rng.bytes(1)])
        : anyPayload();
      return [h2Frame(FrameType.PRIORITY, rng.int(256), stream, payload)];
    }
    case "rstStream":
      return [
        h2Frame(
          FrameType.RST_STREAM,
          0,
          streamId(rng, state, labels),
          rng.chance(0.8) ? u32s(rng.range(0, 14)) : anyPayload(),
        ),
      ];
    case "settings":
      return [settingsFrame(rng, labels)];
    case "pushPromise":
      return [
        h2Frame(
          FrameType.PUSH_PROMISE,
          END_HEADERS,
          streamId(rng, state, labels),
          concat([u32s(2), garbageHpack(rng)]),
        ),
      ];
    case "ping":
      return [
        h2Frame(
          FrameType.PING,
          rng.chance(0.3) ? ACK : 0,
          rng.chance(0.8) ? 0 : rng.range(1, 9),
          rng.chance(0.8) ? rng.bytes(8) : anyPayload(),
        ),
      ];
    case "goaway":
      return [
        h2Frame(
          FrameType.GOAWAY,
          0,
          rng.chance(0.9) ? 0 : 1,
          concat([u32s(rng.u32(), rng.range(0, 14)), rng.bytes(rng.int(20))]),
        ),
      ];
    case "windowUpdate": {
      const stream = rng.chance(0.5) ? 0 : streamId(rng, state, labels);
      const increment = rng.pick([0, 1, 0x7fffffff, 0x7fffffff, 0x80000000, rng.u32()]);
      const frame = h2Frame(
        FrameType.WINDOW_UPDATE,
        0,
        stream,
        rng.chance(0.9) ? u32s(increment) : anyPayload(),
      );
      return rng.chance(0.4) ? [frame, frame] : [frame]; // twice: the window overflows
    }
    case "strayContinuation":
      return [
        h2Frame(
          FrameType.CONTINUATION,
          rng.pick([0, END_HEADERS]),
          streamId(rng, state, labels),
          garbageHpack(rng),
        ),
      ];
    case "continuationFlood": {
      const stream = streamId(rng, state, labels);
      const block = hpackBlock(rng, requestFields(rng, labels));
      const frames = [
        h2Frame(FrameType.HEADERS, 0, stream, block.subarray(0, Math.min(block.byteLength, 10))),
      ];
      const count = rng.pick([10, 100, 500, 2_000]);
      const payload = rng.chance(0.5)
        ? new Uint8Array()
        : hpackBlock(rng, [["x-flood", rng.text(rng.range(1, 200), TOKEN)]]);
      for (let i = 0; i < count; i++) frames.push(h2Frame(FrameType.CONTINUATION, 0, stream, payload));
      if (rng.chance(0.3)) {
        frames.push(h2Frame(FrameType.CONTINUATION, END_HEADERS, stream, new Uint8Array()));
      }
      labels.push(`x${count}`);
      return frames;
    }
    case "unknown":
      return [h2Frame(rng.range(10, 255), rng.int(256), streamId(rng, state, labels), anyPayload())];
    case "manyStreams": {
      const frames: Uint8Array[] = [];
      const count = rng.pick([20, 100, 300]);
      labels.push(`x${count}`);
      const block = hpackBlock(rng, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", UNARY],
        [":authority", "a"],
        ["content-type", GRPC],
        ["te", "trailers"],
      ]);
      const end = rng.chance(0.5);
      for (let i = 0; i < count; i++) {
        const stream = state.next;
        state.next += 2;
        state.used.push(stream);
        frames.push(h2Frame(FrameType.HEADERS, END_HEADERS, stream, block));
        if (end) frames.push(h2Frame(FrameType.DATA, END_STREAM, stream, grpcFrame(0, Uint8Array.of(0x31))));
        else if (rng.chance(0.5)) frames.push(h2Frame(FrameType.RST_STREAM, 0, stream, u32s(8)));
      }
      return frames;
    }
    case "badLength": {
      // A frame whose length field disagrees with what follows (or exceeds the frame size limit).
      const payload = anyPayload();
      const declared = rng.pick([
        0,
        payload.byteLength + 1,
        Math.max(0, payload.byteLength - 1),
        16_385,
        0xffffff,
      ]);
      return [
        h2Frame(
          rng.pick([0, 1, 3, 4, 6, 8, 9]),
          rng.int(256),
          streamId(rng, state, labels),
          payload,
          declared,
        ),
      ];
    }
  }
}

function settingsFrame(rng: Rng, labels: string[]): Uint8Array {
  const roll = rng.next();
  if (roll < 0.35) return h2Frame(FrameType.SETTINGS, 0, 0, new Uint8Array());
  if (roll < 0.45) {
    labels.push("settings:odd");
    return rng.pick([
      () => h2Frame(FrameType.SETTINGS, ACK, 0, rng.bytes(6)), // ACK with a payload
      () => h2Frame(FrameType.SETTINGS, 0, 0, rng.bytes(rng.range(1, 5))), // not a multiple of 6
      () => h2Frame(FrameType.SETTINGS, 0, 1, new Uint8Array()), // on a stream
      () => h2Frame(FrameType.SETTINGS, ACK, 0, new Uint8Array()), // an unsolicited ACK
    ])();
  }
  const entries: number[] = [];
  for (let i = rng.range(1, 6); i > 0; i--) {
    const id = rng.chance(0.85) ? rng.range(1, 9) : rng.int(0x10000);
    const value = rng.pick([
      0,
      1,
      100,
      16_383,
      16_384,
      65_535,
      0x7fffffff,
      0x80000000,
      0xffffff,
      0x1000000,
      0xffffffff,
      rng.u32(),
    ]);
    entries.push(id, value);
  }
  const payload = new Uint8Array(entries.length * 3);
  const view = new DataView(payload.buffer);
  for (let i = 0; i < entries.length; i += 2) {
    view.setUint16(i * 3, entries[i]);
    view.setUint32(i * 3 + 2, entries[i + 1] >>> 0);
  }
  labels.push("settings:random");
  return h2Frame(FrameType.SETTINGS, 0, 0, payload);
}

export function generateH2Case(rng: Rng, seed: number, index: number): H2Case {
  const labels: string[] = [];
  const parts: Uint8Array[] = [];
  const opening = rng.weighted(
    [
      [86, "preface"],
      [4, "garbageFirst"],
      [4, "badPreface"],
      [3, "http1"],
      [3, "nothing"],
    ] as const,
  );
  if (opening !== "preface") labels.push(opening);
  if (opening === "garbageFirst") parts.push(rng.bytes(rng.range(1, 100)), PREFACE);
  else if (opening === "badPreface") {
    const bad = PREFACE.slice();
    bad[rng.int(bad.length)] ^= 1 << rng.int(8);
    parts.push(rng.chance(0.5) ? bad : PREFACE.subarray(0, rng.range(1, PREFACE.length - 1)));
  } else if (opening === "http1") {
    parts.push(new TextEncoder().encode("POST /test.Test/Unary HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n"));
  } else if (opening === "preface") parts.push(PREFACE);
  if (rng.chance(0.85)) parts.push(settingsFrame(rng, labels));
  const state: StreamState = { next: 1, used: [] };
  for (let n = rng.range(1, 10); n > 0; n--) parts.push(...randomFrames(rng, state, labels));
  // Re-cut the byte stream, so frames also arrive split across reads.
  const bytes = concat(parts);
  const chunks = rng.chance(0.5) ? [bytes] : splitBytes(rng, bytes, rng.range(2, 6));
  const gapsMs = chunks.map(() => rng.chance(0.15) ? rng.range(1, 3) : 0);
  return { kind: "h2", seed, index, labels, chunks, gapsMs };
}
