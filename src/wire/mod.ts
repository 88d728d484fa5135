/**
 * The gRPC wire, shared by both sides of the proxy: length-prefixed framing, status codes, `grpc-timeout`
 * and `grpc-message` (grpc_wire.ts); a response as wire-ready events and the headers that belong to one hop
 * (response.ts); a protobuf reader and writer for the few messages the proxy reads itself (protobuf.ts);
 * TLS material and the mTLS identity (tls.ts); W3C trace context and spans (tracing.ts); and batching of
 * HTTP/2 writes per event-loop turn (cork.ts).
 *
 * @module
 */

export * from "./grpc_wire.ts";
export * from "./response.ts";
export * from "./protobuf.ts";
export * from "./tls.ts";
export * from "./tracing.ts";
export * from "./cork.ts";
