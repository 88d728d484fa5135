/**
 * A real `redis-server` (Debian package) for tests: started on a free loopback port with no persistence,
 * stopped (or killed, or restarted on the same port) by the test.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Policy } from "../src/policy/policy.ts";
import { Proxy, type ProxyOptions } from "../src/server/proxy.ts";
import { parseRedisUrl, type RedisConfig } from "../src/fleet/redis_config.ts";
import { newClient, parse, type TestBackend, type TestHandlers } from "./_helpers.ts";

/** A running redis-server. */
export interface RedisServer extends AsyncDisposable {
  readonly port: number;
  /** `redis://127.0.0.1:port`. */
  readonly url: string;
  /** Sends one command over a fresh connection and resolves with the raw reply (RESP2 text). */
  command(...args: string[]): Promise<string>;
  /** SIGKILL: the server dies at once, as in a crash. */
  kill(): Promise<void>;
  /** Starts the server again on the same port (after kill()). */
  restart(): Promise<void>;
}

/**
 * `count` distinct free loopback ports: all are bound before any is let go. Picked one at a time, a port
 * just let go can come back: a cluster node once got another node's cluster-bus port and never answered.
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/** A free loopback port: bound, then released (redis-server binds it next). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts redis-server on `port` (a free one by default) and resolves once it answers PING. */
export async function startRedis(options: { port?: number; args?: string[] } = {}): Promise<RedisServer> {
  const port = options.port ?? freePort();
  let child: Deno.ChildProcess | undefined;
  const spawn = async () => {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        ...options.args ?? [],
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await command(port, ["PING"], options.args)).includes("PONG")) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`redis-server on :${port} did not answer PING in 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const stop = async () => {
    if (child === undefined) return;
    const running = child;
    child = undefined;
    try {
      running.kill("SIGKILL");
    } catch {
      // already gone
    }
    await running.status;
  };
  await spawn();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    command: (...args) => command(port, args, options.args),
    kill: stop,
    restart: spawn,
    [Symbol.asyncDispose]: stop,
  };
}

/** One command over a fresh connection (authenticating first when the server was given --requirepass). */
async function command(port: number, args: string[], serverArgs: string[] = []): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const password = serverArgs[serverArgs.indexOf("--requirepass") + 1];
    const commands = serverArgs.includes("--requirepass") ? [["AUTH", password], args] : [args];
    const encoder = new TextEncoder();
    for (const parts of commands) {
      const wire = `*${parts.length}\r\n` +
        parts.map((p) => `$${encoder.encode(p).byteLength}\r\n${p}\r\n`).join("");
      await conn.write(encoder.encode(wire));
    }
    const buffer = new Uint8Array(64 * 1024);
    let text = "";
    const decoder = new TextDecoder();
    // Each reply ends with CRLF; read until every command has one complete reply line at least.
    while ((text.match(/\r\n/g) ?? []).length < commands.length) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

/** The tier's settings for a test Redis, with a prefix of the test's own. */
export function redisConfig(url: string, overrides: Partial<RedisConfig> = {}): RedisConfig {
  return {
    ...parseRedisUrl(url),
    prefix: `t${crypto.randomUUID().slice(0, 8)}:`,
    maxBytes: 256 * 1024,
    // Generous: a loaded CI machine must not take the tier down by accident.
    timeoutMs: 2_000,
    lockTtlMs: 10_000,
    ...overrides,
  };
}

/** A backend whose Unary answers wait for `released` (counted as they arrive). */
export function heldBackend(released: Promise<void>): TestHandlers {
  return {
    Unary(call, callback) {
      released.then(() =>
        callback(
          null,
          Buffer.from(
            JSON.stringify({ echo: parse(call.request), auth: call.metadata.get("authorization")[0] }),
          ),
        )
      );
    },
  };
}

/** `n` proxies on one backend and one Redis, each with a client. */
export async function startFleet(
  backend: TestBackend,
  n: number,
  redis: RedisConfig,
  options: Partial<ProxyOptions> = {},
) {
  const proxies: Proxy[] = [];
  for (let i = 0; i < n; i++) {
    proxies.push(
      await Proxy.start({
        backend: backend.address,
        host: "127.0.0.1",
        port: 0,
        redis,
        policy: new Policy({ ttlMs: 10_000 }),
        ...options,
      }),
    );
  }
  const clients = proxies.map((proxy) => newClient(proxy.port));
  return {
    proxies,
    clients,
    async [Symbol.asyncDispose]() {
      for (const client of clients) client.close();
      for (const proxy of proxies) await proxy.close();
    },
  };
}
