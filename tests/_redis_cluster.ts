/**
 * Real Redis deployments beyond one server, for tests and benchmarks (Debian package `redis-server`, which
 * brings `redis-cli`): a Redis Cluster on loopback (masters and replicas, `redis-server --cluster-enabled
 * yes` joined by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`), a Sentinel set (a
 * master, a replica and three sentinels), and a TLS-only redis-server. Everything runs in a temporary
 * directory removed on dispose; every wait polls Redis (cluster state, roles, sentinel answers) with a bound,
 * never a fixed sleep. Commands go through `redis-cli` so that TLS nodes are reached the same way.
 *
 * @module
 */

import { parseRedisNodes, type RedisConfig } from "../src/fleet/redis_config.ts";
import { bucketOf, CLUSTER_BUCKETS, CLUSTER_SLOTS } from "../src/fleet/slots.ts";
import { collapseKey } from "../src/policy/key.ts";
import { freePort, freePorts } from "./_redis.ts";
import type { TlsCert } from "./_tls.ts";

/** TLS files of a Redis deployment: the server's certificate, the CA it trusts, and the client it uses. */
export interface RedisTlsFiles {
  /** The CA client certificates must chain to (and that `redis-cli` trusts). */
  readonly ca: TlsCert;
  /** The certificate each node presents. */
  readonly server: TlsCert;
  /** The certificate nodes and `redis-cli` present as clients (replication, cluster bus, commands). */
  readonly client: TlsCert;
  /** Require client certificates. @default {true} */
  readonly authClients?: boolean;
}

/** Arguments that make a redis-server TLS-only on `port`. */
function tlsServerArgs(port: number, tls: RedisTlsFiles): string[] {
  return [
    "--port",
    "0",
    "--tls-port",
    String(port),
    "--tls-cert-file",
    tls.server.cert,
    "--tls-key-file",
    tls.server.key,
    "--tls-ca-cert-file",
    tls.ca.cert,
    "--tls-client-cert-file",
    tls.client.cert,
    "--tls-client-key-file",
    tls.client.key,
    "--tls-auth-clients",
    tls.authClients === false ? "no" : "yes",
    "--tls-replication",
    "yes",
  ];
}

