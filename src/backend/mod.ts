/**
 * Calls to the backend. {@linkcode BackendCalls} makes the one detached call behind each flight of
 * collapsed callers (over {@linkcode H2Channel}, a lean raw HTTP/2 client) and the passthrough calls that
 * belong to one caller (over grpc-js, upstream.ts), bounds them with the concurrency limiter, and reports
 * each. The collapser, the policy and the shared tier never see a connection.
 *
 * @module
 */

export * from "./backend_calls.ts";
export * from "./h2_channel.ts";
export * from "./h2_mapping.ts";
export * from "./upstream.ts";
export * from "./limiter.ts";
export * from "./queued_stream.ts";
