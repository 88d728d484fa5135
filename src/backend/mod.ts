/**
 * Calls to the backend. {@linkcode BackendCalls} makes the one detached call behind each flight of
 * collapsed callers (lead_call.ts, over {@linkcode H2Channel}, a lean raw HTTP/2 client whose calls are
 * h2_call.ts) and the passthrough calls that
 * belong to one caller (over grpc-js, upstream.ts), bounds them with the concurrency limiter, and reports
 * each. A backend of several addresses is a {@linkcode Balancer}: the target parsed (target.ts) and
 * resolved (resolver.ts), one endpoint per address (endpoint.ts), a picker (picker.ts), outlier ejection
 * (outlier.ts), retries (balanced_call.ts) within a budget (retry_budget.ts). The collapser, the policy and
 * the shared tier never see a connection, nor an address.
 *
 * @module
 */

export * from "./backend_calls.ts";
export * from "./backend_log.ts";
export * from "./h2_channel.ts";
export * from "./h2_mapping.ts";
export * from "./upstream.ts";
export * from "./limiter.ts";
export * from "./queued_stream.ts";
export * from "./h2_session.ts";
export * from "./clients.ts";
export * from "./backend_clients.ts";
export * from "./target.ts";
export * from "./resolver.ts";
export * from "./endpoint.ts";
export * from "./picker.ts";
export * from "./outlier.ts";
export * from "./retry_budget.ts";
export * from "./balanced_call.ts";
export * from "./balancer.ts";
