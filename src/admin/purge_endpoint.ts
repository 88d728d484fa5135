/**
 * `POST /purge` on the admin port: the one endpoint that changes state, so it needs the admin token
 * (`Authorization: Bearer <token>`, checked in constant time) and is off without one configured.
 *
 * | Request                                   | Answer                                                          |
 * | ----------------------------------------- | --------------------------------------------------------------- |
 * | no `--admin-token` configured             | 404, `POST /purge is off ...`                                   |
 * | not POST                                  | 405 (`Allow: POST`)                                             |
 * | no `Authorization: Bearer ...`            | 401 (`WWW-Authenticate: Bearer`)                                |
 * | a wrong token                             | 403                                                             |
 * | body over 64 KiB                          | 413                                                             |
 * | not JSON, an unknown field, a bad value   | 400 with a one-line reason                                      |
 * | `{"method"|"key"|"tag": ...}`             | 200 with what was dropped (JSON); 503 if Redis could not make it fleet-wide (applied here) |
 *
 * @module
 */

import type { Secret } from "../util/secret.ts";
import { log } from "../util/log.ts";
import { parsePurgeTarget, PurgeRequestError, type PurgeTarget } from "../policy/purges.ts";
import type { PurgeResult } from "../server/purge.ts";

/** Largest purge request body read. */
const MAX_BODY_BYTES = 64 * 1024;

/** What `POST /purge` needs. */
export interface PurgeEndpointOptions {
  /** The admin token; undefined = the endpoint is off. */
  readonly token: Secret | undefined;
  /** Applies a purge (the running proxy's). */
  readonly purge: ((target: PurgeTarget) => Promise<PurgeResult>) | undefined;
}

/** Answers one request to `/purge`; `peer` (the caller's address) is only logged. */
export async function purgeEndpoint(
  request: Request,
  options: PurgeEndpointOptions,
  peer?: string,
): Promise<Response> {
  const { token, purge } = options;
  if (token === undefined || purge === undefined) {
    await request.body?.cancel();
    return text(404, "not found: POST /purge is off (start the proxy with --admin-token to turn it on)");
  }
  if (request.method !== "POST") {
    await request.body?.cancel();
    return text(405, "method not allowed: /purge takes POST", { allow: "POST" });
  }
  const credentials = /^Bearer +(\S+) *$/i.exec(request.headers.get("authorization") ?? "");
  if (credentials === null) {
    await request.body?.cancel();
    return text(401, "unauthorized: send Authorization: Bearer <admin token>", {
      "www-authenticate": 'Bearer realm="collapser admin"',
    });
  }
  if (!token.matches(credentials[1])) {
    await request.body?.cancel();
    // The token given is never logged.
    log.warn("admin: POST /purge refused: wrong admin token (from {peer})", { peer: peer ?? "unknown" });
    return text(403, "forbidden: wrong admin token");
  }
  const body = await readBody(request);
  if (body === undefined) return text(413, `payload too large: at most ${MAX_BODY_BYTES} bytes`);
  let target: PurgeTarget;
  try {
    target = parsePurgeTarget(JSON.parse(body));
  } catch (err) {
    const reason = err instanceof PurgeRequestError
      ? err.message
      : `not JSON: ${String((err as Error).message).split("\n")[0]}`;
    return text(400, `bad request: ${reason}`);
  }
  const result = await purge(target);
  return new Response(JSON.stringify(result) + "\n", {
    status: result.fleetError === undefined ? 200 : 503,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/** The body as text, or undefined past {@linkcode MAX_BODY_BYTES}. */
async function readBody(request: Request): Promise<string | undefined> {
  const reader = request.body?.getReader();
  if (reader === undefined) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(all);
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}
