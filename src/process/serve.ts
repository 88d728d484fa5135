/**
 * One serving process: the proxy and its admin port from a parsed configuration, policy and TLS reloads on
 * SIGHUP, recycling (a worker's), and a drain on SIGINT/SIGTERM. main.ts imports this only when it serves,
 * so that `--help`, `--probe` and the supervisor of `--workers` never load the proxy (grpc-js, prom-client,
 * the Redis clients): the supervisor's resident set is what it costs on top of its workers.
 *
 * @module
 */

import { serveAdmin } from "../admin/admin.ts";
import type { Config } from "../config/config.ts";
import { effectiveConfig, policyDefaults } from "../config/config_view.ts";
import { USAGE } from "../config/usage.ts";
import { formatDuration } from "../util/duration.ts";
import { log } from "../util/log.ts";
import { Metrics } from "../admin/metrics.ts";
import { DescriptorError } from "../policy/descriptor.ts";
import { PolicyFileError } from "../policy/policy_file.ts";
import { policyReloader, PolicySource } from "../policy/policy_source.ts";
import { onSighup } from "../util/reload.ts";
import { Proxy } from "../server/proxy.ts";
import { observers } from "../server/observer.ts";
import { StatusBoard } from "../admin/status.ts";
import { TlsError, TlsMaterial } from "../wire/tls.ts";
import { loadRedisTls } from "../fleet/redis_config.ts";
import { VERSION } from "../util/version.ts";
import { formatMessage } from "../supervisor/protocol.ts";
import { watchRecycling } from "../supervisor/recycle.ts";
import { grpcJsTarget } from "../backend/target.ts";

/**
 * Serves until SIGINT or SIGTERM (a worker: SIGTERM only), then drains; resolves with the exit code.
 * `worker`: this process's index under a supervisor, if it is a worker.
 */
export async function serve(config: Config, worker: number | undefined): Promise<number> {
  const policySource = new PolicySource(policyDefaults(config), {
    policyFile: config.policyFile,
    descriptorSet: config.descriptorSet,
    reflection: config.reflection ? grpcJsTarget(config.backend) : undefined,
  });
  const tlsMaterial = new TlsMaterial({ tls: config.tls, backendTls: config.backendTls });
  let policy, tls, redis;
  try {
    tls = await tlsMaterial.load();
    redis = await loadRedisTls(config.redis);
    policy = await policySource.load();
  } catch (err) {
    // A bad file is a bad flag; a backend that does not answer reflection is not.
    console.error(`collapser: ${(err as Error).message}`);
    if (err instanceof PolicyFileError || err instanceof DescriptorError || err instanceof TlsError) {
      console.error(`\n${USAGE}`);
    }
    return 1;
  }

  const metrics = new Metrics();
  using status = new StatusBoard({ hotKeys: config.hotKeys });
  let proxy: Proxy | undefined;
  let admin;
  try {
    proxy = await Proxy.start({
      ...config,
      redis,
      tls: tls.tls,
      backendTls: tls.backendTls,
      policy,
      observer: observers(metrics, status),
    });
    admin = await serveAdmin(proxy, {
      metrics,
      status,
      config: effectiveConfig(config, policy),
      // A worker's admin port is its supervisor's to read: loopback, any free port.
      hostname: worker === undefined ? config.adminHost ?? config.host : "127.0.0.1",
      port: worker === undefined ? config.metricsPort : 0,
      adminToken: config.adminToken,
    });
  } catch (err) {
    console.error(`collapser: cannot listen: ${(err as Error).message}`);
    await proxy?.close();
    return 1;
  }
  log.info("collapser {version} listening on {host}:{port}, backend {backend}", {
    version: VERSION,
    worker,
    port: proxy.port,
    metricsPort: admin.addr.port,
    ...effectiveConfig(config, policy),
    addresses: proxy.backend.balancer?.addresses ?? [config.backend],
  });

  for (const warning of config.memoryWarnings) log.warn("memory: {warning}", { warning });
  const running = proxy;
  if (worker !== undefined) {
    console.log(formatMessage({ kind: "listening", port: proxy.port, adminPort: admin.addr.port }));
  }
  using _recycling = watchRecycling({
    maxConnections: config.recycleConnections,
    maxRssBytes: config.recycleRssBytes,
    connections: () => running.stats().connections,
  }, (reason) => console.log(formatMessage({ kind: "recycle", reason })));

  onSighup(
    policyReloader(policySource, (reloaded) => {
      running.policy = reloaded.policy;
      status.showConfig(effectiveConfig(config, reloaded.policy));
      metrics.reloaded(reloaded.errors.length === 0);
    }),
    tlsMaterial.reloader((material) => running.reloadTls(material)),
  );

  const signal = Promise.withResolvers<string>();
  let signals = 0;
  // A worker drains on its supervisor's SIGTERM only: a Ctrl-C in a terminal reaches the whole process group,
  // and the supervisor passes it on as SIGTERM (a second one would cut the drain short).
  if (worker !== undefined) Deno.addSignalListener("SIGINT", () => {});
  for (const name of worker === undefined ? ["SIGINT", "SIGTERM"] as const : ["SIGTERM"] as const) {
    Deno.addSignalListener(name, () => {
      // The first signal drains; a second one (an impatient Ctrl-C) stops at once.
      if (++signals === 1) return signal.resolve(name);
      log.warn("{signal} again: exiting without waiting for {active} calls", {
        signal: name,
        active: proxy?.stats().activeCalls,
      });
      Deno.exit(1);
    });
  }
  const received = await signal.promise;
  const active = proxy.stats().activeCalls;
  log.info("{signal}: draining {active} calls (at most {timeout})", {
    signal: received,
    active,
    timeout: formatDuration(config.shutdownTimeoutMs),
  });
  const drained = await proxy.drain(config.shutdownTimeoutMs);
  if (drained) log.info("drained; exiting");
  else log.warn("shutdown timeout: resetting {active} calls", { active: proxy.stats().activeCalls });
  await proxy.close();
  await admin.shutdown();
  return 0;
}
