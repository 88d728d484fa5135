/**
 * Fixtures shared by the Deno.bench suites: one realistic unary call's method and request headers, as the
 * proxy sees them from a grpc-js client (pseudo-headers, transport headers and a bearer token).
 *
 * @module
 */

import type { IncomingHttpHeaders } from "node:http2";

/** The method of the benchmarked call. */
export const METHOD = "/inventory.v1.InventoryService/GetItem";

/** Request headers of the benchmarked call: what node:http2 hands the proxy for a grpc-js call. */
export const REQUEST_HEADERS: IncomingHttpHeaders = {
  ":method": "POST",
  ":scheme": "http",
  ":path": METHOD,
  ":authority": "127.0.0.1:50052",
  "content-type": "application/grpc",
  te: "trailers",
  "user-agent": "grpc-node-js/1.14.7",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-timeout": "9999m",
  authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJlLWJ5dGVz",
};
