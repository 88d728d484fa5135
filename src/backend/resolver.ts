/**
 * Turns a target's names into addresses, again and again: every `intervalMs` (30 s by default, grpc-js's
 * DNS resolver also re-resolves at most every 30 s), and sooner when the balancer asks because a
 * connection was lost (at most once per `minIntervalMs`). A name that cannot be resolved keeps the
 * addresses it had (as gRPC's resolvers do: a DNS hiccup must not empty a working set); the set reported
 * is the union of every name's addresses and the target's IP literals, deduplicated.
 *
 * Names go to the system resolver through `node:dns` `lookup` (getaddrinfo: `/etc/hosts`, search domains,
 * what grpc-js's resolver uses), or, for `dns://SERVER/name`, to that server with `Deno.resolveDns` (A and
 * AAAA asked at once).
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { log } from "../util/log.ts";
import { type Address, address, type DnsName, type Target } from "./target.ts";

/** Default time between two resolutions of the target's names: 30 s. */
export const DEFAULT_RESOLVE_INTERVAL_MS = 30_000;
/** Least time between two resolutions asked for by a lost connection: 1 s. */
export const DEFAULT_MIN_RESOLVE_INTERVAL_MS = 1_000;

/** Resolves one name to IP literals; rejects when it cannot. */
export type NameLookup = (name: DnsName) => Promise<string[]>;

/** The IP addresses of `name`: through its DNS server if it names one, else the system resolver. */
export const dnsLookup: NameLookup = async (name) => {
  if (name.nameServer === undefined) {
    const found = await lookup(name.host, { all: true, verbatim: true });
    return found.map((entry) => entry.address);
  }
  const options = { nameServer: name.nameServer };
  const answers = await Promise.allSettled([
    Deno.resolveDns(name.host, "A", options),
    Deno.resolveDns(name.host, "AAAA", options),
  ]);
  const ips = answers.flatMap((answer) => answer.status === "fulfilled" ? answer.value : []);
  if (ips.length > 0) return ips;
  const failures = answers.map((answer) => answer.status === "rejected" ? answer.reason : undefined);
  // No record of either kind is an empty answer, not a failure of the server.
  if (failures.every((err) => err instanceof Deno.errors.NotFound)) return [];
  throw failures.find((err) => !(err instanceof Deno.errors.NotFound));
};

/** Options for {@linkcode Resolver}. */
export interface ResolverOptions {
  /** Told of every new address set (and of the first one). */
  onAddresses: (addresses: readonly Address[]) => void;
  /** Time between resolutions, in ms. @default {DEFAULT_RESOLVE_INTERVAL_MS} */
  intervalMs?: number;
  /** Least time between resolutions asked for with `refresh()`, in ms. @default {1_000} */
  minIntervalMs?: number;
  /** How names are resolved. @default {dnsLookup} */
  lookup?: NameLookup;
}

/** Keeps a target's address set up to date. */
export class Resolver {
  readonly #target: Target;
  readonly #onAddresses: ResolverOptions["onAddresses"];
  readonly #intervalMs: number;
  readonly #minIntervalMs: number;
  readonly #lookup: NameLookup;
  /** Each name's last good answer. */
  readonly #known = new Map<DnsName, readonly Address[]>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #lastStart = -Infinity;
  #closed = false;
  #current = "";
  /** The last failure of any name, cleared by a resolution without one. */
  lastError: string | undefined;
  /** Resolutions so far, by whether every name answered. */
  readonly counts = { ok: 0, error: 0 };

  constructor(target: Target, options: ResolverOptions) {
    this.#target = target;
    this.#onAddresses = options.onAddresses;
    this.#intervalMs = options.intervalMs ?? DEFAULT_RESOLVE_INTERVAL_MS;
    this.#minIntervalMs = options.minIntervalMs ?? DEFAULT_MIN_RESOLVE_INTERVAL_MS;
    this.#lookup = options.lookup ?? dnsLookup;
  }

  /** Resolves now, then every interval; resolves once the first resolution is done (failed or not). */
  start(): Promise<void> {
    return this.#resolve();
  }

  /** Asks for a resolution soon: at once unless one ran less than `minIntervalMs` ago. */
  refresh(): void {
    if (this.#closed || this.#running !== undefined || this.#target.names.length === 0) return;
    const wait = this.#lastStart + this.#minIntervalMs - performance.now();
    if (wait <= 0) void this.#resolve();
    else this.#schedule(wait);
  }

  /** Stops resolving. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#closed || this.#target.names.length === 0) return;
    this.#timer = setTimeout(() => void this.#resolve(), ms);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  #resolve(): Promise<void> {
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
      this.#schedule(this.#intervalMs);
    });
    return this.#running;
  }

  async #run(): Promise<void> {
    this.#lastStart = performance.now();
    clearTimeout(this.#timer);
    const target = this.#target;
    const answers = await Promise.allSettled(target.names.map((name) => this.#lookup(name)));
    if (this.#closed) return;
    const errors: string[] = [];
    answers.forEach((answer, i) => {
      const name = target.names[i];
      if (answer.status === "fulfilled") {
        this.#known.set(name, answer.value.map((ip) => address(ip, name.port, name.host)));
      } else {
        errors.push(`${name.host}: ${(answer.reason as Error)?.message ?? answer.reason}`);
      }
    });
    this.counts[errors.length === 0 ? "ok" : "error"]++;
    this.lastError = errors.length === 0 ? undefined : errors.join("; ");
    if (errors.length > 0) {
      log.warn("cannot resolve the backend {target}: {error} (keeping the addresses it had)", {
        target: target.text,
        error: this.lastError,
      });
    }
    const seen = new Map<string, Address>();
    for (const a of target.addresses) seen.set(a.key, a);
    for (const name of target.names) for (const a of this.#known.get(name) ?? []) seen.set(a.key, a);
    const addresses = [...seen.values()];
    const signature = addresses.map((a) => `${a.key}/${a.name ?? ""}`).sort().join(",");
    if (signature === this.#current && this.counts.ok + this.counts.error > 1) return;
    this.#current = signature;
    this.#onAddresses(addresses);
  }
}
