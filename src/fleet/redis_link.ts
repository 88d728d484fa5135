/**
 * The shared tier's Redis client: node-redis (`@redis/client`, the client Redis maintains), measured
 * against ioredis under Deno 2.8.3 in bench/redis_clients.ts — lower round-trip latency (GET median
 * 77–116 µs vs 121–166 µs side by side), binary-safe replies, and it reconnects and re-subscribes by
 * itself. Its per-command timeout does not cover a command already sent, so the tier bounds every round
 * trip itself (shared_tier.ts).
 *
 * Two connections: commands (offline queue off, so a command fails at once while Redis is away instead of
 * piling up) and the subscriber (its SUBSCRIBE waits for the connection). The three steps of the protocol
 * are Lua scripts, one round trip each, run with EVALSHA (loaded again after a NOSCRIPT: a restarted Redis
 * forgets them).
 *
 * This module is only loaded when `--redis` is given.
 *
 * @module
 */

import { createClient, RESP_TYPES } from "@redis/client";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { RedisConfig } from "./redis_config.ts";
import type { Lookup, PurgeKeys, RedisLink, TierKeys } from "./link.ts";

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
const SETTLE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
if redis.call('DEL', KEYS[3]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. ARGV[2])
  return 2
end
return 1`;

/**
 * KEYS: purge number, purge log. ARGV: the record (a JSON object, `"seq"` is put first), channel, how many
 * records the log keeps. Returns {purge number, subscribers the record reached}.
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

interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}

const SCRIPTS = {
  acquire: script(ACQUIRE),
  look: script(LOOK),
  settle: script(SETTLE),
  extend: script(EXTEND),
  purge: script(PURGE),
  purges: script(PURGES),
};

/** Reconnect after 50, 100, 200 ms ..., at most every second. */
const backoff = (retries: number) => Math.min(50 * 2 ** retries, 1_000);

/** Opens the two connections (without waiting for them: a Redis that is not there yet is retried). */
export function openRedisLink(config: RedisConfig): RedisLink {
  return new NodeRedisLink(config);
}

class NodeRedisLink implements RedisLink {
  readonly #client;
  readonly #binary;
  readonly #subscriber;
  #listener: (state: "up" | "down", reason: string) => void = () => {};

  constructor(config: RedisConfig) {
    const options = {
      socket: {
        host: config.host,
        port: config.port,
        connectTimeout: 1_000,
        reconnectStrategy: backoff,
        ...(config.tls ? { tls: true as const, servername: config.host } : {}),
      },
      username: config.username,
      password: config.password,
      database: config.db,
    };
    this.#client = createClient({ ...options, disableOfflineQueue: true });
    this.#binary = this.#client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    this.#subscriber = createClient({ ...options, disableOfflineQueue: false });
    // Without an 'error' listener node-redis stops reconnecting. Each failed attempt is one event; the
    // tier logs one warning per outage.
    this.#client.on("error", (err: unknown) => this.#listener("down", describe(err)));
    this.#client.on("ready", () => this.#listener("up", "connected"));
    this.#subscriber.on("error", () => {});
    // connect() settles only once Redis answers; the proxy does not wait for it.
    this.#client.connect().catch(() => {});
    this.#subscriber.connect().catch(() => {});
  }

  onConnection(listener: (state: "up" | "down", reason: string) => void): void {
    this.#listener = listener;
  }

  async acquire(keys: TierKeys, token: string, lockMs: number, freshForMs: number): Promise<Lookup> {
    const reply = await this.#eval(SCRIPTS.acquire, [keys.answer, keys.lock, keys.waiters], [
      token,
      String(Math.max(1, Math.round(lockMs))),
      String(Math.round(freshForMs)),
    ]);
    return lookup(reply);
  }

  async look(keys: TierKeys, freshForMs: number): Promise<Lookup> {
    return lookup(await this.#eval(SCRIPTS.look, [keys.answer, keys.lock], [String(Math.round(freshForMs))]));
  }

  async extend(keys: TierKeys, token: string, lockMs: number): Promise<boolean> {
    return await this.#eval(SCRIPTS.extend, [keys.lock], [token, String(Math.max(1, Math.round(lockMs)))]) ===
      1;
  }

  async settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    channel: string,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost"> {
    const reply = await this.#eval(SCRIPTS.settle, [keys.answer, keys.lock, keys.waiters], [
      token,
      bufferOf(answer),
      String(ttlMs > 0 ? Math.max(1, Math.round(ttlMs)) : 0),
      channel,
      bufferOf(notice),
    ]);
    return reply === 2 ? "published" : reply === 1 ? "released" : "lost";
  }

  async purge(
    keys: PurgeKeys,
    record: string,
    channel: string,
    keep: number,
  ): Promise<{ seq: number; receivers: number }> {
    const reply = await this.#eval(SCRIPTS.purge, [keys.seq, keys.log], [record, channel, String(keep)]);
    if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from Redis: ${String(reply)}`);
    return { seq: Number(reply[0]), receivers: Number(reply[1]) };
  }

  async purges(keys: PurgeKeys, after: number): Promise<{ seq: number; records: string[] }> {
    const reply = await this.#eval(SCRIPTS.purges, [keys.seq, keys.log], [String(after)]);
    if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from Redis: ${String(reply)}`);
    const records = Array.isArray(reply[1]) ? reply[1].map((record: unknown) => String(record)) : [];
    return { seq: Number(reply[0]), records };
  }

  async subscribe(channel: string, listener: (message: Uint8Array) => void): Promise<void> {
    await this.#subscriber.subscribe(channel, (message: Buffer) => listener(message), true);
  }

  async close(): Promise<void> {
    this.#client.destroy();
    this.#subscriber.destroy();
    await Promise.resolve();
  }

  async #eval(script: Script, keys: string[], args: (string | Buffer)[]): Promise<unknown> {
    try {
      return await this.#binary.evalSha(script.sha, { keys, arguments: args });
    } catch (err) {
      if (!describe(err).startsWith("NOSCRIPT")) throw err;
      await this.#client.scriptLoad(script.source);
      return await this.#binary.evalSha(script.sha, { keys, arguments: args });
    }
  }
}

/** A script's reply as a lookup: `[1, answer, pttl]`, `[2]` lock, `[3]` held by another, `[4]` free. */
function lookup(reply: unknown): Lookup {
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

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}
