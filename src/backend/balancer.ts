/**
 * A backend that is a set of addresses, not one: the resolver turns the target into addresses (again every
 * interval, and when a connection is lost), each address is an {@linkcode Endpoint} with its own HTTP/2
 * session, and a picker chooses one per call — on the collapsed path and on passthrough alike. Outlier
 * ejection and retries sit here too (balanced_call.ts), beneath `BackendCalls`: the collapser, the policy
 * and the shared tier never see an address.
 *
 * To `BackendCalls` it offers the shapes it already uses: {@linkcode Balancer.unary} is shaped like an
 * `H2Channel`, {@linkcode Balancer.passthrough} like an `Upstream`. A target that is one IP literal does
 * not come here at all: it keeps the single channel it always had, at exactly its old cost.
 *
 * Addresses that leave the resolved set are drained: they take no new call and close once their calls are
 * done. Per-address counters are bounded for metrics: the first `maxAddressLabels` addresses present at
 * once are labelled by their address, the rest share the label `other`.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { type StatusEvent, statusEvent } from "../wire/response.ts";
import type { ClientTls } from "../wire/tls.ts";
import { balancedStream, balancedUnary, type BalancerHost, type RetryReason } from "./balanced_call.ts";
import { type AddressCounters, Endpoint } from "./endpoint.ts";
import type { Unreached } from "./h2_channel.ts";
import { OutlierDetector, type OutlierOptions } from "./outlier.ts";
import { type LbPolicy, type Picker, picker } from "./picker.ts";
import { type NameLookup, Resolver } from "./resolver.ts";
import { RetryBudget } from "./retry_budget.ts";
import type { Address, Target } from "./target.ts";
import type { PassClient, UnaryClient } from "./clients.ts";

/** Default most addresses labelled in metrics at once; the rest count under `other`. */
export const DEFAULT_MAX_ADDRESS_LABELS = 32;
/** The label of addresses past the label bound. */
export const OTHER_ADDRESS = "other";

