/**
 * Method knowledge from the backend itself, over gRPC server reflection: which services it serves and, from
 * the files that declare them, each method's streaming flags and idempotency level (`descriptor.ts`).
 *
 * One bidi call to `grpc.reflection.v1.ServerReflection/ServerReflectionInfo`, or to the `v1alpha` one
 * (the same messages) when the backend answers UNIMPLEMENTED: first `list_services`, then one
 * `file_containing_symbol` per listed service, written all at once since the protocol answers requests in
 * order. Messages go as raw bytes through a generic grpc-js client, like `upstream.ts`, and are read with
 * `protobuf.ts`, so no reflection .proto is needed. Files are deduplicated by content: a server returns a
 * file again with each service it declares, and with its imports each time.
 *
 * The backend's own `grpc.reflection.*` services are not asked about: their methods are bidi streams that
 * the proxy passes through whatever their options, and some servers list them without being able to
 * return their files, which would fail the whole exchange for nothing.
 *
 * See https://github.com/grpc/grpc/blob/master/doc/server-reflection.md
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { type MethodInfo, methodsFromFileDescriptors } from "./descriptor.ts";
import { ProtoReader, ProtoWriter } from "../wire/protobuf.ts";

/** Default bound on the whole reflection exchange, in ms. */
export const DEFAULT_REFLECTION_TIMEOUT_MS = 5_000;

/** The reflection call, newest protocol version first. */
const REFLECTION_METHODS = [
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
] as const;

// Field numbers in grpc/reflection/v1/reflection.proto.
const REQUEST_FILE_CONTAINING_SYMBOL = 4;
const REQUEST_LIST_SERVICES = 7;
const RESPONSE_FILE_DESCRIPTOR = 4;
const RESPONSE_LIST_SERVICES = 6;
const RESPONSE_ERROR = 7;

/** Reflection could not tell what the backend serves. */
export class ReflectionError extends Error {
  /** The gRPC status code the backend answered with (call status or reflection `error_code`), if any. */
  readonly code?: number;

  constructor(message: string, options: ErrorOptions & { code?: number } = {}) {
    super(message, options);
    this.name = "ReflectionError";
    this.code = options.code;
  }
}

/** Options for {@linkcode fetchReflection}. */
export interface FetchReflectionOptions {
  /** Bound on the whole exchange (connecting, both protocol versions, every answer), in ms. @default {5000} */
  timeoutMs?: number;
}

/**
 * Asks the backend's reflection service for every service it lists and the files declaring them, and
 * returns the methods those files declare, as a descriptor set would (`MethodCatalog` in `descriptor.ts`).
 * The map is empty when the backend lists no services. The client is closed before this returns.
 *
 * @example
 * ```ts
 * const catalog = await fetchReflection("127.0.0.1:50051", { timeoutMs: 2_000 });
 * catalog.get("/shop.Cart/Get"); // { clientStreaming: false, serverStreaming: false, idempotency: "NO_SIDE_EFFECTS" }
 * ```
 *
 * @param target a grpc-js target: `host:port`, `dns:///host:port`, `unix:path`
 * @throws {ReflectionError} when the backend cannot be reached in time, serves neither reflection version,
 *   answers a request with an error, or answers with something that is not what was asked
 */
export async function fetchReflection(
  target: string,
  options: FetchReflectionOptions = {},
): Promise<Map<string, MethodInfo>> {
  const { timeoutMs = DEFAULT_REFLECTION_TIMEOUT_MS } = options;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(
      `Cannot fetch reflection: timeoutMs must be a finite, positive number: ${timeoutMs}`,
    );
  }
  const deadline = Date.now() + timeoutMs;
  let client: grpc.Client;
  try {
    client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
      "grpc.enable_retries": 0,
      "grpc.enable_channelz": 0,
    });
  } catch (err) {
    throw new ReflectionError(`${JSON.stringify(target)} is not a gRPC target: ${messageOf(err)}`, {
      cause: err,
    });
  }
  try {
    for (const method of REFLECTION_METHODS) {
      const files = await exchange(client, method, deadline, target, timeoutMs);
      if (files) {
        try {
          return methodsFromFileDescriptors(files);
        } catch (err) {
          throw new ReflectionError(`malformed reflection answer from ${target}: ${messageOf(err)}`, {
            cause: err,
          });
        }
      }
    }
    throw new ReflectionError(`${target} does not serve grpc.reflection.v1 or v1alpha`, {
      code: grpc.status.UNIMPLEMENTED,
    });
  } finally {
    client.close();
  }
}

const identity = (b: Buffer): Buffer => b;
const toBuffer = (m: Uint8Array): Buffer => Buffer.from(m.buffer, m.byteOffset, m.byteLength);

