/**
 * The backend target as the user writes it, parsed into what it names: addresses (IP literals) and names to
 * resolve through DNS, the system resolver's or a given server's. The forms follow gRPC's naming spec
 * (doc/naming.md), so a target that works with grpc-js works here:
 *
 * - `host:port`, `[v6]:port`: an IP literal is one address (today's single backend); a name is resolved to
 *   every A/AAAA address it has;
 * - `dns:///name:port`, `dns:name:port`: a name through the system resolver;
 * - `dns://RESOLVER[:PORT]/name:port`: a name through that DNS server (port 53 unless given);
 * - `ipv4:a[:port],b[:port]` and `ipv6:addr,[addr]:port`: lists of IP literals (port 443 unless given, as
 *   the spec says);
 * - `a:port,b:port`: a plain comma list, each element `host:port` as above;
 * - `unix:`, `unix-abstract:`, `vsock:`: handed to grpc-js as they are (one endpoint, as before).
 *
 * @module
 */

import { isIP } from "node:net";

/** One address to connect to. */
export interface Address {
  /** An IP literal, without brackets. */
  readonly host: string;
  readonly port: number;
  /** `ip:port` or `[v6]:port`: how it is shown, labelled and keyed. */
  readonly key: string;
  /** The name it was resolved from, if any: sent as `:authority` and SNI, and checked in certificates. */
  readonly name?: string;
}

/** A DNS name to resolve, and the server to ask (the system resolver when absent). */
export interface DnsName {
  readonly host: string;
  readonly port: number;
  readonly nameServer?: { readonly ipAddr: string; readonly port: number };
}

/** What a target names. */
export interface Target {
  /** The target as given. */
  readonly text: string;
  /** Addresses given as IP literals. */
  readonly addresses: readonly Address[];
  /** Names to resolve; their addresses join `addresses`. */
  readonly names: readonly DnsName[];
  /** A target only grpc-js understands (`unix:`, `vsock:`): one endpoint, nothing to balance. */
  readonly opaque: boolean;
  /**
   * The service the target names, whatever addresses it resolves to: the shared tier's namespace. A name
   * target gives `name:port` (the same for `name:port`, `dns:///name:port` and any resolver); a list gives
   * its elements sorted, so the order they are written in does not matter.
   */
  readonly service: string;
}

/** A target that names nothing reachable; the message says what is wrong with it. */
export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TargetError";
  }
}

/** Port a `dns:`, `ipv4:` or `ipv6:` element gets without one (gRPC naming spec). */
export const DEFAULT_GRPC_TARGET_PORT = 443;
/** Port of a DNS server given without one. */
export const DEFAULT_DNS_PORT = 53;

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$/;
const OPAQUE = /^(unix|unix-abstract|vsock):/i;