/** Statuses that count as an error of the address that answered them (the backend failed, not the call). */
const ADDRESS_ERRORS: ReadonlySet<StatusCode> = new Set([
  Status.UNKNOWN,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** Options for {@linkcode Balancer}. */
export interface BalancerOptions {
  /** TLS to every address; undefined = plaintext h2c. */
  tls?: ClientTls;
  /** How calls are spread. @default {"least_request"} */
  lbPolicy?: LbPolicy;
  /** Time between resolutions of the target's names, in ms. @default {30_000} */
  resolveIntervalMs?: number;
  /** Outlier ejection. */
  outlier?: OutlierOptions;
  /** Share of calls that may be retried (0 to 1); 0 = no retries. @default {0.2} */
  retryBudget?: number;
  /** Most addresses labelled in metrics at once. @default {32} */
  maxAddressLabels?: number;
  /** Largest response message accepted, in bytes. */
  maxMessageBytes?: number;
  /** How names are resolved (tests). */
  lookup?: NameLookup;
  /** Uniform in [0, 1), for the picker (tests). @default {Math.random} */
  random?: () => number;
}

/** One address as the status page and metrics show it. */
export interface AddressStatus {
  address: string;
  /** The name it was resolved from, if any. */
  name: string | null;
  /** Its metric label: the address, or `other`. */
  label: string;
  /** `active`: takes calls; `ejected`: outlier, until `ejectedForMs` passes; `draining`: left the set. */
  state: "active" | "ejected" | "draining";
  inflight: number;
  calls: number;
  errors: number;
  ejections: number;
  ejectedForMs: number | null;
}

/** What the balancer has done, for metrics and the status page. */
export interface BalancerStats {
  target: string;
  addresses: AddressStatus[];
  /** Counters of `other` addresses that have left the set (so that `other` never goes down). */
  otherGone: AddressCounters;
  ejections: number;
  retries: Record<RetryReason, number>;
  /** Retries not made because the budget was spent. */
  retriesExhausted: number;
  resolutions: { ok: number; error: number };
  /** The last resolution failure, if the last resolution failed. */
  resolveError: string | null;
}

/** Spreads calls over the addresses of one target. */
export class Balancer implements BalancerHost {
  readonly #target: Target;
  readonly #resolver: Resolver;
  readonly #picker: Picker;
  readonly #outlier: OutlierDetector;
  readonly #budget: RetryBudget;
  readonly #maxLabels: number;
  readonly #maxMessageBytes: number | undefined;
  #tls: ClientTls | undefined;
  /** Addresses in the set now, by key. */
  #endpoints = new Map<string, Endpoint>();
  /** Addresses that left the set and still have calls. */
  readonly #draining = new Set<Endpoint>();
  /** Every address in the set, and those of them not ejected (the picker's candidates). */
  #live: Endpoint[] = [];
  #usable: Endpoint[] = [];
  /** When the next ejection ends (clock ms); Infinity when none is ejected. */
  #nextReturn = Infinity;
  readonly #labelled = new Set<string>();
  readonly #otherGone: AddressCounters = { calls: 0, errors: 0 };
  readonly #retries: Record<RetryReason, number> = { transparent: 0, idempotent: 0 };
  #closed = false;

  /** Collapsed calls, over each address's raw HTTP/2 channel (an `H2Channel`'s shape). */
  readonly unary: UnaryClient;
  /** Passthrough calls (and collapsed ones with `backendClient: "grpc-js"`), an `Upstream`'s shape. */
  readonly passthrough: PassClient;

  constructor(target: Target, options: BalancerOptions = {}) {
    this.#target = target;
    this.#tls = options.tls;
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#maxLabels = options.maxAddressLabels ?? DEFAULT_MAX_ADDRESS_LABELS;
    this.#picker = picker(options.lbPolicy ?? "least_request", options.random);
    this.#outlier = new OutlierDetector(options.outlier);
    this.#budget = new RetryBudget(options.retryBudget);
    this.#resolver = new Resolver(target, {
      intervalMs: options.resolveIntervalMs,
      lookup: options.lookup,
      onAddresses: (addresses) => this.#update(addresses),
    });
    const ready = (timeoutMs: number) => this.ready(timeoutMs);
    const close = () => this.close();
    this.unary = {
      call: (method, message, caller, sink, opts = {}) =>
        balancedUnary(
          this,
          sink,
          opts.retryable === true,
          (endpoint, attemptSink, unreached) =>
            endpoint.unary.call(method, message, caller, attemptSink, {
              traceparent: opts.traceparent,
              unreached,
            }),
          opts.streamsResponses,
        ),
      ready,
      setTls: (tls) => this.setTls(tls),
      close,
    };
    this.passthrough = {
      call: (method, message, metadata, sink, opts = {}) =>
        balancedUnary(
          this,
          sink,
          opts.retryable === true,
          (endpoint, attemptSink) =>
            endpoint.pass.call(method, message, metadata.clone(), attemptSink, { deadline: opts.deadline }),
          opts.streamsResponses,
        ),
      stream: (method, metadata, sink, opts = {}) =>
        balancedStream(
          this,
          sink,
          (endpoint, attemptSink) => endpoint.pass.stream(method, metadata.clone(), attemptSink, opts),
        ),
      ready,
      close,
    };
  }

  /** Resolves the target for the first time; call (and await) before the first call. */
  start(): Promise<void> {
    return this.#resolver.start();
  }

  /** The addresses in the set now. */
  get addresses(): string[] {
    return this.#live.map((e) => e.address.key);
  }

  /** Whether one usable address can be reached now; resolves within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    this.#returnEjected();
    const candidates = this.#usable.length > 0 ? this.#usable : this.#live;
    if (candidates.length === 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let pending = candidates.length;
      for (const endpoint of candidates) {
        endpoint.ready(timeoutMs).then((ok) => {
          if (ok) resolve(true);
          else if (--pending === 0) resolve(false);
        }, () => --pending === 0 && resolve(false));
      }
    });
  }

  /** New TLS material for every address: new connections use it, calls in flight finish. */
  setTls(tls: ClientTls): void {
    this.#tls = tls;
    for (const endpoint of [...this.#live, ...this.#draining]) endpoint.setTls(tls);
  }

  /** Stops resolving and closes every address's clients. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#resolver.close();
    for (const endpoint of [...this.#live, ...this.#draining]) endpoint.close();
  }

  /** Counters and the state of every address. */
  stats(): BalancerStats {
    const now = this.#outlier.now();
    const status = (e: Endpoint, draining: boolean): AddressStatus => {
      const ejected = this.#outlier.ejected(e.outlier, now);
      return {
        address: e.address.key,
        name: e.address.name ?? null,
        label: e.label,
        state: draining ? "draining" : ejected ? "ejected" : "active",
        inflight: e.inflight,
        calls: e.counters.calls,
        errors: e.counters.errors,
        ejections: e.outlier.ejections,
        ejectedForMs: ejected ? Math.round(e.outlier.ejectedUntil - now) : null,
      };
    };
    return {
      target: this.#target.text,
      addresses: [
        ...this.#live.map((e) => status(e, false)),
        ...[...this.#draining].map((e) => status(e, true)),
      ],
      otherGone: { ...this.#otherGone },
      ejections: this.#outlier.ejectionsTotal,
      retries: { ...this.#retries },
      retriesExhausted: this.#budget.exhausted,
      resolutions: { ...this.#resolver.counts },
      resolveError: this.#resolver.lastError ?? null,
    };
  }

  // BalancerHost: what a balanced call asks of the set (balanced_call.ts).

  /** @internal */
  pick(exclude?: Endpoint): Endpoint | undefined {
    if (this.#nextReturn !== Infinity) this.#returnEjected();
    let candidates = this.#usable;
    if (exclude !== undefined) candidates = candidates.filter((e) => e !== exclude);
    // Every address ejected or failing: any of them rather than none (Envoy's panic routing).
    if (candidates.length === 0) candidates = this.#live.filter((e) => e !== exclude);
    return candidates.length === 0 ? undefined : this.#picker.pick(candidates);
  }

  /** @internal */
  started(endpoint: Endpoint, first: boolean): void {
    endpoint.inflight++;
    endpoint.counters.calls++;
    if (first) this.#budget.earn();
  }

  /** @internal */
  finished(endpoint: Endpoint): void {
    if (--endpoint.inflight === 0 && endpoint.draining) this.#closeDrained(endpoint);
  }

  /** @internal */
  answered(endpoint: Endpoint, code: StatusCode): void {
    if (ADDRESS_ERRORS.has(code)) endpoint.counters.errors++;
    if (code !== Status.UNAVAILABLE) return this.#outlier.success(endpoint.outlier);
    this.#resolver.refresh();
    if (this.#outlier.failure(endpoint.outlier, this.#states(), this.#live.length)) {
      this.#ejected(endpoint, "it answered UNAVAILABLE too many times in a row");
    }
  }

  /** @internal */
  unreached(endpoint: Endpoint, why: Unreached): void {
    endpoint.counters.errors++;
    if (why !== "connect") return;
    this.#resolver.refresh();
    if (this.#outlier.eject(endpoint.outlier, this.#states(), this.#live.length)) {
      this.#ejected(endpoint, "its connection failed");
    }
  }

  /** @internal */
  retry(reason: RetryReason): boolean {
    if (!this.#budget.spend()) return false;
    this.#retries[reason]++;
    return true;
  }

  /** @internal */
  noAddress(): StatusEvent {
    this.#resolver.refresh();
    const why = this.#resolver.lastError ?? "it has no address";
    return statusEvent(Status.UNAVAILABLE, `no backend address for ${this.#target.text}: ${why}`);
  }

  *#states() {
    for (const e of this.#live) yield e.outlier;
  }

  #ejected(endpoint: Endpoint, why: string): void {
    const ms = Math.round(endpoint.outlier.ejectedUntil - this.#outlier.now());
    log.warn("backend address {address} ejected for {ms} ms: {why}", {
      address: endpoint.address.key,
      ms,
      why,
    });
    this.#rebuild();
  }

  /** Puts addresses whose ejection has ended back among the candidates. */
  #returnEjected(): void {
    if (this.#outlier.now() >= this.#nextReturn) this.#rebuild();
  }

  #rebuild(): void {
    const now = this.#outlier.now();
    this.#usable = [];
    this.#nextReturn = Infinity;
    for (const e of this.#live) {
      if (!this.#outlier.ejected(e.outlier, now)) this.#usable.push(e);
      else if (e.outlier.ejectedUntil < this.#nextReturn) this.#nextReturn = e.outlier.ejectedUntil;
    }
  }

  /** A new address set from the resolver: new addresses join, missing ones drain. */
  #update(addresses: readonly Address[]): void {
    if (this.#closed) return;
    const next = new Map<string, Endpoint>();
    const added: string[] = [];
    for (const a of addresses) {
      let endpoint = this.#endpoints.get(a.key);
      if (endpoint === undefined) {
        endpoint = [...this.#draining].find((e) => e.address.key === a.key);
        if (endpoint !== undefined) {
          this.#draining.delete(endpoint);
          endpoint.draining = false;
        } else {
          endpoint = new Endpoint(a, this.#label(a.key), {
            tls: this.#tls,
            maxMessageBytes: this.#maxMessageBytes,
          });
        }
        added.push(a.key);
      }
      next.set(a.key, endpoint);
    }
    const removed: string[] = [];
    for (const [key, endpoint] of this.#endpoints) {
      if (next.has(key)) continue;
      removed.push(key);
      endpoint.draining = true;
      this.#draining.add(endpoint);
      if (endpoint.inflight === 0) this.#closeDrained(endpoint);
    }
    this.#endpoints = next;
    this.#live = [...next.values()];
    this.#rebuild();
    log.info("backend {target}: {count} addresses {addresses}", {
      target: this.#target.text,
      count: this.#live.length,
      addresses: this.addresses,
      added,
      removed,
    });
  }

  #label(key: string): string {
    if (this.#labelled.has(key) || this.#labelled.size < this.#maxLabels) {
      this.#labelled.add(key);
      return key;
    }
    return OTHER_ADDRESS;
  }

  #closeDrained(endpoint: Endpoint): void {
    this.#draining.delete(endpoint);
    endpoint.close();
    if (endpoint.label === OTHER_ADDRESS) {
      this.#otherGone.calls += endpoint.counters.calls;
      this.#otherGone.errors += endpoint.counters.errors;
    } else if (![...this.#endpoints.values()].some((e) => e.label === endpoint.label)) {
      this.#labelled.delete(endpoint.label);
    }
  }
}
