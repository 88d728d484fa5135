/**
 * The shared tier's settings: where Redis is (one server's URL, a Cluster's seed nodes, or Sentinels and a
 * master's name), how to reach it (credentials, TLS with a private CA and a client certificate) and the
 * tier's knobs, as flags and environment variables give them.
 *
 * @module
 */

import { loadClientTls } from "../wire/tls.ts";

/** Default namespace of the tier's keys and channel. */
export const DEFAULT_REDIS_PREFIX = "collapser:";
/** Default largest answer shared through Redis: 256 KiB. */
export const DEFAULT_REDIS_MAX_BYTES = 256 * 1024;
/** Default bound on one Redis round trip. */
export const DEFAULT_REDIS_TIMEOUT_MS = 250;
/** Default life of a lock: the longest one proxy waits for another's answer. */
export const DEFAULT_REDIS_LOCK_TTL_MS = 5_000;

/** One Redis node's address. */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** Where Redis is and how the tier uses it. */
export interface RedisConfig {
  /**
   * The URL as given (`redis://` or `rediss://`); log it through {@linkcode maskedRedisUrl}. With `cluster`
   * or `sentinel`, the seed nodes as given (show the whole with {@linkcode describeRedis}).
   */
  url: string;
  /** Whether to speak TLS (`rediss://`, or `--redis-tls` for a Cluster or Sentinel). */
  tls: boolean;
  /** One Redis (without `cluster` and `sentinel`): where it is. */
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  db: number;
  /** A Redis Cluster: its seed nodes (the client learns the rest). */
  cluster?: readonly RedisNode[];
  /** Sentinels, and the name of the master they watch (the tier follows it through failovers). */
  sentinel?: {
    readonly nodes: readonly RedisNode[];
    readonly master: string;
    /** The sentinels' own password (`requirepass` in sentinel.conf), if any. */
    readonly password?: string;
  };
  /** A private CA and a client certificate for TLS: the files as given. */
  tlsFiles?: RedisTlsFiles;
  /** Their contents, read and checked at start-up by {@linkcode loadRedisTls}. */
  tlsPem?: RedisTlsFiles;
  /** Namespace of every key and the channel. */
  prefix: string;
  /** Answers larger than this stay local. */
  maxBytes: number;
  /** Bound on one round trip, in ms. */
  timeoutMs: number;
  /** Life of a lock, in ms. */
  lockTtlMs: number;
}

/** TLS files towards Redis (or their PEM contents, once loaded). */
export interface RedisTlsFiles {
  /** The CA bundle Redis's certificate must chain to. @default {the runtime's root store} */
  readonly ca?: string;
  /** The client certificate presented to Redis (`tls-auth-clients yes`). */
  readonly cert?: string;
  /** Its private key. */
  readonly key?: string;
}

/** A `--redis` value that is not a Redis URL; the message says why. */
export class RedisUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisUrlError";
  }
}

/**
 * Reads `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). The port defaults to 6379 and
 * the database to 0.
 *
 * @throws {RedisUrlError} for anything else
 */
export function parseRedisUrl(raw: string): Pick<
  RedisConfig,
  "url" | "tls" | "host" | "port" | "username" | "password" | "db"
> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RedisUrlError(`not a URL: ${JSON.stringify(maskedRedisUrl(raw))} (expected redis://host:port)`);
  }
  const shown = JSON.stringify(maskedRedisUrl(raw));
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new RedisUrlError(`${shown}: the scheme must be redis:// or rediss:// (TLS)`);
  }
  if (url.hostname === "") throw new RedisUrlError(`${shown}: no host`);
  if (url.search !== "" || url.hash !== "") {
    throw new RedisUrlError(`${shown}: query and fragment are not supported`);
  }
  const path = url.pathname.replace(/^\//, "");
  if (!/^\d*$/.test(path) || Number(path) > 65535) {
    throw new RedisUrlError(`${shown}: the path must be a database number, e.g. /0`);
  }
  const port = url.port === "" ? 6379 : Number(url.port);
  if (port < 1) throw new RedisUrlError(`${shown}: the port must be 1-65535`);
  return {
    url: raw,
    tls: url.protocol === "rediss:",
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    username: url.username === "" ? undefined : decodeURIComponent(url.username),
    password: url.password === "" ? undefined : decodeURIComponent(url.password),
    db: path === "" ? 0 : Number(path),
  };
}

/**
 * The URL with everything before its last `@` masked (user and password), for logs, errors and the status
 * page. Masking up to the last `@` also covers a password that itself holds `@` or `/`.
 */
export function maskedRedisUrl(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/i, "$1***@");
}

/**
 * Reads `HOST:PORT[,HOST:PORT…]` (`[v6]:PORT` for IPv6), as `--redis-cluster` and `--redis-sentinel` take
 * them. The port defaults to `defaultPort`.
 *
 * @throws {RedisUrlError} naming the first bad node
 */
export function parseRedisNodes(raw: string, defaultPort: number): RedisNode[] {
  const nodes: RedisNode[] = [];
  for (const item of raw.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(item);
    const port = match?.[2] === undefined ? defaultPort : Number(match[2]);
    if (match === null || port < 1 || port > 65535) {
      throw new RedisUrlError(`${JSON.stringify(item)}: expected HOST:PORT or [IPv6]:PORT`);
    }
    const host = match[1].replace(/^\[(.*)\]$/, "$1");
    if (!nodes.some((n) => n.host === host && n.port === port)) nodes.push({ host, port });
  }
  if (nodes.length === 0) throw new RedisUrlError("no node given (expected HOST:PORT[,HOST:PORT...])");
  return nodes;
}

/** What Redis the tier uses, for logs and the status page (credentials masked). */
export function describeRedis(config: RedisConfig): string {
  const nodes = (list: readonly RedisNode[]) =>
    list.map((n) => `${n.host.includes(":") ? `[${n.host}]` : n.host}:${n.port}`).join(",");
  const tls = config.tls ? " (TLS)" : "";
  if (config.cluster) return `cluster ${nodes(config.cluster)}${tls}`;
  if (config.sentinel) return `sentinel ${config.sentinel.master} at ${nodes(config.sentinel.nodes)}${tls}`;
  return maskedRedisUrl(config.url);
}

/**
 * Reads and checks the TLS files (the CA holds certificates, the key matches the certificate), so that a
 * bad one is one line naming it at start-up. Returns `config` with their contents.
 *
 * @throws {TlsError} naming the first bad file
 */
export async function loadRedisTls(config: RedisConfig | undefined): Promise<RedisConfig | undefined> {
  if (config?.tlsFiles === undefined) return config;
  const loaded = await loadClientTls(config.tlsFiles, "redis");
  return { ...config, tlsPem: { ca: loaded.ca, cert: loaded.cert, key: loaded.key } };
}
