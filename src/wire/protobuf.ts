/**
 * A minimal protobuf wire-format reader and writer: varints, length-delimited fields, and skipping what a
 * caller does not ask for. Enough to read descriptors and speak the reflection protocol without a code
 * generator or a runtime library. (The messages the proxy relays it still never decodes.)
 *
 * The reader is a cursor over one message: `next()` reads a tag, then the caller reads the value with the
 * method for the type it expects, or `skip()`s it. Wire types 0, 1, 2 and 5 are understood; groups (3, 4,
 * deprecated since proto2) and the unused types 6 and 7 are rejected, as is anything truncated, so that
 * garbage fails fast with a {@linkcode ProtobufError} instead of being misread.
 *
 * See https://protobuf.dev/programming-guides/encoding/
 *
 * @example
 * ```ts
 * const reader = new ProtoReader(bytes);
 * let name = "";
 * while (reader.next()) {
 *   if (reader.field === 1) name = reader.string();
 *   else reader.skip();
 * }
 * ```
 *
 * @module
 */

/** Protobuf wire types (the numbers are the encoding's). */
export const WireType = {
  VARINT: 0,
  I64: 1,
  LEN: 2,
  SGROUP: 3,
  EGROUP: 4,
  I32: 5,
} as const;

/** A protobuf wire type. */
export type WireTypeCode = typeof WireType[keyof typeof WireType];

/** Bytes that are not a well-formed protobuf message, with the offset where reading failed. */
export class ProtobufError extends Error {
  /** Byte offset in the buffer being read (the outermost one, for an embedded message). */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = "ProtobufError";
    this.offset = offset;
  }
}

/** Largest field number protobuf allows (2^29 - 1). */
export const MAX_FIELD_NUMBER = 0x1fffffff;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/**
 * A cursor over one serialized message: `bytes[start, end)`. Offsets (`offset`, {@linkcode ProtobufError})
 * count from the start of `bytes`, so a nested message's errors point into the outermost buffer.
 */
export class ProtoReader {
  readonly #bytes: Uint8Array;
  readonly #end: number;
  #pos: number;
  #field = 0;
  #wireType = 0;
  #tagAt = 0;

