/**
 * One address of the backend: its own HTTP/2 session for collapsed calls (an {@linkcode H2Channel}), its
 * own grpc-js client for passthrough calls (made on first use), the calls it has in flight, its counters
 * and its outlier state. An address resolved from a name connects to its IP but speaks as the name: the
 * `:authority` is `name:port`, and over TLS the SNI and the certificate check use the name, not the IP.
 *
 * @module
 */

import type { ClientTls } from "../wire/tls.ts";
import { H2Channel } from "./h2_channel.ts";
import { type OutlierState, outlierState } from "./outlier.ts";
import type { Address } from "./target.ts";
import { Upstream } from "./upstream.ts";

/** Counters of one address, or of every address folded into the `other` label. */
export interface AddressCounters {
  /** Calls started (attempts: a retry counts on the address it went to). */
  calls: number;
  /** Calls that ended with a failure of the address: unreached, or an availability status. */
  errors: number;
}

/** One backend address and its clients. */
export class Endpoint {
  readonly address: Address;
  /** Its metric label: its key, or `other` past the label bound. */
  readonly label: string;
  readonly outlier: OutlierState = outlierState();
  readonly counters: AddressCounters = { calls: 0, errors: 0 };
  /** Calls (and streams) running on it now. */
  inflight = 0;
  /** Gone from the resolved set: takes no new calls, and closes once the ones it has are done. */
  draining = false;
  #tls: ClientTls | undefined;
  #unary: H2Channel | undefined;
  #pass: Upstream | undefined;
  #closed = false;
  readonly #maxMessageBytes: number | undefined;

  constructor(
    address: Address,
    label: string,
    options: { tls?: ClientTls; maxMessageBytes?: number } = {},
  ) {
    this.address = address;
    this.label = label;
    this.#tls = options.tls;
    this.#maxMessageBytes = options.maxMessageBytes;
  }

  /** `name:port` for an address resolved from a name, else its key. */
  get authority(): string {
    const { name, port, key } = this.address;
    return name === undefined ? key : `${name}:${port}`;
  }

  /** The raw HTTP/2 channel of collapsed calls. */
  get unary(): H2Channel {
    return this.#unary ??= new H2Channel(this.authority, {
      tls: this.#tls,
      maxMessageBytes: this.#maxMessageBytes,
      ...(this.address.name !== undefined && { address: this.address }),
    });
  }

  /** The grpc-js client of passthrough calls (collapsed ones too with `backendClient: "grpc-js"`). */
  get pass(): Upstream {
    return this.#pass ??= this.#newUpstream(this.#tls);
  }

  /** Whether it can be reached now (through the raw channel: a probe is not activity there). */
  ready(timeoutMs: number): Promise<boolean> {
    return this.unary.ready(timeoutMs);
  }

  /** New TLS material: new connections use it; calls in flight finish on the old ones. */
  setTls(tls: ClientTls): void {
    this.#tls = tls;
    this.#unary?.setTls(tls);
    const old = this.#pass;
    if (old !== undefined) {
      this.#pass = this.#newUpstream(tls);
      old.close();
    }
  }

  /** Closes both clients (calls still on them end UNAVAILABLE). */
  close(): void {
    this.#closed = true;
    this.#unary?.close();
    this.#pass?.close();
  }

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #newUpstream(tls: ClientTls | undefined): Upstream {
    const { host, port, name } = this.address;
    const target = host.includes(":") ? `ipv6:[${host}]:${port}` : `ipv4:${host}:${port}`;
    const named = name !== undefined && tls !== undefined && tls.servername === undefined;
    return new Upstream(target, {
      maxMessageBytes: this.#maxMessageBytes,
      tls: named ? { ...tls, servername: name } : tls,
      channelOptions: {
        "grpc.default_authority": this.authority,
        // Its own connection: two endpoints of one address (a re-resolution) never share a subchannel.
        "grpc.use_local_subchannel_pool": 1,
      },
    });
  }
}
