/**
 * The shared tier's client for a Redis Cluster: node-redis's cluster client (`createCluster`), which learns
 * the slot map from the seed nodes, keeps one connection per master (and one per master for shard
 * channels), follows MOVED and ASK redirections, and refreshes the slot map when a node stops answering —
 * so a reshard or a master's failover to its replica changes where keys go without the tier noticing.
 *
 * Keys: every collapse key falls in one of 1,024 buckets, and its answer, lock, waiters flag and notice
 * channel carry the bucket's hash tag (slots.ts): one slot per collapse key, buckets evenly over the slots
 * and so over the masters. Notices are published with `SPUBLISH` from inside the settle script, on the
 * bucket's shard channel; every proxy subscribes (`SSUBSCRIBE`) to the 1,024 shard channels, which the
 * client spreads over the masters and moves with their slots. A publish costs one master, not the cluster
 * bus, so the notices scale with the masters.
 *
 * Failures: while the cluster cannot be reached at all (no seed answers at start-up, refused credentials)
 * the whole tier is down, and this link keeps trying to connect. Once it is up, a failure of one master
 * — its connection closed or refused, `CLUSTERDOWN` for its slots while its replica takes over, too many
 * redirections — is a {@linkcode ShardUnavailable} for the master serving the keys' slot
 * ({@linkcode TierKeys.shard}): that call goes to the backend, that master's keys stay local for a while
 * (shard_health.ts), and the other masters' keys are still shared. `TRYAGAIN` (a slot half migrated) is
 * retried twice, then falls back for that call only (three in a row count as the master's failure).
 *
 * This module is only loaded with `--redis-cluster`.
 *
 * @module
 */

import { createCluster, ErrorReply, RESP_TYPES } from "@redis/client";
import { Buffer } from "node:buffer";
import { log } from "../util/log.ts";
import { type Lookup, type PurgeKeys, type RedisLink, ShardUnavailable, type TierKeys } from "./link.ts";
import type { RedisConfig } from "./redis_config.ts";
import { backoff, describe, Reason, socketOptions } from "./redis_options.ts";
import { bufferOf, lockArg, lookup, run, runPurge, runPurges, SCRIPTS, settled, ttlArg } from "./scripts.ts";
import { bucketOf, bucketTags, CLUSTER_BUCKETS, CLUSTER_SLOTS } from "./slots.ts";

/** How long after a node stops answering the client asks the others for the slot map again, in ms. */
const TOPOLOGY_REFRESH_MS = 500;
/** Redirections (MOVED, ASK) one command may follow. */
const MAX_REDIRECTIONS = 8;
/** `TRYAGAIN` (a multi-key command on a slot half migrated): retries, this far apart (ms × attempt). */
const TRY_AGAIN = { retries: 2, delayMs: 20 };
/** Errors from a node that mean its slots have no usable master now. */
const SHARD_ERRORS = /^(CLUSTERDOWN|MASTERDOWN|LOADING|READONLY)/;
/** The cluster client's own event for re-subscribing listeners of a node that left (see below). */
const RESUBSCRIBE_EVENT = "__resubscribeListeners";
/** How long to wait before subscribing again to channels whose subscription failed, in ms. */
const RESUBSCRIBE_RETRY_MS = 1_000;
/** How often to look for the tier's slots without a master in the slot map (then ask the cluster again). */
const COVERAGE_CHECK_MS = 1_000;
/** The shard of slots the slot map gives no master (a cluster still forming, or slots lost for good). */
const NO_MASTER = "slots without a master";

/** Starts connecting to the cluster (without waiting: seeds that do not answer yet are retried). */
export function openRedisClusterLink(config: RedisConfig): RedisLink {
  return new ClusterLink(config);
}

type Listener = (message: Buffer) => void;

class ClusterLink implements RedisLink {
  readonly #cluster;
  readonly #binary;
  readonly #tags = bucketTags();
  #listener: (state: "up" | "down", reason: string) => void = () => {};
  #closed = false;
  readonly #reason = new Reason();
  readonly #connected = Promise.withResolvers<void>();
  /** The shard channels and the listener subscribed to them, once subscribe() was called. */
  #subscription: { channels: string[]; listener: Listener } | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  readonly #coverage: ReturnType<typeof setInterval>;

