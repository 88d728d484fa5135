/**
 * The tier's protocol as Lua scripts, one round trip each, shared by every link: acquire (a stored answer,
 * else the lock, else a note that we wait), look (a waiter's poll), extend (renew a held lock) and settle
 * (store, release, tell the waiters). Each touches only the keys of one collapse key, which share a Cluster
 * hash slot, and settle publishes on a channel of that slot too — with `SPUBLISH` in a Cluster (a shard
 * channel: served by that slot's master, not broadcast over the cluster bus), `PUBLISH` otherwise (so one
 * Redis older than 7 still works).
 *
 * Scripts run with EVALSHA; after NOSCRIPT (a restarted or failed-over Redis forgets them) the same call
 * runs as EVAL, which caches the script on the node that serves the keys.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { Lookup } from "./link.ts";

/**
 * KEYS: answer, lock, waiters. ARGV: token, lock ms, and how much life a stored answer must have left to be
 * taken (a refresh-ahead wants one fresher than its own).
 */
const ACQUIRE = `
local v = redis.call('GET', KEYS[1])
if v then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > tonumber(ARGV[3]) then return {1, v, ttl} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return {3}`;

/** KEYS: answer, lock. ARGV: how much life a stored answer must have left to be taken. */
const LOOK = `
local v = redis.call('GET', KEYS[1])
if v then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > tonumber(ARGV[1]) then return {1, v, ttl} end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {3} end
return {4}`;

/** KEYS: lock. ARGV: token, lock ms. Extends the lock while its holder's call runs. */
const EXTEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * KEYS: answer, lock, waiters. ARGV: token, answer, ttl ms (0 = do not store), channel, notice. Returns 0
 * (not our lock), 1 (released), 2 (released, and published to waiters).
 */
const settle = (publish: "PUBLISH" | "SPUBLISH") => `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
if redis.call('DEL', KEYS[3]) == 1 then
  redis.call('${publish}', ARGV[4], ARGV[5] .. ARGV[2])
  return 2
end
return 1`;

/**
 * KEYS: purge number, purge log (one hash slot: `{purges}`). ARGV: the record (a JSON object, `"seq"` is put
 * first), channel, how many records the log keeps. Returns {purge number, subscribers the record reached}.
 * PUBLISH, not SPUBLISH: a Cluster broadcasts it to every node, so every proxy hears it wherever it listens.
 */
const PURGE = `
local seq = redis.call('INCR', KEYS[1])
local record = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[2], record)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return {seq, redis.call('PUBLISH', ARGV[2], record)}`;

/** KEYS: purge number, purge log. ARGV: the number known. Returns {number} or {number, records}. */
const PURGES = `
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq <= tonumber(ARGV[1]) then return {seq} end
return {seq, redis.call('LRANGE', KEYS[2], 0, -1)}`;

/** A script's source and its SHA-1 (what EVALSHA names it by). */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}

/** The tier's scripts. */
export const SCRIPTS = {
  acquire: script(ACQUIRE),
  look: script(LOOK),
  extend: script(EXTEND),
  /** settle for one Redis: PUBLISH. */
  settle: script(settle("PUBLISH")),
  /** settle for a Cluster: SPUBLISH on the keys' shard channel. */
  settleSharded: script(settle("SPUBLISH")),
  purge: script(PURGE),
  purges: script(PURGES),
};

/** What runs a script: node-redis's client or cluster client with replies as Buffers. */
export interface Evaluator {
  evalSha(sha: string, options: { keys: string[]; arguments: (string | Buffer)[] }): Promise<unknown>;
  eval(source: string, options: { keys: string[]; arguments: (string | Buffer)[] }): Promise<unknown>;
}

/** Runs `script` by its SHA, and by its source after NOSCRIPT. */
export async function run(
  client: Evaluator,
  script: Script,
  keys: string[],
  args: (string | Buffer)[],
): Promise<unknown> {
  try {
    return await client.evalSha(script.sha, { keys, arguments: args });
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
    return await client.eval(script.source, { keys, arguments: args });
  }
}

/** A lock's life, in whole ms (at least 1), as the scripts take it. */
export const lockArg = (ms: number): string => String(Math.max(1, Math.round(ms)));

/** An answer's TTL in whole ms as settle takes it: 0 = do not store. */
export const ttlArg = (ms: number): string => String(ms > 0 ? Math.max(1, Math.round(ms)) : 0);

/** A script's reply as a lookup: `[1, answer, pttl]`, `[2]` lock, `[3]` held by another, `[4]` free. */
export function lookup(reply: unknown): Lookup {
  if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from Redis: ${String(reply)}`);
  switch (reply[0]) {
    case 1: {
      const value = reply[1];
      if (!(value instanceof Uint8Array)) throw new TypeError("unexpected answer type from Redis");
      return { kind: "hit", value, ttlMs: Number(reply[2]) };
    }
    case 2:
      return { kind: "lock" };
    case 3:
      return { kind: "wait" };
    case 4:
      return { kind: "free" };
  }
  throw new TypeError(`unexpected reply from Redis: ${JSON.stringify(reply)}`);
}

/** settle's reply as what it did. */
export function settled(reply: unknown): "released" | "published" | "lost" {
  return reply === 2 ? "published" : reply === 1 ? "released" : "lost";
}

/** Bytes as a Buffer without copying them. */
export function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Records a purge in the fleet's log and publishes it (the purge script); both keys carry the `{purges}` tag,
 * so in a Cluster one master runs it. Resolves with the purge number and how many subscribers heard it.
 */
export async function runPurge(
  client: Evaluator,
  keys: { seq: string; log: string },
  record: string,
  channel: string,
  keep: number,
): Promise<{ seq: number; receivers: number }> {
  const reply = await run(client, SCRIPTS.purge, [keys.seq, keys.log], [record, channel, String(keep)]);
  if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from Redis: ${String(reply)}`);
  return { seq: Number(reply[0]), receivers: Number(reply[1]) };
}

/** The fleet's purge number, and the log's records when it is past `after` (the purges script). */
export async function runPurges(
  client: Evaluator,
  keys: { seq: string; log: string },
  after: number,
): Promise<{ seq: number; records: string[] }> {
  const reply = await run(client, SCRIPTS.purges, [keys.seq, keys.log], [String(after)]);
  if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from Redis: ${String(reply)}`);
  const records = Array.isArray(reply[1]) ? reply[1].map((record: unknown) => String(record)) : [];
  return { seq: Number(reply[0]), records };
}
