/**
 * The proxy's own answer to `grpc.health.v1.Health/Check` for the empty service name (the proxy's serving
 * state); a named service is the backend's to answer.
 *
 * @module
 */

import { encodeFrame } from "../wire/grpc_wire.ts";
import { ProtoReader, WireType } from "../wire/protobuf.ts";

/** The standard gRPC health check method, answered by the proxy itself for the empty service name. */
export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

/** HealthCheckResponse{status: SERVING} and {status: NOT_SERVING}, framed (protobuf field 1, varint). */
const SERVING = encodeFrame(Uint8Array.of(0x08, 0x01));
const NOT_SERVING = encodeFrame(Uint8Array.of(0x08, 0x02));

/** The `service` field of a protobuf HealthCheckRequest, or undefined when it cannot be read. */
function healthCheckService(message: Uint8Array): string | undefined {
  try {
    const reader = new ProtoReader(message);
    let service = "";
    while (reader.next()) {
      if (reader.field === 1 && reader.wireType === WireType.LEN) service = reader.string();
      else reader.skip();
    }
    return service;
  } catch {
    return undefined; // not a HealthCheckRequest: the backend's to answer
  }
}

/**
 * The proxy's answer (a framed HealthCheckResponse) to a health check `message` that names no service, or
 * undefined when the check is the backend's to answer.
 */
export function healthCheckAnswer(message: Uint8Array, draining: boolean): Uint8Array | undefined {
  return healthCheckService(message) === "" ? (draining ? NOT_SERVING : SERVING) : undefined;
}
