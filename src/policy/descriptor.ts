/**
 * What a service declares about its methods, read from its compiled descriptors: whether each method
 * streams requests or responses, and its `idempotency_level` option. With that the proxy need not be told
 * by hand which methods are safe to collapse; the service says so itself, in a descriptor set file
 * (`protoc --include_imports -o`, `buf build -o`) or over reflection (`reflection.ts`).
 *
 * Only the few descriptor.proto fields that say this are read, with `protobuf.ts`; everything else is
 * skipped unparsed, so reading a large set is quick and needs no protobuf runtime.
 * See https://github.com/protocolbuffers/protobuf/blob/main/src/google/protobuf/descriptor.proto
 *
 * @module
 */

import { ProtobufError, ProtoReader } from "../wire/protobuf.ts";

/** A method's `idempotency_level` option (google.protobuf.MethodOptions.IdempotencyLevel). */
export type Idempotency = "IDEMPOTENCY_UNKNOWN" | "NO_SIDE_EFFECTS" | "IDEMPOTENT";

/** What a service declares about one of its methods. */
export interface MethodInfo {
  /** The method takes a stream of requests. */
  readonly clientStreaming: boolean;
  /** The method answers with a stream of responses. */
  readonly serverStreaming: boolean;
  /** The method's `option idempotency_level`; IDEMPOTENCY_UNKNOWN when it has none. */
  readonly idempotency: Idempotency;
}

/** Method path ("/pkg.Service/Method") → what the service declares about it. */
export type MethodCatalog = ReadonlyMap<string, MethodInfo>;

/** Bytes that are not the descriptors expected, or a descriptor set file that cannot be used. */
export class DescriptorError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DescriptorError";
  }
}

/** IdempotencyLevel values by number; another number is ignored, as proto2 does with a closed enum. */
const IDEMPOTENCY: readonly Idempotency[] = ["IDEMPOTENCY_UNKNOWN", "NO_SIDE_EFFECTS", "IDEMPOTENT"];

// Field numbers in descriptor.proto.
const SET_FILE = 1;
const FILE_NAME = 1;
const FILE_PACKAGE = 2;
const FILE_SERVICE = 6;
const SERVICE_NAME = 1;
const SERVICE_METHOD = 2;
const METHOD_NAME = 1;
const METHOD_OPTIONS = 4;
const METHOD_CLIENT_STREAMING = 5;
const METHOD_SERVER_STREAMING = 6;
const OPTIONS_IDEMPOTENCY_LEVEL = 34;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PACKAGE = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * The methods declared in serialized `google.protobuf.FileDescriptorProto`s, such as a reflection service
 * returns. A method declared twice is an error only if the two declarations differ.
 *
 * @throws {DescriptorError} when one is not a well-formed FileDescriptorProto
 */
export function methodsFromFileDescriptors(files: Iterable<Uint8Array>): Map<string, MethodInfo> {
  const methods = new Map<string, MethodInfo>();
  let index = 0;
  for (const file of files) readFile(new ProtoReader(file), index++, methods);
  return methods;
}

/**
 * The methods declared in a serialized `google.protobuf.FileDescriptorSet` (`protoc --include_imports -o`,
 * `buf build -o`). Without `--include_imports` only the files named on the command line are in the set.
 *
 * @throws {DescriptorError} when the bytes are not a well-formed FileDescriptorSet
 */
export function parseDescriptorSet(bytes: Uint8Array): Map<string, MethodInfo> {
  const files: ProtoReader[] = [];
  const reader = new ProtoReader(bytes);
  try {
    while (reader.next()) {
      if (reader.field === SET_FILE) files.push(reader.message());
      else reader.skip();
    }
  } catch (err) {
    throw new DescriptorError(`not a FileDescriptorSet: ${messageOf(err)}`, { cause: err });
  }
  const methods = new Map<string, MethodInfo>();
  files.forEach((file, index) => readFile(file, index, methods));
  return methods;
}

/**
 * Reads a descriptor set file and returns its methods.
 *
 * @example
 * ```ts
 * // protoc --include_imports -o api.pb api.proto
 * const catalog = await loadDescriptorSetFile("api.pb");
 * catalog.get("/shop.Cart/Get")?.idempotency; // "NO_SIDE_EFFECTS"
 * ```
 *
 * @throws {DescriptorError} naming `path` when the file is missing or unreadable, is not a descriptor
 *   set, or declares no services
 */
