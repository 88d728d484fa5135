/**
 * The shared tier's client for one Redis: node-redis (`@redis/client`, the client Redis maintains),
 * measured against ioredis under Deno 2.8.3 in bench/redis_clients.ts — lower round-trip latency (GET
 * median 77–116 µs vs 121–166 µs side by side), binary-safe replies, and it reconnects and re-subscribes by
 * itself. Its per-command timeout does not cover a command already sent, so the tier bounds every round
 * trip itself (shared_tier.ts).
 *
 * Two connections: commands (offline queue off, so a command fails at once while Redis is away instead of
 * piling up) and the subscriber (its SUBSCRIBE waits for the connection). The protocol's steps are Lua
 * scripts (scripts.ts), one round trip each. Keys of one collapse key are hash-tagged `{key}`; notices go
 * to one channel per fleet. redis_sentinel_link.ts opens one of these on whatever master the sentinels
 * name.
 *
 * This module is only loaded when the tier uses one Redis (`--redis`) or Sentinel.
 *
 * @module
 */

import { createClient, RESP_TYPES } from "@redis/client";
import { Buffer } from "node:buffer";
import type { RedisConfig } from "./redis_config.ts";
import type { Lookup, PurgeKeys, RedisLink, TierKeys } from "./link.ts";
import { Reason, REASON_WINDOW_MS, socketOptions } from "./redis_options.ts";
import { bufferOf, lockArg, lookup, run, runPurge, runPurges, SCRIPTS, settled, ttlArg } from "./scripts.ts";

/** Opens the two connections (without waiting for them: a Redis that is not there yet is retried). */
export function openRedisLink(config: RedisConfig): RedisLink {
  return new NodeRedisLink(config);
}

/** The keys of one collapse key on one Redis: hash-tagged by the key itself; one channel per namespace. */
export function singleKeys(namespace: string, key: string): TierKeys {
  const base = `${namespace}{${key}}:`;
  return { answer: `${base}a`, lock: `${base}l`, waiters: `${base}w`, channel: `${namespace}answers` };
}

class NodeRedisLink implements RedisLink {
  readonly #client;
  readonly #binary;
  readonly #subscriber;
  #listener: (state: "up" | "down", reason: string) => void = () => {};
  readonly #reason = new Reason();
  #reporting: ReturnType<typeof setTimeout> | undefined;

  constructor(config: RedisConfig) {
    const options = {
      socket: { host: config.host, port: config.port, ...socketOptions(config, config.host) },
      username: config.username,
      password: config.password,
      database: config.db,
    };
    this.#client = createClient({ ...options, disableOfflineQueue: true });
    this.#binary = this.#client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    this.#subscriber = createClient({ ...options, disableOfflineQueue: false });
    // Without an 'error' listener node-redis stops reconnecting. Each failed attempt is one event; the
    // tier logs one warning per outage, with the most telling reason seen in its first moments.
    this.#client.on("error", (err: unknown) => this.#errored(err));
    this.#client.on("ready", () => this.#listener("up", "connected"));
    this.#subscriber.on("error", () => {});
    // connect() settles only once Redis answers; the proxy does not wait for it.
    this.#client.connect().catch(() => {});
    this.#subscriber.connect().catch(() => {});
  }

  keysOf(namespace: string, key: string): TierKeys {
    return singleKeys(namespace, key);
  }

  onConnection(listener: (state: "up" | "down", reason: string) => void): void {
    this.#listener = listener;
  }

  async acquire(keys: TierKeys, token: string, lockMs: number, freshForMs: number): Promise<Lookup> {
    return lookup(
      await run(this.#binary, SCRIPTS.acquire, [keys.answer, keys.lock, keys.waiters], [
        token,
        lockArg(lockMs),
        String(Math.round(freshForMs)),
      ]),
    );
  }

  async look(keys: TierKeys, freshForMs: number): Promise<Lookup> {
    return lookup(
      await run(this.#binary, SCRIPTS.look, [keys.answer, keys.lock], [String(Math.round(freshForMs))]),
    );
  }

  async extend(keys: TierKeys, token: string, lockMs: number): Promise<boolean> {
    return await run(this.#binary, SCRIPTS.extend, [keys.lock], [token, lockArg(lockMs)]) === 1;
  }

  async settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost"> {
    return settled(
      await run(this.#binary, SCRIPTS.settle, [keys.answer, keys.lock, keys.waiters], [
        token,
        bufferOf(answer),
        ttlArg(ttlMs),
        keys.channel,
        bufferOf(notice),
      ]),
    );
  }

  async subscribe(namespace: string, listener: (message: Uint8Array) => void): Promise<void> {
    await this.#subscriber.subscribe(
      singleKeys(namespace, "").channel,
      (message: Buffer) => listener(message),
      true,
    );
  }

  async purge(
    keys: PurgeKeys,
    record: string,
    channel: string,
    keep: number,
  ): Promise<{ seq: number; receivers: number }> {
    return await runPurge(this.#binary, keys, record, channel, keep);
  }

  async purges(keys: PurgeKeys, after: number): Promise<{ seq: number; records: string[] }> {
    return await runPurges(this.#binary, keys, after);
  }

  async subscribeChannel(channel: string, listener: (message: Uint8Array) => void): Promise<void> {
    await this.#subscriber.subscribe(channel, (message: Buffer) => listener(message), true);
  }

  #errored(err: unknown): void {
    this.#reason.note(err);
    this.#reporting ??= setTimeout(() => {
      this.#reporting = undefined;
      this.#listener("down", this.#reason.take());
    }, REASON_WINDOW_MS);
  }

  async close(): Promise<void> {
    clearTimeout(this.#reporting);
    this.#client.destroy();
    this.#subscriber.destroy();
    await Promise.resolve();
  }
}
