/**
 * The backend side: a generic grpc-js client that calls any method with raw bytes, so no .proto is needed.
 * grpc-js brings name resolution, load balancing over resolved addresses, reconnect backoff and keepalive.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { encodeFrame, type StatusCode } from "../wire/grpc_wire.ts";
import {
  HOP_HEADERS,
  RESPONSE_HOP_HEADERS,
  type ResponseEvent,
  type ResponseSink,
  statusEvent,
  type UpstreamCall,
  type UpstreamStream,
} from "../wire/response.ts";
import type { ClientTls } from "../wire/tls.ts";

/**
 * Request headers of a downstream call → metadata for the backend call: everything except pseudo-headers
 * and per-hop headers; `-bin` values are decoded from base64 (grpc-js encodes them again). `traceparent`,
 * when given, replaces the caller's (the backend call's own span).
 */
export function requestMetadata(headers: IncomingHttpHeaders, traceparent?: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const key in headers) {
    if (key.charCodeAt(0) === 0x3a /* ':' */ || HOP_HEADERS.has(key)) continue;
    const value = headers[key];
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      try {
        if (key.endsWith("-bin")) {
          for (const part of item.split(",")) metadata.add(key, Buffer.from(part.trim(), "base64"));
        } else metadata.add(key, item);
      } catch {
        // grpc-js refuses keys outside [0-9a-z_.-] and values outside printable ASCII, both legal in
        // HTTP/2. Drop the entry, as grpc-js's own server does, rather than throw out of an http2 callback.
        // (The collapse key is built from the raw headers, so callers still differ by such a value.)
      }
    }
  }
  if (traceparent !== undefined) metadata.set("traceparent", traceparent);
  return metadata;
}

/**
 * grpc-js sends each value of a repeated key as a header field of its own. A caller's comma-joined `-bin`
 * value of many parts (how gRPC joins repeated binary metadata) would so reach the backend as that many
 * header fields, and from 128 of them a node:http2 backend refuses the header list (its
 * `maxHeaderListPairs`): a call that succeeds sent straight to the backend would fail only when the proxy
 * passes it through. Join the values of a `-bin` key back into one field, as the caller sent them; every
 * gRPC implementation splits such a field on commas (grpc-js `Metadata.fromHttp2Headers`, C-core). This is
 * process-wide: the only grpc-js callers here are the proxy's own backend clients and, in tests, servers,
 * for which the joined form is equally correct. Plain values are already joined by node:http2 on receipt.
 */
const toHttp2Headers = grpc.Metadata.prototype.toHttp2Headers;
grpc.Metadata.prototype.toHttp2Headers = function joinedBinaryValues(this: grpc.Metadata) {
  const headers = toHttp2Headers.call(this);
  for (const key in headers) {
    const value = headers[key];
    if (Array.isArray(value) && key.endsWith("-bin")) headers[key] = value.join(",");
  }
  return headers;
};

/** grpc-js metadata → headers ready to send downstream, per-hop headers removed. */
export function wireHeaders(metadata: grpc.Metadata): OutgoingHttpHeaders {
  const out = metadata.toHttp2Headers();
  for (const key of Object.keys(out)) if (RESPONSE_HOP_HEADERS.has(key)) delete out[key];
  return out;
}

/**
 * How long a backend session with no call open is kept before the channel closes it, in ms: below the idle
 * limits backends and the hops in front of them commonly enforce (AWS ALB 60 s, nginx's keepalive_timeout
 * 75 s, grpc-go `MaxConnectionIdle` and Envoy `idle_timeout` as configured), so the channel closes an idle
 * session before the backend sends it GOAWAY. See the module comment for why that matters.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** Options for {@linkcode Upstream}. */
export interface UpstreamOptions {
  /** Largest message accepted from the backend, in bytes; -1 = unlimited. @default {-1} */
  maxMessageBytes?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Call the backend over TLS with these (PEM strings); undefined = plaintext. */
  tls?: ClientTls;
}

/**
 * grpc-js credentials and channel options for `tls` (plaintext when undefined).
 *
 * grpc-js sends the target's host as the TLS server name; for an IP address Deno refuses that outright
 * (Node only warns), so every connection to `--backend 10.0.0.5:443` would fail. For an IP target with no
 * `--backend-server-name`, the server name sent is a placeholder under the reserved `.invalid` TLD (SNI
 * cannot carry an IP anyway, RFC 6066), and the certificate is still checked against the IP itself.
 */
