/**
 * The two shapes `BackendCalls` calls the backend through: a client of collapsed calls (one request
 * message; an `H2Channel`, or the balancer over many of them) and a client of passthrough calls (an
 * `Upstream`, or the balancer over many of them). One address or many, `BackendCalls` sees the same.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import type { IncomingHttpHeaders } from "node:http2";
import type { ResponseSink, UpstreamCall, UpstreamStream } from "../wire/response.ts";
import type { ClientTls } from "../wire/tls.ts";

/**
 * Default bound on one collapsed backend call: 10 s. (Here, in a module of types, so that the configuration
 * can read it without loading grpc-js: main.ts's supervisor never loads the proxy.)
 */
export const DEFAULT_BACKEND_TIMEOUT_MS = 10_000;

/** Per-call options of a collapsed call. */
export interface UnaryCallOptions {
  /** The backend span's W3C `traceparent`, sent instead of the caller's. */
  traceparent?: string;
  /**
   * Whether the call may be sent again after it may have reached the backend (its method is declared
   * idempotent or free of side effects, or a policy rule says so). Calls that never reached one are
   * retried whatever this says. @default {false}
   */
  retryable?: boolean;
  /**
   * Whether the method is declared server-streaming: a retryable call then holds back only its answer's
   * headers, not its first message, until the answer is whole (balanced_call.ts). @default {false}
   */
  streamsResponses?: boolean;
}

/** Collapsed calls: an `H2Channel`'s shape. */
export interface UnaryClient {
  call(
    method: string,
    message: Uint8Array,
    caller: IncomingHttpHeaders,
    sink: ResponseSink,
    options?: UnaryCallOptions,
  ): UpstreamCall;
  ready(timeoutMs: number): Promise<boolean>;
  setTls(tls: ClientTls): void;
  close(): void;
}

/** Passthrough calls: an `Upstream`'s shape. */
export interface PassClient {
  call(
    method: string,
    message: Uint8Array,
    metadata: grpc.Metadata,
    sink: ResponseSink,
    options?: { deadline?: number; retryable?: boolean; streamsResponses?: boolean },
  ): UpstreamCall;
  stream(
    method: string,
    metadata: grpc.Metadata,
    sink: ResponseSink,
    options?: { deadline?: number },
  ): UpstreamStream;
  ready(timeoutMs: number): Promise<boolean>;
  close(): void;
}