/** `redis-cli` on `127.0.0.1:port` (over TLS with `tls`, with `password`); resolves with its output, trimmed. */
export async function redisCli(
  port: number,
  args: string[],
  tls?: RedisTlsFiles,
  password?: string,
): Promise<string> {
  const tlsArgs = tls
    ? ["--tls", "--cacert", tls.ca.cert, "--cert", tls.client.cert, "--key", tls.client.key]
    : [];
  const output = await new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(port), ...tlsArgs, ...args],
    env: password === undefined ? {} : { REDISCLI_AUTH: password },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    throw new Error(`redis-cli -p ${port} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return text;
}

/** Polls `condition` every 50 ms until it holds; throws after `limitMs` naming `what`. */
export async function poll(
  condition: () => Promise<boolean> | boolean,
  what: string,
  limitMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One redis-server process that can be killed and started again on its port. */
class Node {
  #child: Deno.ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly args: string[],
    readonly tls?: RedisTlsFiles,
    readonly password?: string,
  ) {}

  get running(): boolean {
    return this.#child !== undefined;
  }

  async start(): Promise<void> {
    this.#child = new Deno.Command("redis-server", {
      args: this.args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await poll(
      async () => (await redisCli(this.port, ["PING"], this.tls, this.password)) === "PONG",
      `:${this.port} PING`,
    );
  }

  /** SIGKILL: the node dies at once, as in a crash. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
  }

  cli(...args: string[]): Promise<string> {
    return redisCli(this.port, args, this.tls, this.password);
  }
}

/** What `CLUSTER NODES` says of one node. */
export interface ClusterNodeInfo {
  readonly id: string;
  readonly port: number;
  readonly role: "master" | "replica";
  /** The master's id, for a replica. */
  readonly masterId: string | undefined;
  readonly failed: boolean;
  /** Slot ranges, e.g. `0-5460`. */
  readonly slots: string[];
}

/** A running Redis Cluster on loopback. */
export interface RedisCluster extends AsyncDisposable {
  /** Every node's port, masters first as created. */
  readonly ports: number[];
  /** `127.0.0.1:port` of every node: seeds for `--redis-cluster`. */
  readonly seeds: string[];
  /** `CLUSTER NODES` as seen by a running node. */
  nodes(): Promise<ClusterNodeInfo[]>;
  /** The node serving `slot` now (as seen by a running node). */
  masterOf(slot: number): Promise<ClusterNodeInfo>;
  /** A command on a node. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** SIGKILL one node. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again (it rejoins with its nodes.conf). */
  restart(port: number): Promise<void>;
  /** Waits until every running node says `cluster_state:ok` and agrees on the masters of all slots. */
  settled(): Promise<void>;
}

/** Options for {@linkcode startCluster}. */
export interface ClusterOptions {
  /** @default {3} */
  masters?: number;
  /** Replicas per master. @default {1} */
  replicas?: number;
  /** Node timeout (failure detection), in ms. @default {1000} */
  nodeTimeoutMs?: number;
  /** TLS-only nodes (cluster bus and replication over TLS too). */
  tls?: RedisTlsFiles;
  /** Ports to use (one per node); free ones by default. */
  ports?: number[];
  /** More redis-server arguments for every node. */
  args?: string[];
  /** Clients (and nodes, to each other) must authenticate with this password. */
  password?: string;
}

/**
 * Starts `masters × (1 + replicas)` cluster nodes on loopback, joins them with `redis-cli --cluster create`,
 * and resolves once every node says `cluster_state:ok` and every replica is in sync.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const count = masters * (1 + (options.replicas ?? 1));
  const dir = await Deno.makeTempDir({ prefix: "collapser_cluster_" });
  // Client and cluster-bus ports picked together, so that no two of them can be the same port.
  // Given client ports may not be bound yet: bus ports are picked around them.
  const given = new Set(options.ports ?? []);
  const picked = freePorts(2 * count + given.size).filter((port) => !given.has(port));
  const ports = options.ports ?? picked.slice(count, 2 * count);
  const nodes = ports.map((port, i) =>
    new Node(
      port,
      [
        ...(options.tls ? tlsServerArgs(port, options.tls) : ["--port", String(port)]),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        // The bus port (the client port + 10000 by default) might be taken or out of range.
        "--cluster-port",
        String(picked[i]),
        "--cluster-config-file",
        `${dir}/nodes-${port}.conf`,
        "--cluster-node-timeout",
        String(options.nodeTimeoutMs ?? 1_000),
        ...(options.tls ? ["--tls-cluster", "yes"] : []),
        // A slot without a master stops only its own keys, not the whole cluster: what a cache wants.
        "--cluster-require-full-coverage",
        "no",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        // A replica syncs at once (Redis 7 waits 5 s for more replicas to join a diskless sync).
        "--repl-diskless-sync-delay",
        "0",
        ...options.password === undefined
          ? []
          : ["--requirepass", options.password, "--masterauth", options.password],
        ...options.args ?? [],
      ],
      options.tls,
      options.password,
    )
  );
  const byPort = new Map(nodes.map((n) => [n.port, n]));
  const anyRunning = () => {
    const node = nodes.find((n) => n.running);
    if (node === undefined) throw new Error("no cluster node is running");
    return node;
  };
  const parseNodes = (text: string): ClusterNodeInfo[] =>
    text.split("\n").filter((l) => l.trim() !== "").map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.split(" ");
      return {
        id,
        port: Number(address.split("@")[0].split(":").pop()),
        role: flags.includes("master") ? "master" : "replica",
        masterId: master === "-" ? undefined : master,
        failed: /\bfail\b|fail\?/.test(flags),
        slots: slots.filter((s) => !s.startsWith("[")),
      };
    });
  const cluster: RedisCluster = {
    ports,
    seeds: ports.map((p) => `127.0.0.1:${p}`),
    async nodes() {
      return parseNodes(await anyRunning().cli("CLUSTER", "NODES"));
    },
    async masterOf(slot) {
      const all = await cluster.nodes();
      const found = all.find((n) => n.role === "master" && !n.failed && serves(n, slot));
      if (found === undefined) throw new Error(`no master serves slot ${slot}`);
      return found;
    },
    cli: (port, ...args) => byPort.get(port)!.cli(...args),
    kill: (port) => byPort.get(port)!.kill(),
    restart: (port) => byPort.get(port)!.start(),
    async settled() {
      await poll(async () => {
        for (const node of nodes.filter((n) => n.running)) {
          if (!(await node.cli("CLUSTER", "INFO")).includes("cluster_state:ok")) return false;
        }
        // Every running node sees the same masters, each with its slots, and no failed master holds slots.
        const views = await Promise.all(
          nodes.filter((n) => n.running).map(async (n) =>
            parseNodes(await n.cli("CLUSTER", "NODES"))
              .filter((i) => i.role === "master" && i.slots.length > 0)
              .map((i) => `${i.port}:${i.failed}:${i.slots.join(",")}`).sort().join(" ")
          ),
        );
        return views.every((v) => v === views[0]) && !views[0].includes(":true:");
      }, "cluster_state:ok on every node, and one view of the masters");
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(nodes.map((n) => n.kill()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await redisCli(
      ports[0],
      [
        "--cluster",
        "create",
        ...cluster.seeds,
        "--cluster-replicas",
        String(options.replicas ?? 1),
        "--cluster-yes",
      ],
      options.tls,
      options.password,
    );
    await cluster.settled();
    // Replicas in sync with their masters: a failover needs a replica that has the data.
    await poll(async () => {
      for (const node of nodes) {
        const info = await node.cli("INFO", "replication");
        if (info.includes("role:slave") && !info.includes("master_link_status:up")) return false;
      }
      return true;
    }, "every replica in sync");
    return cluster;
  } catch (err) {
    await cluster[Symbol.asyncDispose]();
    throw err;
  }
}

/** A running Sentinel set: one master, one replica, three sentinels watching them. */
export interface SentinelSet extends AsyncDisposable {
  /** The name the sentinels know the master by. */
  readonly name: string;
  /** `127.0.0.1:port` of every sentinel: seeds for `--redis-sentinel`. */
  readonly seeds: string[];
  /** The data nodes' ports: master first, as started. */
  readonly ports: number[];
  /** The master's port as the sentinels say now. */
  master(): Promise<number>;
  /** A command on a data node. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** SIGKILL one data node. */
  kill(port: number): Promise<void>;
  /** Waits until the sentinels name a master other than `port`, and that master says it is one. */
  failedOver(port: number): Promise<number>;
}

/**
 * Starts a master, a replica of it, and three sentinels (quorum 2, down after 500 ms) that know both and
 * each other.
 */
export async function startSentinels(options: { tls?: RedisTlsFiles } = {}): Promise<SentinelSet> {
  const name = "collapser-test";
  const dir = await Deno.makeTempDir({ prefix: "collapser_sentinel_" });
  const tls = options.tls;
  const listen = (port: number) => tls ? tlsServerArgs(port, tls) : ["--port", String(port)];
  const common = [
    ...["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    ...["--repl-diskless-sync-delay", "0"],
  ];
  const [masterPort, replicaPort, ...sentinelPorts] = freePorts(5);
  const master = new Node(masterPort, [...listen(masterPort), ...common], tls);
  const replica = new Node(
    replicaPort,
    [...listen(replicaPort), ...common, "--replicaof", "127.0.0.1", String(masterPort)],
    tls,
  );
  const sentinels = sentinelPorts.map((port) =>
    new Node(port, [`${dir}/sentinel-${port}.conf`, "--sentinel"], tls)
  );
  const data = new Map([[masterPort, master], [replicaPort, replica]]);
  const set: SentinelSet = {
    name,
    seeds: sentinelPorts.map((p) => `127.0.0.1:${p}`),
    ports: [masterPort, replicaPort],
    async master() {
      for (const sentinel of sentinels) {
        try {
          const reply = await sentinel.cli("SENTINEL", "get-master-addr-by-name", name);
          return Number(reply.split("\n")[1]);
        } catch {
          // ask the next one
        }
      }
      throw new Error("no sentinel answers");
    },
    cli: (port, ...args) => data.get(port)!.cli(...args),
    kill: (port) => data.get(port)!.kill(),
    async failedOver(port) {
      let now = port;
      await poll(async () => {
        now = await set.master();
        return now !== port && (await data.get(now)!.cli("ROLE")).startsWith("master");
      }, `a failover away from :${port}`);
      return now;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([...sentinels, master, replica].map((n) => n.kill()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await master.start();
    await replica.start();
    await poll(
      async () => (await replica.cli("INFO", "replication")).includes("master_link_status:up"),
      "the replica in sync",
    );
    for (const port of sentinelPorts) {
      const tlsConfig = tls
        ? [
          "port 0",
          `tls-port ${port}`,
          `tls-cert-file ${tls.server.cert}`,
          `tls-key-file ${tls.server.key}`,
          `tls-ca-cert-file ${tls.ca.cert}`,
          `tls-client-cert-file ${tls.client.cert}`,
          `tls-client-key-file ${tls.client.key}`,
          `tls-auth-clients ${tls.authClients === false ? "no" : "yes"}`,
          "tls-replication yes",
        ]
        : [`port ${port}`];
      await Deno.writeTextFile(
        `${dir}/sentinel-${port}.conf`,
        [
          ...tlsConfig,
          "bind 127.0.0.1",
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${name} 500`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          "",
        ].join("\n"),
      );
    }
    await Promise.all(sentinels.map((s) => s.start()));
    // Each sentinel must know the other two (hello messages) and the replica before a failover can happen.
    await poll(async () => {
      for (const sentinel of sentinels) {
        const others = await sentinel.cli("SENTINEL", "sentinels", name);
        const replicas = await sentinel.cli("SENTINEL", "replicas", name);
        if ((others.match(/^name$/gm) ?? []).length < 2 || !replicas.includes(String(replicaPort))) {
          return false;
        }
      }
      return true;
    }, "three sentinels that know each other and the replica");
    return set;
  } catch (err) {
    await set[Symbol.asyncDispose]();
    throw err;
  }
}