function channelCredentials(
  target: string,
  tls: ClientTls | undefined,
): [grpc.ChannelCredentials, grpc.ChannelOptions] {
  if (tls === undefined) return [grpc.credentials.createInsecure(), {}];
  const pem = (text: string | undefined) => text === undefined ? null : Buffer.from(text);
  if (tls.servername !== undefined) {
    return [grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert)), {
      "grpc.ssl_target_name_override": tls.servername,
      "grpc.default_authority": tls.servername,
    }];
  }
  const ip = ipHost(target);
  if (ip === undefined) return [grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert)), {}];
  const credentials = grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert), {
    checkServerIdentity: (_placeholder, cert) => checkServerIdentity(ip, cert),
  });
  return [credentials, {
    "grpc.ssl_target_name_override": "ip-address.invalid",
    "grpc.default_authority": target,
  }];
}

/**
 * The IP address of a `host:port`, `[v6]:port`, `ipv4:IP:port` or `ipv6:[IP]:port` target (one address),
 * or undefined when the host is a name.
 */
function ipHost(target: string): string | undefined {
  const match = /^(?:ipv[46]:)?(?:\[([0-9a-fA-F:.]+)\]|([^:/]+)):\d+$/.exec(target);
  const host = match?.[1] ?? match?.[2];
  return host !== undefined && isIP(host) !== 0 ? host : undefined;
}

const identity = (b: Buffer): Buffer => b;
const toBuffer = (m: Uint8Array): Buffer => Buffer.from(m.buffer, m.byteOffset, m.byteLength);

/** A generic client for one backend target (`host:port` or any grpc-js target such as `dns:///svc:50051`). */
export class Upstream {
  readonly #client: grpc.Client;
  readonly target: string;

  constructor(target: string, options: UpstreamOptions = {}) {
    this.target = target;
    const [credentials, tlsOptions] = channelCredentials(target, options.tls);
    this.#client = new grpc.Client(target, credentials, {
      ...tlsOptions,
      "grpc.max_receive_message_length": options.maxMessageBytes ?? -1,
      "grpc.max_send_message_length": -1,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      // The proxy does not retry for the caller, and channelz bookkeeping costs per call (bench/load.ts).
      "grpc.enable_retries": 0,
      "grpc.enable_channelz": 0,
      // Close an idle connection before the backend's idle policy sends GOAWAY (see h2_channel.ts).
      "grpc.client_idle_timeout_ms": DEFAULT_IDLE_TIMEOUT_MS,
      ...options.channelOptions,
    });
  }

  /**
   * Calls `method` with one request message and reports the response. Used for collapsed calls; the
   * response may hold any number of messages (a server-streaming method looks the same on the wire).
   */
  call(
    method: string,
    message: Uint8Array,
    metadata: grpc.Metadata,
    sink: ResponseSink,
    options: { deadline?: number } = {},
  ): UpstreamCall {
    const call = this.#client.makeServerStreamRequest(
      method,
      identity,
      identity,
      toBuffer(message),
      metadata,
      { deadline: options.deadline ?? Infinity },
    );
    return this.#report(call, sink);
  }

  /** Opens a call that streams requests as they come (any RPC kind); responses go to `sink`. */
  stream(method: string, metadata: grpc.Metadata, sink: ResponseSink, options: { deadline?: number } = {}) {
    const call = this.#client.makeBidiStreamRequest(method, identity, identity, metadata, {
      deadline: options.deadline ?? Infinity,
    });
    const reporting = this.#report(call, sink);
    return {
      cancel: reporting.cancel,
      write: (message: Uint8Array) => call.write(toBuffer(message)),
      end: () => call.end(),
      onDrain: (listener: () => void) => call.once("drain", listener),
      pause: () => call.pause(),
      resume: () => call.resume(),
    } satisfies UpstreamStream;
  }

  /** Whether the channel can reach the backend now (connecting if idle); resolves within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      this.#client.waitForReady(Date.now() + timeoutMs, (err) => resolve(err === undefined || err === null));
    });
  }

  /** Closes the channel; calls in flight fail with UNAVAILABLE or CANCELLED. */
  close(): void {
    this.#client.close();
  }

  #report(
    call: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>,
    sink: ResponseSink,
  ) {
    let cancelled = false;
    const emit = (event: ResponseEvent) => {
      if (!cancelled) sink(event);
    };
    call.on(
      "metadata",
      (metadata: grpc.Metadata) => emit({ type: "headers", headers: wireHeaders(metadata) }),
    );
    call.on("data", (data: Buffer) => emit({ type: "message", frame: encodeFrame(data) }));
    // grpc-js reports a non-OK status as both 'error' and 'status'; 'status' carries everything.
    call.on("error", () => {});
    call.on("status", (status: grpc.StatusObject) => {
      emit(statusEvent(status.code as StatusCode, status.details, wireHeaders(status.metadata)));
    });
    return {
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        call.cancel();
      },
    };
  }
}