  constructor(bytes: Uint8Array, start = 0, end: number = bytes.length) {
    if (
      !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= bytes.length)
    ) {
      throw new RangeError(
        `Cannot create ProtoReader: need 0 <= start <= end <= ${bytes.length}: ${start}, ${end}`,
      );
    }
    this.#bytes = bytes;
    this.#pos = start;
    this.#end = end;
  }

  /** Field number of the tag read by the last `next()`. */
  get field(): number {
    return this.#field;
  }

  /** Wire type of the tag read by the last `next()`. */
  get wireType(): number {
    return this.#wireType;
  }

  /** Current byte offset. */
  get offset(): number {
    return this.#pos;
  }

  /** Reads the next tag; false at the end of the message. Throws on a malformed tag or a group. */
  next(): boolean {
    if (this.#pos >= this.#end) return false;
    const at = this.#tagAt = this.#pos;
    const tag = this.#varint();
    const wireType = tag % 8;
    const field = (tag - wireType) / 8;
    if (field === 0 || field > MAX_FIELD_NUMBER) throw new ProtobufError(`invalid field number ${field}`, at);
    if (wireType === WireType.SGROUP || wireType === WireType.EGROUP) {
      throw new ProtobufError(
        `field ${field} is a group (wire type ${wireType}), which is not supported`,
        at,
      );
    }
    if (wireType > WireType.I32) {
      throw new ProtobufError(`field ${field} has invalid wire type ${wireType}`, at);
    }
    this.#field = field;
    this.#wireType = wireType;
    return true;
  }

  /**
   * The current field as an unsigned varint (uint32, uint64, int32 ≥ 0, enum, bool). Values above 2^53
   * lose precision; a negative int32 or enum (ten bytes on the wire) reads as a number ≥ 2^63.
   */
  varint(): number {
    this.#expect(WireType.VARINT);
    return this.#varint();
  }

  /** The current field as a bool. */
  bool(): boolean {
    return this.varint() !== 0;
  }

  /** The current length-delimited field's bytes, a view into the message (not a copy). */
  bytes(): Uint8Array {
    const start = this.#lengthDelimited();
    return this.#bytes.subarray(start, this.#pos);
  }

  /** The current length-delimited field as an embedded message, without copying or slicing. */
  message(): ProtoReader {
    const start = this.#lengthDelimited();
    return new ProtoReader(this.#bytes, start, this.#pos);
  }

  /** The current length-delimited field as UTF-8 text; invalid UTF-8 is an error. */
  string(): string {
    const start = this.#lengthDelimited();
    const bytes = this.#bytes;
    const end = this.#pos;
    if (end - start <= 64) { // names, mostly: ASCII is far quicker by hand than through TextDecoder
      let text = "";
      let i = start;
      for (; i < end && bytes[i] < 0x80; i++) text += String.fromCharCode(bytes[i]);
      if (i === end) return text;
    }
    try {
      return utf8.decode(bytes.subarray(start, end));
    } catch {
      throw new ProtobufError(`field ${this.#field} is not valid UTF-8`, this.#tagAt);
    }
  }

  /** Skips the current field's value, whatever its wire type. */
  skip(): void {
    switch (this.#wireType) {
      case WireType.VARINT:
        this.#varint();
        return;
      case WireType.LEN:
        this.#lengthDelimited();
        return;
      case WireType.I64:
        return this.#advance(8);
      default: // I32: next() lets no other wire type through
        return this.#advance(4);
    }
  }

  /** Moves past the current length-delimited value and returns where it starts. */
  #lengthDelimited(): number {
    this.#expect(WireType.LEN);
    const length = this.#varint();
    const start = this.#pos;
    if (length > this.#end - start) {
      throw new ProtobufError(
        `field ${this.#field} is ${length} bytes long but only ${this.#end - start} remain`,
        this.#tagAt,
      );
    }
    this.#pos = start + length;
    return start;
  }

  #expect(wireType: WireTypeCode): void {
    if (this.#wireType !== wireType) {
      throw new ProtobufError(
        `field ${this.#field} has wire type ${this.#wireType}, expected ${wireType}`,
        this.#tagAt,
      );
    }
  }

  #advance(n: number): void {
    if (n > this.#end - this.#pos) throw new ProtobufError(`field ${this.#field} is truncated`, this.#tagAt);
    this.#pos += n;
  }

  #varint(): number {
    const bytes = this.#bytes;
    const start = this.#pos;
    let byte = bytes[start];
    if (byte < 0x80 && start < this.#end) { // the common case: one byte
      this.#pos = start + 1;
      return byte;
    }
    let value = 0;
    let scale = 1;
    for (let i = start; i < start + 10; i++) {
      if (i >= this.#end) throw new ProtobufError("truncated varint", start);
      byte = bytes[i];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        this.#pos = i + 1;
        return value;
      }
      scale *= 128;
    }
    throw new ProtobufError("varint longer than 10 bytes", start);
  }
}

/** Builds one serialized message, field by field, in the order written. */
export class ProtoWriter {
  #buffer = new Uint8Array(64);
  #length = 0;

  /** Writes an unsigned varint field (uint32, uint64 up to 2^53, enum, int32 ≥ 0). */
  varint(field: number, value: number): this {
    this.#tag(field, WireType.VARINT);
    this.#varint(value);
    return this;
  }

  /** Writes a bool field. */
  bool(field: number, value: boolean): this {
    return this.varint(field, value ? 1 : 0);
  }

  /** Writes a length-delimited field: bytes, or an embedded message already serialized. */
  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WireType.LEN);
    this.#varint(value.length);
    this.#reserve(value.length);
    this.#buffer.set(value, this.#length);
    this.#length += value.length;
    return this;
  }

  /** Writes a string field as UTF-8; an empty string is still written (it matters in a oneof). */
  string(field: number, value: string): this {
    return this.bytes(field, utf8Encoder.encode(value));
  }

  /** The message so far (a copy; the writer may go on). */
  finish(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }

  #tag(field: number, wireType: WireTypeCode): void {
    if (!Number.isInteger(field) || field < 1 || field > MAX_FIELD_NUMBER) {
      throw new RangeError(
        `Cannot write protobuf field: field number must be 1..${MAX_FIELD_NUMBER}: ${field}`,
      );
    }
    this.#varint(field * 8 + wireType);
  }

  #varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Cannot write protobuf varint: must be a non-negative safe integer: ${value}`);
    }
    this.#reserve(10);
    while (value >= 0x80) {
      this.#buffer[this.#length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.#buffer[this.#length++] = value;
  }

  #reserve(n: number): void {
    if (this.#length + n <= this.#buffer.length) return;
    const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + n));
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }
}
