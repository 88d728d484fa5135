/**
 * .proto sources for the descriptor-set and reflection tests: a catalog service with every RPC kind and
 * idempotency level, and an admin service that imports it and a well-known type.
 */

/** Every RPC kind, and methods declared NO_SIDE_EFFECTS, IDEMPOTENT and neither. */
export const CATALOG_PROTO = `syntax = "proto3";
package demo.catalog;

message Item { string id = 1; string body = 2; }

service Catalog {
  rpc Get(Item) returns (Item) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Put(Item) returns (Item) { option idempotency_level = IDEMPOTENT; }
  rpc Delete(Item) returns (Item);
  rpc Upload(stream Item) returns (Item);
  rpc Watch(Item) returns (stream Item);
  rpc Chat(stream Item) returns (stream Item);
}
`;

/** Imports catalog.proto and a well-known type, so only --include_imports puts those files in the set. */
export const ADMIN_PROTO = `syntax = "proto3";
package demo.admin;

import "google/protobuf/empty.proto";
import "catalog.proto";

service Admin {
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Restock(demo.catalog.Item) returns (google.protobuf.Empty);
}
`;