/**
 * One reflection call on `method`: the files declaring every listed service (deduplicated by content), or
 * undefined when the backend does not implement `method`.
 */
function exchange(
  client: grpc.Client,
  method: string,
  deadline: number,
  target: string,
  timeoutMs: number,
): Promise<Uint8Array[] | undefined> {
  const { promise, resolve, reject } = Promise.withResolvers<Uint8Array[] | undefined>();
  const call = client.makeBidiStreamRequest(method, identity, identity, new grpc.Metadata(), { deadline });
  let services: string[] | undefined;
  let answered = 0;
  const files = new Map<string, Uint8Array>();
  let failure: ReflectionError | undefined;
  const fail = (error: ReflectionError) => {
    failure ??= error;
    call.cancel();
  };

  call.on("data", (message: Buffer) => {
    if (failure) return;
    try {
      const answer = readResponse(message);
      if (answer.error) {
        const what = services ? `the file declaring ${services[answered]}` : "the list of services";
        const { code, message } = answer.error;
        return fail(
          new ReflectionError(`${target} could not answer reflection for ${what}: ${message}`, { code }),
        );
      }
      if (!services) {
        if (!answer.services) throw new Error("expected list_services_response first");
        services = answer.services.filter((name) => !name.startsWith("grpc.reflection."));
        for (const service of services) {
          call.write(toBuffer(new ProtoWriter().string(REQUEST_FILE_CONTAINING_SYMBOL, service).finish()));
        }
        call.end();
        return;
      }
      if (!answer.files) throw new Error(`expected file_descriptor_response for ${services[answered]}`);
      if (answered >= services.length) throw new Error("more answers than requests");
      answered++;
      for (const file of answer.files) files.set(toBuffer(file).toString("latin1"), file);
    } catch (err) {
      fail(
        new ReflectionError(`malformed reflection answer from ${target}: ${messageOf(err)}`, { cause: err }),
      );
    }
  });
  // grpc-js reports a non-OK status as both 'error' and 'status'; 'status' carries everything.
  call.on("error", () => {});
  call.on("status", (status: grpc.StatusObject) => {
    if (failure) return reject(failure);
    const { code, details } = status;
    if (code === grpc.status.OK) {
      if (services && answered === services.length) return resolve([...files.values()]);
      return reject(
        new ReflectionError(`${target} ended the reflection call before answering every request`),
      );
    }
    if (code === grpc.status.UNIMPLEMENTED && !services) return resolve(undefined);
    if (code === grpc.status.UNAVAILABLE) {
      return reject(new ReflectionError(`cannot reach ${target} for reflection: ${details}`, { code }));
    }
    if (code === grpc.status.DEADLINE_EXCEEDED) {
      return reject(
        new ReflectionError(`${target} did not answer reflection within ${timeoutMs} ms`, { code }),
      );
    }
    const name = grpc.status[code] ?? code;
    reject(new ReflectionError(`reflection call to ${target} failed: ${name}: ${details}`, { code }));
  });

  call.write(toBuffer(new ProtoWriter().string(REQUEST_LIST_SERVICES, "").finish()));
  return promise;
}

/** The parts of a ServerReflectionResponse that matter here. */
interface Answer {
  services?: string[];
  files?: Uint8Array[];
  error?: { code: number; message: string };
}

function readResponse(bytes: Uint8Array): Answer {
  const answer: Answer = {};
  const reader = new ProtoReader(bytes);
  while (reader.next()) {
    if (reader.field === RESPONSE_LIST_SERVICES) {
      answer.services = repeated(reader.bytes(), 1, (service) => stringField(service.bytes(), 1));
    } else if (reader.field === RESPONSE_FILE_DESCRIPTOR) {
      answer.files = repeated(reader.bytes(), 1, (r) => r.bytes());
    } else if (reader.field === RESPONSE_ERROR) {
      const error = { code: 0, message: "" };
      const inner = new ProtoReader(reader.bytes());
      while (inner.next()) {
        if (inner.field === 1) error.code = inner.varint();
        else if (inner.field === 2) error.message = inner.string();
        else inner.skip();
      }
      answer.error = error;
    } else reader.skip();
  }
  return answer;
}

/** Every value of repeated field `field` in `bytes`, each read by `read`. */
function repeated<T>(bytes: Uint8Array, field: number, read: (reader: ProtoReader) => T): T[] {
  const values: T[] = [];
  const reader = new ProtoReader(bytes);
  while (reader.next()) {
    if (reader.field === field) values.push(read(reader));
    else reader.skip();
  }
  return values;
}

/** The (last) value of string field `field` in `bytes`. */
function stringField(bytes: Uint8Array, field: number): string {
  let value = "";
  const reader = new ProtoReader(bytes);
  while (reader.next()) {
    if (reader.field === field) value = reader.string();
    else reader.skip();
  }
  return value;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
