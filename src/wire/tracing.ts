/**
 * Tracing through Deno's built-in OpenTelemetry (`OTEL_DENO=true`): a span per backend call, child of the
 * caller's W3C `traceparent`, and a span per follower or cache hit that links to the backend call that
 * produced its answer. Without `OTEL_DENO=true` every function here returns at once.
 *
 * @module
 */

import {
  context,
  type Link,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { IncomingHttpHeaders } from "node:http2";
import { Status, type StatusCode } from "./grpc_wire.ts";

/** Whether spans are made: Deno exports them only with `OTEL_DENO=true`. Read once at start. */
export const TRACING_ENABLED: boolean = (() => {
  try {
    return Deno.env.get("OTEL_DENO") === "true";
  } catch {
    return false; // no --allow-env
  }
})();

const tracer = trace.getTracer("collapser");

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** The span context a W3C `traceparent` header names, or undefined when absent or malformed. */
export function parseTraceparent(value: string | string[] | undefined): SpanContext | undefined {
  const match = TRACEPARENT.exec(Array.isArray(value) ? value[0] : value ?? "");
  if (!match || match[1] === "ff" || /^0+$/.test(match[2]) || /^0+$/.test(match[3])) return undefined;
  return { traceId: match[2], spanId: match[3], traceFlags: parseInt(match[4], 16), isRemote: true };
}

/** A `traceparent` header value for `span`. */
export function formatTraceparent(span: SpanContext): string {
  return `00-${span.traceId}-${span.spanId}-${span.traceFlags.toString(16).padStart(2, "0")}`;
}

function parentContext(headers: IncomingHttpHeaders) {
  const parent = parseTraceparent(headers["traceparent"]);
  return parent ? trace.setSpanContext(context.active(), parent) : context.active();
}

/** A started backend-call span; `traceparent` is what the backend should receive. */
export interface BackendSpan {
  readonly traceparent: string;
  readonly spanContext: SpanContext;
  /**
   * Runs `fn` with this span active. Deno instruments `node:http2` itself and injects its own
   * `traceparent` into the backend request: run inside this span, that one is a child of it.
   */
  run<T>(fn: () => T): T;
  end(code: StatusCode, details: string): void;
}

/** Starts the span of one backend call, child of the caller's `traceparent`; undefined when not tracing. */
export function startBackendSpan(
  method: string,
  headers: IncomingHttpHeaders,
  attributes: { role: "leader" | "passthrough" },
): BackendSpan | undefined {
  if (!TRACING_ENABLED) return undefined;
  const span = tracer.startSpan(`collapser.backend ${method}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      "rpc.system": "grpc",
      "rpc.method": method,
      "collapser.role": attributes.role,
    },
  }, parentContext(headers));
  const spanContext = span.spanContext();
  const active = trace.setSpan(context.active(), span);
  return {
    traceparent: formatTraceparent(spanContext),
    spanContext,
    run: (fn) => context.with(active, fn),
    end: (code, details) => endSpan(span, code, details),
  };
}

/**
 * Records a call answered from someone else's backend call (a follower or a cache hit): a span child of the
 * caller's own `traceparent`, linked to the backend call's span.
 */
export function recordSharedCall(
  method: string,
  headers: IncomingHttpHeaders,
  info: {
    role: "follower" | "cache";
    startedAtEpochMs: number;
    origin: SpanContext | undefined;
    code: StatusCode;
  },
): void {
  if (!TRACING_ENABLED) return;
  const links: Link[] = info.origin ? [{ context: info.origin }] : [];
  const span = tracer.startSpan(`collapser.${info.role} ${method}`, {
    kind: SpanKind.SERVER,
    startTime: new Date(info.startedAtEpochMs),
    links,
    attributes: { "rpc.system": "grpc", "rpc.method": method, "collapser.role": info.role },
  }, parentContext(headers));
  endSpan(span, info.code, "");
}

function endSpan(span: Span, code: StatusCode, details: string): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: details });
  span.end();
}
