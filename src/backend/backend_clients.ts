/**
 * Which clients a backend target gets: one IP address keeps the single raw channel and grpc-js client it
 * always had; anything else (a name, a list) gets a {@linkcode Balancer} behind both shapes.
 *
 * @module
 */

import type { ClientTls } from "../wire/tls.ts";
import { Balancer, type BalancerOptions } from "./balancer.ts";
import type { PassClient, UnaryClient } from "./clients.ts";
import { H2Channel, plainAuthority } from "./h2_channel.ts";
import { isBalanced, parseTarget } from "./target.ts";
import { Upstream } from "./upstream.ts";

/**
 * The clients of `backend`: for one address (or a grpc-js-only target) an `H2Channel` (when the target is
 * `host:port` and `backendClient` is not `"grpc-js"`) and an `Upstream`, exactly as before replicas; for
 * anything else a {@linkcode Balancer} behind both.
 */
export function backendClients(options: {
  backend: string;
  tls?: ClientTls;
  backendClient?: "h2" | "grpc-js";
  balancing?: Omit<BalancerOptions, "tls">;
}): { unary: UnaryClient | undefined; upstream: PassClient; balancer: Balancer | undefined } {
  const { backend, tls } = options;
  const target = parseTarget(backend);
  const raw = options.backendClient !== "grpc-js";
  if (isBalanced(target)) {
    const balancer = new Balancer(target, { ...options.balancing, tls });
    return { unary: raw ? balancer.unary : undefined, upstream: balancer.passthrough, balancer };
  }
  const authority = raw ? plainAuthority(backend) : undefined;
  return {
    unary: authority === undefined ? undefined : new H2Channel(authority, { tls }),
    upstream: new Upstream(backend, { tls }),
    balancer: undefined,
  };
}
