/**
 * The shared tier's client behind Redis Sentinel: the master the sentinels name, followed through
 * failovers. It is the one-Redis link (redis_link.ts) opened on that master's address, and opened again on
 * the next master's when the sentinels name another.
 *
 * It follows Redis's guidelines for Sentinel clients: ask the sentinels in turn
 * (`SENTINEL get-master-addr-by-name`), the first that answers first next time; connect to the address
 * given; and ask again whenever the master stops answering (its connection fails) or turns out not to be a
 * master (`READONLY`: it was demoted, or the sentinels have not noticed yet) — until they name another.
 * Meanwhile the tier is down as with one Redis: one warning, calls served locally, and back when the new
 * master answers the probe.
 *
 * Why not node-redis's own Sentinel client: its commands wait for a master while it looks for one (the
 * tier wants them to fail at once and go to the backend), and when no sentinel answers at start-up it gives
 * up after 16 tries and closes for good; this is 100 lines over the link already tested with one Redis.
 *
 * This module is only loaded with `--redis-sentinel`.
 *
 * @module
 */

import { createClient } from "@redis/client";
import type { Lookup, PurgeKeys, RedisLink, TierKeys } from "./link.ts";
import type { RedisConfig, RedisNode } from "./redis_config.ts";
import { openRedisLink, singleKeys } from "./redis_link.ts";
import { backoff, describe, socketOptions } from "./redis_options.ts";

/** Asking the sentinels again: at most this often, in ms. */
const RESOLVE_EVERY_MS = 250;

/** Starts asking the sentinels for the master (without waiting: sentinels not there yet are retried). */
export function openRedisSentinelLink(config: RedisConfig): RedisLink {
  return new SentinelLink(config);
}

/** No master known yet (no sentinel has answered). */
class NoMaster extends Error {
  constructor(reason: string) {
    super(`no master known yet: ${reason}`);
    this.name = "NoMaster";
  }
}

class SentinelLink implements RedisLink {
  readonly #config: RedisConfig;
  readonly #sentinels: RedisNode[];
  #master: { address: string; link: RedisLink } | undefined;
  #listener: (state: "up" | "down", reason: string) => void = () => {};
  #subscription: { namespace: string; listener: (message: Uint8Array) => void } | undefined;
  /** The purge channel's subscription, made again on each new master. */
  #channelSubscription: { channel: string; listener: (message: Uint8Array) => void } | undefined;
  #closed = false;
  #resolving: Promise<void> | undefined;
  #lastResolve = -Infinity;
  #lastError = "no sentinel asked yet";

  constructor(config: RedisConfig) {
    this.#config = config;
    this.#sentinels = [...config.sentinel?.nodes ?? []];
    this.#start();
  }

  keysOf(namespace: string, key: string): TierKeys {
    return singleKeys(namespace, key);
  }

  onConnection(listener: (state: "up" | "down", reason: string) => void): void {
    this.#listener = listener;
  }

  acquire(keys: TierKeys, token: string, lockMs: number, freshForMs: number): Promise<Lookup> {
    return this.#use((link) => link.acquire(keys, token, lockMs, freshForMs));
  }

  look(keys: TierKeys, freshForMs: number): Promise<Lookup> {
    return this.#use((link) => link.look(keys, freshForMs));
  }

  extend(keys: TierKeys, token: string, lockMs: number): Promise<boolean> {
    return this.#use((link) => link.extend(keys, token, lockMs));
  }

  settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost"> {
    return this.#use((link) => link.settle(keys, token, answer, ttlMs, notice));
  }

  async subscribe(namespace: string, listener: (message: Uint8Array) => void): Promise<void> {
    this.#subscription = { namespace, listener };
    await this.#master?.link.subscribe(namespace, listener);
  }

  purge(keys: PurgeKeys, record: string, channel: string, keep: number) {
    return this.#use((link) => link.purge(keys, record, channel, keep));
  }

  purges(keys: PurgeKeys, after: number) {
    return this.#use((link) => link.purges(keys, after));
  }

  async subscribeChannel(channel: string, listener: (message: Uint8Array) => void): Promise<void> {
    this.#channelSubscription = { channel, listener };
    await this.#master?.link.subscribeChannel(channel, listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#master?.link.close();
    this.#master = undefined;
  }

  /** Asks the sentinels until one answers, with backoff. */
  async #start(): Promise<void> {
    for (let attempt = 0; !this.#closed && this.#master === undefined; attempt++) {
      await this.#resolve();
      if (this.#master !== undefined) return;
      this.#listener(
        "down",
        `no sentinel names master ${this.#config.sentinel?.master} (${this.#lastError})`,
      );
      await new Promise((resolve) => setTimeout(resolve, backoff(attempt)));
    }
  }

  /** A call on the current master; its failure makes us ask the sentinels again. */
  async #use<T>(call: (link: RedisLink) => Promise<T>): Promise<T> {
    const master = this.#master;
    if (master === undefined) throw new NoMaster(this.#lastError);
    try {
      return await call(master.link);
    } catch (err) {
      this.#suspect();
      throw err;
    }
  }

  /** The master may have changed: ask the sentinels (at most every RESOLVE_EVERY_MS, one at a time). */
  #suspect(): void {
    if (this.#closed || this.#resolving !== undefined) return;
    if (performance.now() - this.#lastResolve < RESOLVE_EVERY_MS) return;
    this.#resolving = this.#resolve().finally(() => this.#resolving = undefined);
  }

  /** Asks the sentinels in turn; on an answer naming another master, moves the link there. */
  async #resolve(): Promise<void> {
    this.#lastResolve = performance.now();
    const name = this.#config.sentinel?.master ?? "";
    for (const [i, sentinel] of this.#sentinels.entries()) {
      let address: RedisNode | undefined;
      try {
        address = await this.#ask(sentinel, name);
      } catch (err) {
        this.#lastError = `${sentinel.host}:${sentinel.port}: ${describe(err)}`;
        continue;
      }
      if (address === undefined) {
        this.#lastError = `${sentinel.host}:${sentinel.port} does not know ${name}`;
        continue;
      }
      // The sentinel that answered is asked first next time.
      this.#sentinels.splice(i, 1);
      this.#sentinels.unshift(sentinel);
      this.#moveTo(address);
      return;
    }
  }

  async #ask(sentinel: RedisNode, name: string): Promise<RedisNode | undefined> {
    const client = createClient({
      socket: {
        host: sentinel.host,
        port: sentinel.port,
        ...socketOptions(this.#config, sentinel.host),
        // One try per sentinel: the next one is asked rather than this one retried.
        reconnectStrategy: false,
      },
      password: this.#config.sentinel?.password,
      disableOfflineQueue: true,
    });
    client.on("error", () => {});
    try {
      await client.connect();
      const reply = await client.sendCommand(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
      if (!Array.isArray(reply) || reply.length !== 2) return undefined;
      return { host: String(reply[0]), port: Number(reply[1]) };
    } finally {
      client.destroy();
    }
  }

  /** Opens the one-Redis link on `node`, unless it is where we are already. */
  #moveTo(node: RedisNode): void {
    const address = `${node.host}:${node.port}`;
    if (this.#closed || this.#master?.address === address) return;
    const previous = this.#master;
    const link = openRedisLink({ ...this.#config, host: node.host, port: node.port });
    this.#master = { address, link };
    link.onConnection((state, reason) => {
      if (this.#master?.link !== link) return;
      if (state === "down") this.#suspect();
      this.#listener(state, state === "down" ? `master ${address}: ${reason}` : reason);
    });
    const subscription = this.#subscription;
    if (subscription) link.subscribe(subscription.namespace, subscription.listener).catch(() => {});
    const channel = this.#channelSubscription;
    if (channel) link.subscribeChannel(channel.channel, channel.listener).catch(() => {});
    previous?.link.close();
  }
}
