/**
 * collapser: a gRPC proxy that collapses identical in-flight unary calls. This entry only wires.
 *
 * @module
 */

import { ConfigError, parseConfig, USAGE } from "./src/config.ts";
import { formatDuration } from "./src/duration.ts";
import { log, setupLogging } from "./src/log.ts";
import { Proxy } from "./src/proxy.ts";

/** Parses configuration, starts the proxy, and stops it on SIGINT/SIGTERM. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseConfig(args, Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`collapser: ${err.message}\n`);
    console.error(USAGE);
    return 1;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  const { config } = parsed;
  setupLogging(config.logLevel);
  let proxy: Proxy;
  try {
    proxy = await Proxy.start(config);
  } catch (err) {
    console.error(`collapser: cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
    return 1;
  }
  log.info("collapser listening on {host}:{port}, backend {backend}", {
    host: config.host,
    port: proxy.port,
    backend: config.backend,
    cacheTtl: formatDuration(config.cacheTtlMs),
    backendTimeout: formatDuration(config.backendTimeoutMs),
    keyHeaders: config.keyHeaders,
    maxMessageBytes: config.maxMessageBytes,
    logLevel: config.logLevel,
  });
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  await stopped.promise;
  log.info("stopping");
  await proxy.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
