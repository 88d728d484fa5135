/**
 * The gRPC-level case generator of the fuzz-case library (see `tests/_fuzz.ts`): a call over a raw
 * `node:http2` client with an odd path, method, content type, metadata, `grpc-timeout`, `grpc-encoding` and
 * request body, END_STREAM or not, reset at a random point. The answer the case must get, where the protocol
 * alone says, comes from `tests/_fuzz_grpc_expect.ts`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { deflateSync, gzipSync } from "node:zlib";
import {
  BASE64,
  concat,
  type FuzzTarget,
  GRPC,
  type GrpcCase,
  grpcFrame,
  type Rng,
  splitBytes,
  TOKEN,
  UNARY,
} from "./_fuzz_core.ts";
import { EARLY_SAFE_METADATA, expectation } from "./_fuzz_grpc_expect.ts";

const PRINTABLE =
  " !\"#$&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/** UTF-8 bytes of `text` as a string of char codes 0–255: how node:http2 puts them on the wire as is. */
function latin1OfUtf8(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

export function generateGrpcCase(rng: Rng, seed: number, index: number, target: FuzzTarget): GrpcCase {
  const labels: string[] = [];
  const headers: Record<string, string | string[]> = {};

  // :path
  const pathKind = rng.weighted(
    [
      [34, "unary"],
      [7, "serverStream"],
      [6, "bidi"],
      [4, "clientStream"],
      [5, "health"],
      [5, "unknown"],
      [9, "garbage"],
      [3, "empty"],
      [5, "long"],
      [9, "unicode"],
      [5, "odd"],
    ] as const,
  );
  labels.push(`path:${pathKind}`);
  // Every entry is drawn, whichever is used: the draws after this do not depend on the kind.
  headers[":path"] = {
    unary: UNARY,
    serverStream: "/test.Test/ServerStream",
    bidi: "/test.Test/Bidi",
    clientStream: "/test.Test/ClientStream",
    health: "/grpc.health.v1.Health/Check",
    unknown: rng.pick(["/test.Test/Nope", "/no.Such/Method", "/test.Test/unary"]),
    garbage: rng.text(rng.range(1, 40), PRINTABLE),
    empty: "",
    long: "/" + rng.text(rng.range(1_000, 20_000), TOKEN),
    unicode: rng.chance(0.8)
      ? latin1OfUtf8(rng.pick(["/tést.Tést/Ünäry", "/测试/方法", "/😀/😀", "/test.Test/Unary\u00e9"]))
      : rng.pick(["/tést/ü", "/😀"]), // above U+00FF: node:http2 may refuse it
    odd: rng.pick([
      "*",
      "//",
      "/test.Test/Unary?x=1",
      "/test.Test/Unary#f",
      "/test.Test/Unary/x",
      "/%00",
      " /a",
    ]),
  }[pathKind];

  // :method and content-type
  const method = rng.weighted([[94, "POST"], [3, "GET"], [3, "PUT"]] as const);
  headers[":method"] = method;
  if (method !== "POST") labels.push(`method:${method}`);
  const contentType = rng.weighted<string | readonly string[] | undefined>([
    [55, GRPC],
    [14, "application/grpc+proto"],
    [4, "application/grpc+json"],
    [8, "text/html"],
    [8, undefined],
    [3, ""],
    [3, "application/grpcweb"],
    [3, "APPLICATION/GRPC"],
    [2, [GRPC, GRPC]],
  ]);
  labels.push(`ct:${contentType === undefined ? "missing" : JSON.stringify(contentType).slice(0, 24)}`);
  if (contentType !== undefined) {
    headers["content-type"] = typeof contentType === "string" ? contentType : [...contentType];
  }
  if (rng.chance(0.9)) headers.te = "trailers";

  // Metadata
  const metadataKind = rng.weighted([[35, "none"], [35, "sane"], [30, "weird"]] as const);
  let weirdKinds: readonly string[] = [];
  labels.push(`md:${metadataKind}`);
  if (metadataKind === "sane") {
    for (let i = rng.range(1, 5); i > 0; i--) headers[`x-k${rng.int(8)}`] = rng.text(rng.range(0, 30), TOKEN);
    if (rng.chance(0.4)) headers.authorization = `Bearer ${rng.text(12, TOKEN)}`;
    if (rng.chance(0.3)) {
      headers["x-tenant-bin"] = Buffer.from(rng.bytes(rng.range(0, 12))).toString("base64");
    }
  } else if (metadataKind === "weird") {
    weirdKinds = weirdMetadata(rng, headers, labels);
  }

  // grpc-timeout
  const timeoutKind = rng.weighted(
    [[50, "none"], [20, "valid"], [10, "garbage"], [10, "zero"], [10, "huge"]] as const,
  );
  if (timeoutKind !== "none") {
    headers["grpc-timeout"] = {
      valid: rng.pick(["100m", "5S", "30S", "1H", "200000u", "50000000n", "1M"]),
      garbage: rng.pick([
        "abc",
        "10",
        "1x",
        "-1S",
        "1.5S",
        "123456789S",
        "S",
        "",
        "5 S",
        "5s",
        "9".repeat(200),
      ]),
      zero: rng.pick(["0m", "0S", "0n", "00000000H"]),
      huge: rng.pick(["99999999H", "99999999M", "99999999S"]),
    }[timeoutKind];
    labels.push(`timeout:${timeoutKind}=${JSON.stringify(headers["grpc-timeout"]).slice(0, 12)}`);
  }

  // grpc-encoding
  const encoding = rng.weighted(
    [
      [50, undefined],
      [14, "identity"],
      [13, "gzip"],
      [8, "deflate"],
      [5, "snappy"],
      [5, rng.pick(["GZIP", "gzip, deflate", "x".repeat(300), "br", ""])],
    ] as const,
  );
  if (encoding !== undefined) {
    headers["grpc-encoding"] = encoding;
    labels.push(`enc:${encoding.slice(0, 16)}`);
  }
  if (rng.chance(0.3)) headers["grpc-accept-encoding"] = rng.pick(["identity,gzip", "gzip", "garbage"]);

  // Body
  const body = requestBody(rng, encoding, target, pathKind === "clientStream");
  labels.push(`body:${body.kind}`);
  const chunks = splitBytes(rng, body.bytes, rng.range(1, 4));
  const gapsMs = chunks.map(() => rng.chance(0.2) ? rng.range(1, 3) : 0);
  const endStream = rng.chance(0.85);
  if (!endStream) labels.push("no-end-stream");
  const resetAt = rng.weighted(
    [
      [76, "none"],
      [6, "beforeBody"],
      [7, "midBody"],
      [7, "afterHeaders"],
      [4, "destroySession"],
    ] as const,
  );
  const reset = {
    at: resetAt,
    afterChunks: rng.int(chunks.length + 1),
    code: rng.chance(0.8) ? rng.pick([0, 1, 2, 3, 5, 7, 8, 11]) : rng.u32(),
  };
  if (resetAt !== "none") labels.push(`reset:${resetAt}`);

  // HTTP caching metadata, drawn last so every draw above stays what it was: the caller's cache-control, and
  // (through x-fuzz-* headers the fuzz backend turns into its answer's metadata) the backend's cache-control,
  // age and surrogate-key, valid, odd and malformed.
  cachingMetadata(rng, headers, labels);

  const expect = resetAt === "none" && endStream
    ? expectation({
      method,
      contentType,
      timeout: headers["grpc-timeout"] as string | undefined,
      encoding,
      pathKind,
      metadata: metadataKind !== "weird"
        ? "any"
        : weirdKinds.every((kind) => EARLY_SAFE_METADATA.has(kind))
        ? "early"
        : "none",
      body: body.bytes,
      target,
    })
    : undefined;
  return { kind: "grpc", seed, index, labels, headers, chunks, gapsMs, endStream, reset, expect };
}

/** Printable ASCII: what gRPC metadata values may hold. */
const VISIBLE = PRINTABLE;

/**
 * The caller's `cache-control`, and `x-fuzz-cache-control`, `x-fuzz-cache-control-trailer`, `x-fuzz-age` and
 * `x-fuzz-surrogate-key`, which the fuzz backend (tests/_fuzz.ts) sends back as its answer's `cache-control`
 * (headers, trailers), `age` and `surrogate-key`.
 */
function cachingMetadata(rng: Rng, headers: Record<string, string | string[]>, labels: string[]): void {
  const directive = () =>
    rng.weighted<string>([
      [4, "max-age=1"],
      [3, "max-age=0"],
      [3, "no-store"],
      [2, "private"],
      [3, "no-cache"],
      [2, 's-maxage=2, stale-while-revalidate=1, no-cache="x-a"'],
      [2, "stale-if-error=5, must-revalidate"],
      [3, "max-age=99999999999999999999"],
      [3, "max-age=-1"],
      [3, "max-age=abc"],
      [2, 'max-age="3'],
      [2, "=,=,,max-age"],
      [2, "max-age=1.5, max-age=2"],
      [1, "x".repeat(9_000)],
      [6, rng.text(rng.range(0, 60), VISIBLE)],
    ]);
  if (rng.chance(0.25)) {
    headers["cache-control"] = rng.chance(0.5)
      ? rng.pick(["no-cache", "max-age=0", "max-age=0, no-cache"])
      : directive();
    labels.push("cc:request");
  }
  if (rng.chance(0.3)) {
    headers[rng.chance(0.7) ? "x-fuzz-cache-control" : "x-fuzz-cache-control-trailer"] = directive();
    labels.push("cc:response");
  }
  if (rng.chance(0.1)) headers["x-fuzz-age"] = rng.pick(["5", "-1", "abc", "99999999999", "", " 3 "]);
  if (rng.chance(0.15)) {
    headers["x-fuzz-surrogate-key"] = rng.chance(0.8)
      ? Array.from({ length: rng.range(1, 6) }, () => rng.text(rng.range(1, 12), TOKEN)).join(" ")
      : rng.text(rng.range(0, 3_000), VISIBLE);
  }
}

/** Metadata a well-behaved client would not send: bad -bin, huge values, many entries, reserved names. */
function weirdMetadata(
  rng: Rng,
  headers: Record<string, string | string[]>,
  labels: string[],
): string[] {
  const kinds: string[] = [];
  for (let i = rng.range(1, 3); i > 0; i--) {
    const kind = rng.weighted(
      [
        [16, "badBin"],
        [10, "binList"],
        [5, "binSeparatorRun"],
        [8, "hugeValue"],
        [6, "manyEntries"],
        [8, "repeated"],
        [8, "reservedName"],
        [6, "upperName"],
        [6, "highBytes"],
        [5, "controlChars"],
        [6, "emptyValue"],
        [8, "keyHeaders"],
        [4, "connection"],
      ] as const,
    );
    labels.push(kind);
    kinds.push(kind);
    switch (kind) {
      case "badBin":
        headers[`x-${rng.text(4, TOKEN)}-bin`] =
          rng.pick(["!!!", "@@@@", "a", "====", "A===", "*", "\u00ff\u00fe"]) +
          (rng.chance(0.5) ? rng.text(rng.range(0, 40), PRINTABLE.replace(",", "")) : "");
        break;
      case "binList": {
        const parts = Array.from(
          { length: rng.range(2, 12) },
          () => rng.chance(0.3) ? "" : Buffer.from(rng.bytes(rng.range(0, 9))).toString("base64"),
        );
        headers["x-list-bin"] = parts.join(rng.pick([",", ", ", ",,"]));
        break;
      }
      case "binSeparatorRun": {
        // gRPC joins repeated -bin values with commas: a long run of empty values.
        const n = rng.pick([1_500, 3_000, 8_000, 16_000, 40_000]);
        headers[`x-run${rng.int(3)}-bin`] = rng.weighted([[70, ","], [15, ", "], [15, ",A"]] as const).repeat(
          n,
        );
        break;
      }
      case "hugeValue":
        headers[`x-huge${rng.int(3)}`] = rng.text(rng.pick([8_000, 20_000, 70_000, 120_000]), BASE64);
        break;
      case "manyEntries":
        for (let n = rng.pick([50, 127, 129, 300]); n > 0; n--) {
          headers[`x-m${n}`] = rng.text(rng.range(0, 8), TOKEN);
        }
        break;
      case "repeated":
        headers[rng.pick(["x-rep", "x-rep-bin", "authorization", "grpc-timeout", "grpc-encoding"])] = [
          rng.pick(["a", "AAEC", "5S", "gzip"]),
          rng.pick(["b", "AwQ=", "1m", "identity", ""]),
        ];
        break;
      case "reservedName":
        headers[rng.pick(["grpc-status", "grpc-message", "grpc-foo", "grpc-previous-rpc-attempts", "host"])] =
          rng
            .pick(["0", "13", "x", ""]);
        break;
      case "upperName":
        headers[rng.pick(["X-Upper", "Authorization", "X-TENANT"])] = "v";
        break;
      case "highBytes":
        headers[`x-high${rng.int(3)}`] = String.fromCharCode(
          ...rng.bytes(rng.range(1, 40)).map((b) => 0x80 | b),
        );
        break;
      case "controlChars":
        headers["x-ctl"] = rng.pick(["a\u0001b", "\u007f", "a\tb", "a\u0000b", "a\rb"]);
        break;
      case "emptyValue":
        headers[rng.pick(["x-empty", "authorization", "x-empty-bin"])] = "";
        break;
      case "keyHeaders":
        headers[rng.pick(["x-request-id", "traceparent", "grpc-trace-bin", "cookie", "x-tenant"])] = rng.text(
          rng.range(0, 50),
          BASE64,
        );
        break;
      case "connection":
        headers[rng.pick(["connection", "keep-alive", "transfer-encoding", "upgrade", "te"])] = "x";
        break;
    }
  }
  return kinds;
}

type BodyKind =
  | "valid"
  | "validCompressed"
  | "compressedGarbage"
  | "badFlag"
  | "lengthLarger"
  | "lengthSmaller"
  | "truncatedPrefix"
  | "zeroLength"
  | "empty"
  | "several"
  | "overLimitDeclared"
  | "overLimitReal"
  | "bomb"
  | "random";

/** A request body of one of the kinds above (ClientStream's backend parses nothing, but gets JSON anyway). */
function requestBody(
  rng: Rng,
  encoding: string | undefined,
  target: FuzzTarget,
  jsonOnly: boolean,
): { kind: BodyKind; bytes: Uint8Array } {
  const kind: BodyKind = jsonOnly ? rng.pick(["valid", "several"] as const) : rng.weighted(
    [
      [28, "valid"],
      [8, "validCompressed"],
      [6, "compressedGarbage"],
      [6, "badFlag"],
      [6, "lengthLarger"],
      [6, "lengthSmaller"],
      [4, "truncatedPrefix"],
      [5, "zeroLength"],
      [4, "empty"],
      [8, "several"],
      [4, "overLimitDeclared"],
      [1, "overLimitReal"],
      [3, "bomb"],
      [6, "random"],
    ] as const,
  );
  const message = () =>
    new TextEncoder().encode(JSON.stringify({ q: rng.int(50), s: rng.text(rng.range(0, 40), TOKEN) }));
  const compress = (m: Uint8Array) => encoding === "deflate" ? deflateSync(m) : gzipSync(m);
  switch (kind) {
    case "valid":
      return { kind, bytes: grpcFrame(0, message()) };
    case "validCompressed":
      return { kind, bytes: grpcFrame(1, compress(message())) };
    case "compressedGarbage":
      return { kind, bytes: grpcFrame(1, rng.bytes(rng.range(0, 64))) };
    case "badFlag":
      return { kind, bytes: grpcFrame(rng.range(2, 255), message()) };
    case "lengthLarger": {
      const m = message();
      return { kind, bytes: grpcFrame(0, m, m.byteLength + rng.range(1, 1000)) };
    }
    case "lengthSmaller": {
      const m = message();
      return { kind, bytes: grpcFrame(0, m, rng.int(Math.max(1, m.byteLength))) };
    }
    case "truncatedPrefix":
      return { kind, bytes: grpcFrame(0, message()).subarray(0, rng.range(1, 4)) };
    case "zeroLength":
      return { kind, bytes: grpcFrame(0, new Uint8Array()) };
    case "empty":
      return { kind, bytes: new Uint8Array() };
    case "several":
      return { kind, bytes: concat(Array.from({ length: rng.range(2, 5) }, () => grpcFrame(0, message()))) };
    case "overLimitDeclared": {
      const declared = rng.chance(0.5)
        ? target.maxMessageBytes + 1
        : rng.range(target.maxMessageBytes + 1, 0xffffffff);
      return { kind, bytes: grpcFrame(rng.pick([0, 1]), rng.bytes(rng.range(0, 100)), declared) };
    }
    case "overLimitReal":
      return { kind, bytes: grpcFrame(0, new Uint8Array(target.maxMessageBytes + 1).fill(0x61)) };
    case "bomb":
      // A small compressed message that inflates past the limit.
      return { kind, bytes: grpcFrame(1, compress(new Uint8Array(target.maxMessageBytes * 2))) };
    case "random":
      return { kind, bytes: rng.bytes(rng.range(0, 2_000)) };
  }
}