/** `ip:port` or `[v6]:port`. */
export function addressKey(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An address from an IP literal; `name` when it was resolved from one. */
export function address(host: string, port: number, name?: string): Address {
  return name === undefined
    ? { host, port, key: addressKey(host, port) }
    : { host, port, key: addressKey(host, port), name };
}

/**
 * Parses a backend target.
 *
 * @throws {TargetError} naming what is wrong
 */
export function parseTarget(text: string): Target {
  const target = text.trim();
  if (target === "") throw new TargetError("empty target");
  if (OPAQUE.test(target)) {
    return { text: target, addresses: [], names: [], opaque: true, service: target };
  }
  const addresses: Address[] = [];
  const names: DnsName[] = [];
  const scheme = /^(dns|ipv4|ipv6):/i.exec(target)?.[1].toLowerCase();
  if (scheme === "dns") {
    const [, authority, rest] = /^dns:(?:\/\/([^/]*)\/)?(.*)$/i.exec(target)!;
    const nameServer = authority ? parseNameServer(authority) : undefined;
    const { host, port } = hostPort(rest, DEFAULT_GRPC_TARGET_PORT, "dns: name");
    if (isIP(host) !== 0) addresses.push(address(host, port));
    else names.push(nameServer ? { host, port, nameServer } : { host, port });
  } else if (scheme === "ipv4" || scheme === "ipv6") {
    for (const element of list(target.slice(5))) {
      const { host, port } = scheme === "ipv4"
        ? hostPort(element, DEFAULT_GRPC_TARGET_PORT, "ipv4: address")
        : ipv6Element(element);
      if (isIP(host) !== (scheme === "ipv4" ? 4 : 6)) {
        throw new TargetError(`${JSON.stringify(element)} is not an ${scheme.toUpperCase()} address`);
      }
      addresses.push(address(host, port));
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    throw new TargetError(`unknown scheme ${JSON.stringify(target.split(":")[0])}`);
  } else {
    for (const element of list(target)) {
      const { host, port } = hostPort(element, undefined, "backend");
      if (isIP(host) !== 0) addresses.push(address(host, port));
      else names.push({ host, port });
    }
  }
  const elements = [...new Set([...addresses.map((a) => a.key), ...names.map((n) => `${n.host}:${n.port}`)])];
  const single = addresses.length + names.length === 1 && scheme !== "ipv4" && scheme !== "ipv6";
  return {
    text: target,
    addresses,
    names,
    opaque: false,
    // One element keeps the text hashed before replicas were supported, `host:port`, so a fleet keeps its
    // namespace across the upgrade.
    service: single ? elements[0] : elements.sort().join(","),
  };
}

/** Whether a target needs the balancer: anything but one IP literal (or a grpc-js-only target). */
export function isBalanced(target: Target): boolean {
  return !target.opaque && (target.names.length > 0 || target.addresses.length > 1);
}

/**
 * The target as one grpc-js target (for a one-off client such as the reflection client): as given, except
 * a plain comma list, which grpc-js does not take: its first element (every replica serves the same).
 */
export function grpcJsTarget(text: string): string {
  const target = text.trim();
  if (/^(dns|ipv4|ipv6|unix|unix-abstract|vsock):/i.test(target) || !target.includes(",")) return target;
  return target.split(",")[0].trim();
}

/** The comma-separated elements of a list; an empty one is an error. */
function list(text: string): string[] {
  const elements = text.split(",").map((s) => s.trim());
  if (elements.some((e) => e === "")) throw new TargetError("an empty element in the list");
  return elements;
}

/** `host:port` or `[v6]:port` (or `host` alone where a default port is given). */
function hostPort(
  text: string,
  defaultPort: number | undefined,
  what: string,
): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]\/]+))(?::(\d{1,5}))?$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined) {
    throw new TargetError(`${what} ${JSON.stringify(text)} is not HOST:PORT or [IPv6]:PORT`);
  }
  if (match[1] !== undefined && isIP(host) !== 6) {
    throw new TargetError(`${JSON.stringify(match[1])} in brackets is not an IPv6 address`);
  }
  if (match[2] !== undefined && isIP(host) === 0 && !HOSTNAME.test(host)) {
    throw new TargetError(`${JSON.stringify(host)} is not a host name or IP address`);
  }
  if (match[3] === undefined) {
    if (defaultPort === undefined) throw new TargetError(`${what} ${JSON.stringify(text)} has no port`);
    return { host, port: defaultPort };
  }
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new TargetError(`port ${match[3]} is not 1-65535`);
  return { host, port };
}

/** An `ipv6:` element: a bare address (default port), or `[addr]:port`. */
function ipv6Element(text: string): { host: string; port: number } {
  if (!text.startsWith("[")) {
    if (isIP(text) !== 6) throw new TargetError(`${JSON.stringify(text)} is not an IPv6 address`);
    return { host: text, port: DEFAULT_GRPC_TARGET_PORT };
  }
  return hostPort(text, DEFAULT_GRPC_TARGET_PORT, "ipv6: address");
}

/** The DNS server of `dns://SERVER/`: an IP literal, port 53 unless given. */
function parseNameServer(authority: string): { ipAddr: string; port: number } {
  const { host, port } = hostPort(authority, DEFAULT_DNS_PORT, "DNS server");
  if (isIP(host) === 0) {
    throw new TargetError(`DNS server ${JSON.stringify(authority)} must be an IP address (and port)`);
  }
  return { ipAddr: host, port };
}
