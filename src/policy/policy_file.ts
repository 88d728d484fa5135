/**
 * The policy file (`--policy FILE`): YAML, so JSON works too, with one list of rules, each naming a method
 * glob and the fields it overrides. Validated whole before it is used: any mistake is one line naming the
 * file, the rule and the field, and a reload with a mistake keeps the policy in force.
 *
 * ```yaml
 * rules:
 *   - method: /shop.Cart/*
 *     collapse: false
 *   - method: /shop.Catalog/Get*
 *     ttl: 1s
 *     cacheErrors: [NOT_FOUND]
 *     errorTtl: 200ms
 *     staleIfError: 30s
 *   - method: /shop.Catalog/*
 *     retry: true        # may be sent again to another replica after a failure
 *   - method: /shop.Prices/*
 *     cacheControl: false   # the backend's cache-control is not honoured here
 *     clientNoCache: true   # a caller's cache-control: no-cache gets a fresh backend call
 * ```
 *
 * @module
 */

import { parse as parseYaml } from "yaml";
import { parseDuration } from "../util/duration.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { headerName, ignoredHeaderName } from "./key.ts";
import { methodGlob, type PolicyRule } from "./policy.ts";

/** A policy file that cannot be used; the message names the file, and the rule and field where it can. */
export class PolicyFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PolicyFileError";
  }
}

/** Statuses never cached, whatever a rule says: they describe the call, not the answer. */
export const NEVER_CACHED: readonly string[] = [
  "OK",
  "CANCELLED",
  "DEADLINE_EXCEEDED",
  "UNAVAILABLE",
  "RESOURCE_EXHAUSTED",
];

/** The fields a rule may have. */
const FIELDS = [
  "method",
  "collapse",
  "ttl",
  "cacheErrors",
  "errorTtl",
  "keyHeaders",
  "ignoreHeaders",
  "staleIfError",
  "refreshAhead",
  "retry",
  "cacheControl",
  "clientNoCache",
] as const;

/** Longest duration a rule may give (a timer cannot wait longer: 2^31 - 1 ms, about 596 h). */
const MAX_DURATION_MS = 2 ** 31 - 1;

/** Reads and validates the policy file at `path`. @throws {PolicyFileError} */
export async function loadPolicyFile(path: string): Promise<PolicyRule[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new PolicyFileError(`${path}: cannot read the policy file: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parsePolicy(text, path);
}

/**
 * Parses policy text; `name` (the file) starts every error message.
 *
 * @throws {PolicyFileError}
 */
export function parsePolicy(text: string, name: string): PolicyRule[] {
  let document: unknown;
  try {
    document = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    // The yaml package's message is the problem and its position, then a code frame on further lines.
    const first = String((err as Error).message).split("\n")[0].replace(/:$/, "");
    throw new PolicyFileError(`${name}: not valid YAML or JSON: ${first}`, { cause: err });
  }
  if (!isMapping(document) || !("rules" in document)) {
    throw new PolicyFileError(`${name}: expected a mapping with a "rules:" list`);
  }
  const unknown = Object.keys(document).filter((key) => key !== "rules");
  if (unknown.length > 0) {
    throw new PolicyFileError(
      `${name}: unknown top-level field ${JSON.stringify(unknown[0])} (expected rules)`,
    );
  }
  const rules = document.rules ?? [];
  if (!Array.isArray(rules)) throw new PolicyFileError(`${name}: rules: expected a list of rules`);
  return rules.map((raw, index) => parseRule(raw, `${name}: rule ${index + 1}`));
}

function parseRule(raw: unknown, where: string): PolicyRule {
  if (!isMapping(raw)) {
    throw new PolicyFileError(`${where}: expected a mapping like {method: /pkg.Svc/*, ...}`);
  }
  if (typeof raw.method !== "string") {
    throw new PolicyFileError(`${where}: method: required, a method glob such as /shop.Cart/* or *`);
  }
  const method = raw.method;
  const at = `${where} (${method})`;
  const fail = (field: string, problem: string): never => {
    throw new PolicyFileError(`${at}: ${field}: ${problem}`);
  };
  for (const key of Object.keys(raw)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      fail(key, `unknown field (expected one of ${FIELDS.join(", ")})`);
    }
  }
  let matches;
  try {
    matches = methodGlob(method);
  } catch (err) {
    fail("method", (err as Error).message);
  }
  const bool = (field: string) => {
    const value = raw[field];
    if (value === undefined) return undefined;
    return typeof value === "boolean" ? value : fail(field, `expected true or false, got ${show(value)}`);
  };
  const duration = (field: string) => {
    const value = raw[field];
    if (value === undefined) return undefined;
    if (value === 0) return 0;
    if (typeof value !== "string") {
      return fail(field, `expected a duration such as 250ms or 1s, got ${show(value)}`);
    }
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (err) {
      return fail(field, (err as Error).message);
    }
    return ms > MAX_DURATION_MS ? fail(field, `${show(value)} is too long (at most 596h)`) : ms;
  };
  const list = (field: string, item: (value: string) => string) => {
    const value = raw[field];
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) return fail(field, `expected a list, got ${show(value)}`);
    return value.map((entry) => {
      if (typeof entry !== "string") return fail(field, `expected names, got ${show(entry)}`);
      try {
        return item(entry);
      } catch (err) {
        return fail(field, (err as Error).message);
      }
    });
  };
  const cacheErrors = list("cacheErrors", (entry) => {
    if (NEVER_CACHED.includes(entry)) {
      throw new Error(`${entry} is never cached as an error (${NEVER_CACHED.join(", ")} are not answers)`);
    }
    if (!Object.hasOwn(Status, entry)) {
      throw new Error(`unknown status ${JSON.stringify(entry)} (expected a name such as NOT_FOUND)`);
    }
    return entry;
  });
  const errorTtlMs = duration("errorTtl");
  if (errorTtlMs !== undefined && cacheErrors === undefined) {
    fail("errorTtl", "has no effect without cacheErrors");
  }
  return {
    method,
    matches: matches!,
    collapse: bool("collapse"),
    ttlMs: duration("ttl"),
    cacheErrors: cacheErrors &&
      new Set(cacheErrors.map((entry) => Status[entry as keyof typeof Status] as StatusCode)),
    errorTtlMs,
    keyHeaders: list("keyHeaders", (entry) => headerName(entry, { glob: false })),
    ignoreHeaders: list("ignoreHeaders", ignoredHeaderName),
    staleIfErrorMs: duration("staleIfError"),
    refreshAhead: bool("refreshAhead"),
    retry: bool("retry"),
    cacheControl: bool("cacheControl"),
    clientNoCache: bool("clientNoCache"),
  };
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}
