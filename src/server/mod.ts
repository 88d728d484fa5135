/**
 * The downstream side: {@linkcode Proxy}, a raw `node:http2` server that speaks the gRPC wire for any
 * method, and one {@linkcode DownstreamCall} per call, which collapses it, passes it through, or answers the
 * proxy's own health check (what it needs of the server: call_host.ts; its stream's listeners:
 * call_streams.ts; its answer's pacing when many calls share it: fan_out.ts). What happened to each call is
 * told through a {@linkcode ProxyObserver}.
 *
 * @module
 */

export * from "./proxy.ts";
export * from "./downstream_call.ts";
export * from "./observer.ts";
