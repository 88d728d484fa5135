/**
 * Redis Cluster hash slots, and how the tier lays its keys over them.
 *
 * A key's slot is CRC16 (XMODEM) of its hash tag — the part between the first `{` and the next `}`, when not
 * empty — or of the whole key, modulo 16384. A Lua script may only touch keys of one slot, and a shard
 * channel (`SPUBLISH`) is served by the master of its slot.
 *
 * The tier puts every collapse key in one of {@linkcode CLUSTER_BUCKETS} buckets (from its first hex
 * digits: collapse keys are SHA-256, so buckets fill evenly), and tags all its keys and its channel with the
 * bucket's tag: a short string chosen so that bucket `b` lands on slot `b × 16`. Then:
 *
 * - the answer, lock, waiters flag and notice channel of one collapse key share a slot (one script, one
 *   round trip, and `SPUBLISH` from inside it);
 * - collapse keys spread evenly over the masters (the buckets' slots are evenly spaced, so a master holding
 *   a third of the slots holds a third of the buckets);
 * - a proxy subscribes to a bounded number of shard channels — one per bucket, 1,024 whatever the traffic —
 *   spread over the masters, instead of one channel per slot (16,384) or per key (a subscription per wait).
 *
 * The tags are found by a deterministic search (the first base-36 number landing on each slot), so every
 * proxy, of every version, computes the same ones; tests/slots_test.ts pins them.
 *
 * @module
 */

/** Slots in a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;
/** Buckets the tier spreads collapse keys over in a Cluster: one shard channel each. */
export const CLUSTER_BUCKETS = 1_024;
/** Slots between two buckets' slots. */
const SLOTS_PER_BUCKET = CLUSTER_SLOTS / CLUSTER_BUCKETS;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = crc & 0xffff;
  }
  return table;
})();

const encoder = new TextEncoder();

/** CRC16-CCITT (XMODEM), as Redis Cluster uses it. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc;
}

/** CRC16 of a string's UTF-8 bytes (ASCII without encoding it first). */
function crc16Of(text: string): number {
  let crc = 0;
  for (let i = 0; i < text.length; i++) {
    const byte = text.charCodeAt(i);
    if (byte > 0x7f) return crc16(encoder.encode(text));
    crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  }
  return crc;
}

/** The hash slot of a key or shard channel (its hash tag's, if it has a non-empty one). */
export function keySlot(key: string): number {
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16Of(key) % CLUSTER_SLOTS;
}

let tags: readonly string[] | undefined;

/** The hash tag of each bucket: `tags[b]` lands on slot `b × 16`. Computed once (tens of ms). */
export function bucketTags(): readonly string[] {
  if (tags !== undefined) return tags;
  const found: string[] = new Array(CLUSTER_BUCKETS);
  let missing = CLUSTER_BUCKETS;
  for (let n = 0; missing > 0; n++) {
    const tag = n.toString(36);
    const slot = keySlot(tag);
    if (slot % SLOTS_PER_BUCKET !== 0) continue;
    const bucket = slot / SLOTS_PER_BUCKET;
    if (found[bucket] !== undefined) continue;
    found[bucket] = tag;
    missing--;
  }
  return tags = Object.freeze(found);
}

/** The bucket of a collapse key: its first 10 bits (keys are hex); any other string by its CRC16. */
export function bucketOf(key: string): number {
  return HEX3.test(key) ? Number.parseInt(key.slice(0, 3), 16) >> 2 : crc16Of(key) % CLUSTER_BUCKETS;
}

const HEX3 = /^[0-9a-f]{3}/i;
