/**
 * The admin port's flags: the token that state-changing endpoints (`POST /purge`) require, from a flag, a
 * variable or a file (without one those endpoints are off), and the address the admin port binds, apart
 * from the gRPC listener's. The token is kept as a {@linkcode Secret}: it never prints, and no error here
 * shows it.
 *
 * @module
 */

import { Secret } from "../util/secret.ts";
import { ConfigError, type FlagTable, type Reader } from "./reader.ts";

/** The admin flags. */
export const ADMIN_FLAGS = {
  "admin-token": { type: "string" },
  "admin-token-file": { type: "string" },
  "admin-host": { type: "string" },
} as const satisfies FlagTable;

/** Shortest admin token accepted: 16 characters (there is no rate limit on guesses). */
export const MIN_ADMIN_TOKEN_LENGTH = 16;
const MAX_ADMIN_TOKEN_LENGTH = 4096;

/** What the admin flags say. */
export interface AdminConfig {
  /** The token state-changing admin endpoints require; undefined = those endpoints are off. */
  adminToken: Secret | undefined;
  /** Address the admin port binds; undefined = the gRPC listener's (`--host`). */
  adminHost: string | undefined;
}

/** Reads the admin flags; a token file is read here, once (restart to change the token). */
export function adminConfig(read: Reader): AdminConfig {
  const inline = read.pick("admin-token", "COLLAPSER_ADMIN_TOKEN");
  const file = read.pick("admin-token-file", "COLLAPSER_ADMIN_TOKEN_FILE");
  if (inline !== undefined && file !== undefined) {
    throw new ConfigError(`${inline.source} and ${file.source}: give one`);
  }
  let token: string | undefined;
  let source: string | undefined;
  if (inline !== undefined) {
    token = inline.value;
    source = inline.source;
  } else if (file !== undefined) {
    source = `${file.source} ${JSON.stringify(file.value)}`;
    try {
      token = Deno.readTextFileSync(file.value).trim();
    } catch (err) {
      throw new ConfigError(`${source}: cannot read the token file: ${(err as Error).message}`);
    }
  }
  if (token !== undefined) {
    // The reasons never include the token itself.
    if (token.length < MIN_ADMIN_TOKEN_LENGTH || token.length > MAX_ADMIN_TOKEN_LENGTH) {
      throw new ConfigError(
        `${source}: the admin token must be ${MIN_ADMIN_TOKEN_LENGTH} to ${MAX_ADMIN_TOKEN_LENGTH} characters long`,
      );
    }
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new ConfigError(
        `${source}: the admin token must be visible ASCII without spaces (it is sent in a header)`,
      );
    }
  }
  const adminHost = read.string("admin-host", "COLLAPSER_ADMIN_HOST")?.trim();
  return {
    adminToken: token === undefined ? undefined : new Secret(token),
    adminHost: adminHost || undefined,
  };
}