  constructor(config: RedisConfig) {
    const seeds = config.cluster ?? [];
    this.#cluster = createCluster({
      rootNodes: seeds.map((n) => ({
        socket: { host: n.host, port: n.port, ...socketOptions(config, n.host) },
      })),
      defaults: {
        // The nodes' own addresses come from the cluster: TLS is checked against them (no SNI name).
        socket: socketOptions(config, "0.0.0.0"),
        username: config.username,
        password: config.password,
        // A command for a master that is away fails at once (the call goes to the backend) instead of
        // waiting in a queue for it.
        disableOfflineQueue: true,
      },
      maxCommandRedirections: MAX_REDIRECTIONS,
      topologyRefreshOnReconnectionAttemptStrategy: TOPOLOGY_REFRESH_MS,
    });
    this.#binary = this.#cluster.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    // An 'error' event without a listener would throw. Discovery errors say why a seed did not answer.
    this.#cluster.on("error", (err: unknown) => this.#reason.note(err));
    this.#cluster.on(
      "node-error",
      (err: unknown) => log.debug("redis cluster node: {error}", { error: describe(err) }),
    );
    this.#cluster.on("sharded-channel-moved-error", () => this.#scheduleResubscribe());
    this.#guardResubscribe();
    this.#coverage = setInterval(() => this.#checkCoverage(), COVERAGE_CHECK_MS);
    this.#connect();
  }

  keysOf(namespace: string, key: string): TierKeys {
    const bucket = bucketOf(key);
    const tagged = `${namespace}{${this.#tags[bucket]}}`;
    return {
      answer: `${tagged}${key}:a`,
      lock: `${tagged}${key}:l`,
      waiters: `${tagged}${key}:w`,
      channel: `${tagged}answers`,
      shard: this.#shardOf(bucket * (CLUSTER_SLOTS / CLUSTER_BUCKETS)),
    };
  }

  shards(): readonly string[] {
    return this.#cluster.isReady
      ? [...this.#cluster.masters.map((m) => `master ${m.address}`), NO_MASTER]
      : [];
  }

  onConnection(listener: (state: "up" | "down", reason: string) => void): void {
    this.#listener = listener;
  }

  async acquire(keys: TierKeys, token: string, lockMs: number, freshForMs: number): Promise<Lookup> {
    return lookup(
      await this.#run(keys, SCRIPTS.acquire, [keys.answer, keys.lock, keys.waiters], [
        token,
        lockArg(lockMs),
        String(Math.round(freshForMs)),
      ]),
    );
  }

  async look(keys: TierKeys, freshForMs: number): Promise<Lookup> {
    return lookup(
      await this.#run(keys, SCRIPTS.look, [keys.answer, keys.lock], [String(Math.round(freshForMs))]),
    );
  }

  async extend(keys: TierKeys, token: string, lockMs: number): Promise<boolean> {
    return await this.#run(keys, SCRIPTS.extend, [keys.lock], [token, lockArg(lockMs)]) === 1;
  }

  async settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost"> {
    return settled(
      await this.#run(keys, SCRIPTS.settleSharded, [keys.answer, keys.lock, keys.waiters], [
        token,
        bufferOf(answer),
        ttlArg(ttlMs),
        keys.channel,
        bufferOf(notice),
      ]),
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
    // A plain PUBLISH reaches every node of a Cluster, so one subscription anywhere hears every purge.
    await this.#connected.promise;
    await this.#cluster.subscribe(channel, (message: Buffer) => listener(message), true);
  }

  async subscribe(namespace: string, listener: (message: Uint8Array) => void): Promise<void> {
    const channels = this.#tags.map((tag) => `${namespace}{${tag}}answers`);
    this.#subscription = { channels, listener: (message) => listener(message) };
    await this.#connected.promise;
    await this.#subscribeTo(channels);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    clearInterval(this.#coverage);
    this.#connected.resolve();
    this.#cluster.destroy();
    await Promise.resolve();
  }

  /** Connects, and on failure (no seed answers) tries again with backoff until it does or the link closes. */
  async #connect(): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#cluster.connect();
      } catch (err) {
        if (this.#closed) return;
        this.#listener("down", `no cluster node answers (${this.#reason.take()}; ${describe(err)})`);
        await new Promise((resolve) => setTimeout(resolve, backoff(attempt)));
        continue;
      }
      if (this.#closed) return void this.#cluster.destroy();
      this.#connected.resolve();
      this.#listener("up", "connected");
      return;
    }
  }

  /**
   * The master serving `slot` now (its address), or {@linkcode NO_MASTER} when the map has none for it;
   * undefined while there is no slot map at all (the whole tier's failure, not a shard's).
   */
  #shardOf(slot: number): string | undefined {
    if (!this.#connectedToMasters()) return undefined;
    const master = this.#cluster.slots[slot]?.master;
    return master === undefined ? NO_MASTER : `master ${master.address}`;
  }

  #connectedToMasters(): boolean {
    return this.#cluster.isReady && this.#cluster.masters.length > 0;
  }

  /**
   * The client refreshes its slot map after MOVED and when a node it uses stops answering, but not when
   * slots simply have no master in it (it sends nothing for them): a cluster still forming when we
   * connected, or slots whose master and replicas are all gone. So while any of the tier's slots has none,
   * ask the cluster again every second.
   */
  #checkCoverage(): void {
    if (!this.#cluster.isReady) return;
    const slots = this.#cluster.slots;
    for (let bucket = 0; bucket < CLUSTER_BUCKETS; bucket++) {
      if (slots[bucket * (CLUSTER_SLOTS / CLUSTER_BUCKETS)]?.master === undefined) {
        this.#cluster._slots.rediscover().catch(() => {});
        return;
      }
    }
  }

  /** A script for `keys`, with its failures sorted into the shard's and the whole tier's. */
  async #run(keys: TierKeys, script: typeof SCRIPTS.acquire, names: string[], args: (string | Buffer)[]) {
    for (let attempt = 0;; attempt++) {
      try {
        return await run(this.#binary, script, names, args);
      } catch (err) {
        if (err instanceof ErrorReply && err.message.startsWith("TRYAGAIN") && attempt < TRY_AGAIN.retries) {
          await new Promise((resolve) => setTimeout(resolve, TRY_AGAIN.delayMs * (attempt + 1)));
          continue;
        }
        throw this.#sorted(err, keys);
      }
    }
  }

  /**
   * A failure as the tier should take it: a reply error is the tier's (refused credentials, a script
   * error) unless it says the slot has no usable master; while the cluster is not connected at all, the
   * tier's; otherwise (a node's connection closed, refused or offline, too many redirections) the shard's.
   */
  #sorted(err: unknown, keys: TierKeys): unknown {
    if (!this.#connectedToMasters() || keys.shard === undefined) return err;
    if (err instanceof ErrorReply && err.message.startsWith("TRYAGAIN")) {
      return new ShardUnavailable(keys.shard, { cause: err, transient: true });
    }
    if (err instanceof ErrorReply && !SHARD_ERRORS.test(err.message)) return err;
    return new ShardUnavailable(keys.shard, { cause: err });
  }

  async #subscribeTo(channels: string[]): Promise<void> {
    const subscription = this.#subscription;
    if (subscription === undefined || this.#closed) return;
    const failed: string[] = [];
    await Promise.all(
      channels.map((channel) =>
        this.#cluster.sSubscribe(channel, subscription.listener, true).catch(() => failed.push(channel))
      ),
    );
    // Lost notices meanwhile are covered by the waiters' poll.
    if (failed.length > 0) this.#scheduleResubscribe(failed);
  }

  /** Subscribes again, a little later, to `channels` (all of them by default). */
  #scheduleResubscribe(channels?: string[]): void {
    if (this.#closed || this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#subscribeTo(channels ?? this.#subscription?.channels ?? []);
    }, RESUBSCRIBE_RETRY_MS);
  }

  /**
   * When a node leaves the slot map, the cluster client moves its subscriptions to the new owners itself,
   * but without catching a failure (a slot with no master yet): that would be an unhandled rejection, which
   * ends a Deno process. So its handler is replaced by one that catches and retries later.
   */
  #guardResubscribe(): void {
    const cluster = this.#cluster;
    for (const handler of cluster.listeners(RESUBSCRIBE_EVENT)) {
      cluster.off(RESUBSCRIBE_EVENT, handler as (...args: unknown[]) => void);
    }
    cluster.on(RESUBSCRIBE_EVENT, (listeners: { SHARDED?: Map<string, unknown> }) => {
      if (listeners?.SHARDED?.size) this.#subscribeTo([...listeners.SHARDED.keys()]);
    });
  }
}
