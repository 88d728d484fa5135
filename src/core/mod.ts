/**
 * The collapsing core: {@linkcode Collapser} shares one in-flight producer per key among any number of
 * subscribers and replays finished recordings for a TTL ({@linkcode TtlCache}, bounded in entries and bytes,
 * with a grace for stale-if-error); a running producer is a {@linkcode Flight} (flight.ts); {@linkcode ShadowLedger}
 * keeps keys only, to say what a call would have been. Compare Go's `singleflight`.
 *
 * It knows nothing of gRPC, HTTP/2 or the network (tests/layout_test.ts checks it): events are opaque, keys
 * are strings, time is a clock passed in.
 *
 * @module
 */

export * from "./collapser.ts";
export * from "./ttl_cache.ts";
export * from "./shadow.ts";