export async function loadDescriptorSetFile(path: string): Promise<Map<string, MethodInfo>> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : messageOf(err);
    throw new DescriptorError(`cannot read descriptor set ${path}: ${why}`, { cause: err });
  }
  let methods: Map<string, MethodInfo>;
  try {
    methods = parseDescriptorSet(bytes);
  } catch (err) {
    throw new DescriptorError(`${path} is not a descriptor set (${HOW_TO_BUILD}): ${messageOf(err)}`, {
      cause: err,
    });
  }
  if (methods.size === 0) {
    throw new DescriptorError(
      `${path} declares no services (${HOW_TO_BUILD}, from the files declaring them)`,
    );
  }
  return methods;
}

const HOW_TO_BUILD = "build one with protoc --include_imports -o FILE or buf build -o FILE";

/** Reads one FileDescriptorProto into `methods`. Services are read after the name, whatever their order. */
function readFile(reader: ProtoReader, index: number, methods: Map<string, MethodInfo>): void {
  let name = "";
  let pkg = "";
  const services: ProtoReader[] = [];
  try {
    while (reader.next()) {
      if (reader.field === FILE_NAME) name = reader.string();
      else if (reader.field === FILE_PACKAGE) pkg = reader.string();
      else if (reader.field === FILE_SERVICE) services.push(reader.message());
      else reader.skip();
    }
    if (pkg !== "" && !PACKAGE.test(pkg)) {
      throw new DescriptorError(`package ${JSON.stringify(pkg)} is not a dotted name`);
    }
    const prefix = pkg ? `/${pkg}.` : "/";
    for (const service of services) readService(service, prefix, methods);
  } catch (err) {
    const where = name ? `file ${JSON.stringify(name)}` : `file #${index + 1}`;
    const what = err instanceof ProtobufError ? `not a FileDescriptorProto: ${err.message}` : messageOf(err);
    throw new DescriptorError(`${where}: ${what}`, { cause: err });
  }
}

function readService(reader: ProtoReader, prefix: string, methods: Map<string, MethodInfo>): void {
  let name = "";
  const declared: ProtoReader[] = [];
  while (reader.next()) {
    if (reader.field === SERVICE_NAME) name = reader.string();
    else if (reader.field === SERVICE_METHOD) declared.push(reader.message());
    else reader.skip();
  }
  if (!IDENTIFIER.test(name)) {
    throw new DescriptorError(`service name ${JSON.stringify(name)} is not an identifier`);
  }
  for (const method of declared) {
    const [methodName, info] = readMethod(method);
    if (!IDENTIFIER.test(methodName)) {
      throw new DescriptorError(`method name ${JSON.stringify(methodName)} in ${name} is not an identifier`);
    }
    const path = `${prefix}${name}/${methodName}`;
    const earlier = methods.get(path);
    if (earlier && !sameInfo(earlier, info)) {
      throw new DescriptorError(`${path} is declared twice, differently`);
    }
    methods.set(path, info);
  }
}

function readMethod(reader: ProtoReader): [string, MethodInfo] {
  let name = "";
  let clientStreaming = false;
  let serverStreaming = false;
  let idempotency: Idempotency = "IDEMPOTENCY_UNKNOWN";
  while (reader.next()) {
    switch (reader.field) {
      case METHOD_NAME:
        name = reader.string();
        break;
      case METHOD_OPTIONS:
        idempotency = readIdempotency(reader.message()) ?? idempotency;
        break;
      case METHOD_CLIENT_STREAMING:
        clientStreaming = reader.bool();
        break;
      case METHOD_SERVER_STREAMING:
        serverStreaming = reader.bool();
        break;
      default:
        reader.skip();
    }
  }
  return [name, { clientStreaming, serverStreaming, idempotency }];
}

/** The idempotency level in MethodOptions, if set (the last one wins, as protobuf merges). */
function readIdempotency(reader: ProtoReader): Idempotency | undefined {
  let level: Idempotency | undefined;
  while (reader.next()) {
    if (reader.field === OPTIONS_IDEMPOTENCY_LEVEL) level = IDEMPOTENCY[reader.varint()] ?? level;
    else reader.skip();
  }
  return level;
}

function sameInfo(a: MethodInfo, b: MethodInfo): boolean {
  return a.clientStreaming === b.clientStreaming && a.serverStreaming === b.serverStreaming &&
    a.idempotency === b.idempotency;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