/** A TLS-only redis-server (`--tls-port`, `--port 0`), requiring client certificates unless told not to. */
export async function startTlsRedis(tls: RedisTlsFiles): Promise<AsyncDisposable & { port: number }> {
  const port = freePort();
  const node = new Node(port, [
    ...tlsServerArgs(port, tls),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ], tls);
  await node.start();
  return { port, [Symbol.asyncDispose]: () => node.kill() };
}

/** The tier's settings for a Redis Cluster (or, with `sentinel`, a Sentinel set), with a prefix of the test's own. */
export function clusterConfig(
  seeds: readonly string[],
  overrides: Partial<RedisConfig> = {},
): RedisConfig {
  return {
    url: seeds.join(","),
    tls: false,
    host: "",
    port: 0,
    username: undefined,
    password: undefined,
    db: 0,
    cluster: parseRedisNodes(seeds.join(","), 6379),
    prefix: `t${crypto.randomUUID().slice(0, 8)}:`,
    maxBytes: 256 * 1024,
    // Generous: a loaded CI machine must not take the tier down by accident.
    timeoutMs: 2_000,
    lockTtlMs: 10_000,
    ...overrides,
  };
}

/** Keys under `prefix` on the node at `port` (SCAN, so a big node does not block). */
export async function keysOn(cluster: RedisCluster, port: number, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, ...found] = (await cluster.cli(port, "SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000"))
      .split("\n");
    cursor = next;
    keys.push(...found.filter((k) => k !== ""));
  } while (cursor !== "0");
  return keys;
}

/**
 * The collapse key of a test Unary call with `payload` (tests/_helpers.ts's JSON messages, no metadata of
 * its own: grpc-js sends only metadata the key leaves out), and the slot the cluster link puts it on.
 */
export function keyOfPayload(payload: unknown): { key: string; slot: number } {
  const key = collapseKey("/test.Test/Unary", {}, new TextEncoder().encode(JSON.stringify(payload)));
  return { key, slot: bucketOf(key) * (CLUSTER_SLOTS / CLUSTER_BUCKETS) };
}

/** Whether `node` serves `slot` (by its slot ranges). */
export function serves(node: ClusterNodeInfo, slot: number): boolean {
  return node.slots.some((range) => {
    const [from, to = from] = range.split("-").map(Number);
    return slot >= from && slot <= to;
  });
}

/** `n` payloads `{ item: "<tag>-<i>" }` whose keys land on slots `node` serves. */
export function payloadsOn(node: ClusterNodeInfo, tag: string, n: number): { item: string }[] {
  const found: { item: string }[] = [];
  for (let i = 0; found.length < n; i++) {
    if (i > 100 * n + 1_000) throw new Error(`:${node.port} serves too few slots`);
    const payload = { item: `${tag}-${i}` };
    if (serves(node, keyOfPayload(payload).slot)) found.push(payload);
  }
  return found;
}

/** The tier's settings for a Sentinel set (the master `name` they watch), with a prefix of the test's own. */
export function sentinelConfig(
  seeds: readonly string[],
  name: string,
  overrides: Partial<RedisConfig> = {},
): RedisConfig {
  const { cluster: _, ...config } = clusterConfig(seeds);
  return {
    ...config,
    sentinel: { nodes: parseRedisNodes(seeds.join(","), 26379), master: name },
    ...overrides,
  };
}
