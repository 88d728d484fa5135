/**
 * Per-method policy: whether a method's calls collapse, how long its answers are cached, which metadata is in
 * its key. Resolved once per method path into one immutable {@linkcode MethodPolicy}, from (first to last)
 * what the service declares about the method (a descriptor set or reflection), the first matching rule of
 * the policy file, and the flags. The table is memoized per path and swapped whole on reload, so a call
 * pays one map lookup for it.
 *
 * @module
 */

import type { MethodCatalog, MethodInfo } from "./descriptor.ts";
import type { FinishOptions, JoinOptions } from "../core/collapser.ts";
import { type StatusCode } from "../wire/grpc_wire.ts";
import { KeyFilter } from "./key.ts";

/** What one method's calls get. Immutable; shared by every call of the method. */
export interface MethodPolicy {
  /** Whether identical calls share one backend call (and the cache). */
  readonly collapse: boolean;
  /** Why `collapse` is what it is, for logs and the status page (e.g. `rule 2 (/shop.Cart/*)`). */
  readonly reason: string;
  /** Pass the call through as soon as its headers arrive: the service declares a client stream. */
  readonly streamsRequests: boolean;
  /** Cache TTL of an OK answer, in ms; 0 = collapse only. */
  readonly ttlMs: number;
  /** Statuses whose answers are cached too, for `errorTtlMs`. */
  readonly cacheErrors: ReadonlySet<StatusCode>;
  /** Cache TTL of an answer whose status is in `cacheErrors`, in ms. */
  readonly errorTtlMs: number;
  /** How long past its TTL an OK answer may still be served when the backend fails, in ms; 0 = off. */
  readonly staleIfErrorMs: number;
  /** Whether a cache hit near the end of an answer's life refreshes it in the background. */
  readonly refreshAhead: boolean;
  /** What the collapser is told on join (refresh-ahead). */
  readonly join: JoinOptions;
  /** What the collapser is told on the join of a caller whose `cache-control` bypass is honoured. */
  readonly joinBypass: JoinOptions;
  /** Whether the backend's `cache-control` (and `age`) on an answer sets how it is kept. */
  readonly cacheControl: boolean;
  /** Longest the backend's `cache-control` can make an answer fresh (and each stale window), in ms. */
  readonly maxTtlMs: number;
  /** Whether a caller's `cache-control: no-cache` (or `max-age=0`) gets a fresh backend call. */
  readonly clientNoCache: boolean;
  /** How an OK answer is kept (built once here, so a finishing call allocates nothing for it). */
  readonly keepOk: FinishOptions;
  /** How an answer whose status is in `cacheErrors` is kept. */
  readonly keepError: FinishOptions;
  /** Which request metadata is in this method's collapse key. */
  readonly key: KeyFilter;
  /**
   * Whether a backend call that may have reached the backend may be sent again to another address: the
   * service declares the method idempotent or free of side effects, or a rule says `retry: true`.
   */
  readonly retry: boolean;
  /** Whether the service declares the method server-streaming (a retried call holds less back then). */
  readonly streamsResponses: boolean;
}

/** A compiled list of method-path globs. */
export interface MethodPatterns {
  /** The patterns as given. */
  readonly source: readonly string[];
  /** Whether `method` matches one of them. */
  matches(method: string): boolean;
  /** Whether the list names `declared`: methods the service declares free of side effects or idempotent. */
  readonly declared: boolean;
}

/** A policy file rule: the fields it sets override the flags for the methods it matches. */
export interface PolicyRule {
  /** The glob as written. */
  readonly method: string;
  readonly matches: (method: string) => boolean;
  readonly collapse?: boolean;
  readonly ttlMs?: number;
  readonly cacheErrors?: ReadonlySet<StatusCode>;
  readonly errorTtlMs?: number;
  readonly keyHeaders?: readonly string[];
  readonly ignoreHeaders?: readonly string[];
  readonly staleIfErrorMs?: number;
  readonly refreshAhead?: boolean;
  /** Calls of these methods may be retried on another address even after they may have reached one. */
  readonly retry?: boolean;
  readonly cacheControl?: boolean;
  readonly clientNoCache?: boolean;
}

/** What the flags say; every method gets this unless a rule or the service says otherwise. */
export interface PolicyDefaults {
  /** Cache TTL in ms. @default {100} */
  ttlMs?: number;
  /** Metadata always in the key, besides `authorization`. @default {[]} */
  keyHeaders?: readonly string[];
  /** Metadata names (globs) left out of the key, besides the built-in per-call ones. @default {[]} */
  ignoreHeaders?: readonly string[];
  /** Stale-if-error window in ms; 0 = off. @default {0} */
  staleIfErrorMs?: number;
  /** @default {true} */
  refreshAhead?: boolean;
  /** Honour the backend's `cache-control`. @default {true} */
  cacheControl?: boolean;
  /** Cap on what the backend's `cache-control` can ask for, in ms. @default {60_000} */
  maxTtlMs?: number;
  /** Honour a caller's `cache-control: no-cache` / `max-age=0`. @default {false} */
  clientNoCache?: boolean;
  /** Allowlist: only matching methods collapse. @default {every method} */
  collapse?: MethodPatterns;
  /** Denylist: matching methods never collapse; wins over the allowlist. @default {none} */
  noCollapse?: MethodPatterns;
}

/** A method-path glob or a header glob that cannot be used. */
export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PatternError";
  }
}

/**
 * Default cap on how long the backend's `cache-control` can make an answer fresh: 1 minute. Backends often
 * already send `cache-control` meant for browsers or a CDN (`max-age=86400` on a catalog answer): honoured
 * uncapped, an upgrade would make the proxy hold such answers for a day where it held them 100 ms. A minute
 * absorbs any herd and still gives the backend's word most of its value, and an answer cached by mistake goes
 * away within it with nobody purging; raise it with `--max-ttl`.
 */
export const DEFAULT_MAX_TTL_MS = 60_000;

/** Most method paths whose policy is memoized; past it the memo starts over (junk paths cannot grow it). */
const MAX_MEMOIZED_METHODS = 4096;
const NO_STATUSES: ReadonlySet<StatusCode> = new Set();

/**
 * Compiles one method-path glob: `*` matches any run of characters, `/` included (`/shop.Cart/*`, `*`,
 * and a pattern such as `/shop.` + `*` + `/Get*` matches `/shop.Catalog/GetItem`).
 *
 * @throws {PatternError} naming the pattern
 */
export function methodGlob(pattern: string): (method: string) => boolean {
  if (pattern === "*") return () => true;
  if (!/^\/[A-Za-z0-9_.\/*-]*$/.test(pattern)) {
    throw new PatternError(
      `invalid method pattern ${JSON.stringify(pattern)} (expected a path like /pkg.Service/Method, ` +
        `where * matches any characters, or * alone)`,
    );
  }
  if (!pattern.includes("*")) return (method) => method === pattern;
  const regex = new RegExp(`^${pattern.split("*").map(escapeRegExp).join(".*")}$`);
  return (method) => regex.test(method);
}

/**
 * Parses a comma-separated list of method globs (`--collapse`, `--no-collapse`); `declared` is allowed
 * where `allowDeclared`.
 *
 * @throws {PatternError} naming the bad entry
 */
export function methodPatterns(list: string, options: { allowDeclared: boolean }): MethodPatterns {
  const source = list.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (source.length === 0) throw new PatternError("empty pattern list");
  let declared = false;
  const globs: ((method: string) => boolean)[] = [];
  for (const pattern of source) {
    if (pattern === "declared") {
      if (!options.allowDeclared) {
        throw new PatternError(`"declared" is only meaningful in --collapse`);
      }
      declared = true;
    } else globs.push(methodGlob(pattern));
  }
  return { source, declared, matches: (method) => globs.some((glob) => glob(method)) };
}

/** Whether the service declares `info`'s method free of side effects or idempotent. */
function declaredSafe(info: MethodInfo | undefined): boolean {
  return info !== undefined && !info.clientStreaming &&
    (info.idempotency === "NO_SIDE_EFFECTS" || info.idempotency === "IDEMPOTENT");
}

/**
 * The policy of every method, from the flags, the policy file's rules and what the service declares.
 * Immutable: a reload builds a new one.
 */
export class Policy {
  readonly #defaults: Required<Omit<PolicyDefaults, "collapse" | "noCollapse">> & PolicyDefaults;
  readonly #rules: readonly PolicyRule[];
  readonly #catalog: MethodCatalog | undefined;
  readonly #memo = new Map<string, MethodPolicy>();
  /** Filters are shared between methods with the same key settings (most methods: the default one). */
  readonly #filters = new Map<string, KeyFilter>();

  constructor(
    defaults: PolicyDefaults = {},
    options: { rules?: readonly PolicyRule[]; catalog?: MethodCatalog } = {},
  ) {
    this.#defaults = {
      ...defaults,
      ttlMs: defaults.ttlMs ?? 100,
      keyHeaders: defaults.keyHeaders ?? [],
      ignoreHeaders: defaults.ignoreHeaders ?? [],
      staleIfErrorMs: defaults.staleIfErrorMs ?? 0,
      refreshAhead: defaults.refreshAhead ?? true,
      cacheControl: defaults.cacheControl ?? true,
      maxTtlMs: defaults.maxTtlMs ?? DEFAULT_MAX_TTL_MS,
      clientNoCache: defaults.clientNoCache ?? false,
    };
    this.#rules = options.rules ?? [];
    this.#catalog = options.catalog;
  }

  /** Rules from the policy file, in order. */
  get rules(): readonly PolicyRule[] {
    return this.#rules;
  }

  /** Methods the service declares (descriptor set or reflection), if any were read. */
  get catalog(): MethodCatalog | undefined {
    return this.#catalog;
  }

  /** The policy of `method` (a `:path`). */
  resolve(method: string): MethodPolicy {
    let policy = this.#memo.get(method);
    if (policy === undefined) {
      policy = this.#build(method);
      if (this.#memo.size >= MAX_MEMOIZED_METHODS) this.#memo.clear();
      this.#memo.set(method, policy);
    }
    return policy;
  }

  #build(method: string): MethodPolicy {
    const d = this.#defaults;
    const info = this.#catalog?.get(method);
    const index = this.#rules.findIndex((rule) => rule.matches(method));
    const rule = index < 0 ? undefined : this.#rules[index];
    let collapse: boolean;
    let reason: string;
    if (info?.clientStreaming) {
      collapse = false;
      reason = `declared ${info.serverStreaming ? "bidi" : "client"}-streaming`;
    } else if (rule?.collapse !== undefined) {
      collapse = rule.collapse;
      reason = `rule ${index + 1} (${rule.method})`;
    } else if (d.noCollapse?.matches(method)) {
      collapse = false;
      reason = "--no-collapse";
    } else if (d.collapse !== undefined) {
      collapse = d.collapse.matches(method) || (d.collapse.declared && declaredSafe(info));
      reason = collapse ? "--collapse" : "not in --collapse";
    } else {
      collapse = true;
      reason = "default";
    }
    const ttlMs = rule?.ttlMs ?? d.ttlMs;
    const errorTtlMs = rule?.errorTtlMs ?? ttlMs;
    const staleIfErrorMs = rule?.staleIfErrorMs ?? d.staleIfErrorMs;
    const refreshAhead = rule?.refreshAhead ?? d.refreshAhead;
    const keyHeaders = union(d.keyHeaders, rule?.keyHeaders);
    const ignoreHeaders = union(d.ignoreHeaders, rule?.ignoreHeaders);
    return Object.freeze({
      collapse,
      reason,
      streamsRequests: info?.clientStreaming === true,
      streamsResponses: info?.serverStreaming === true,
      ttlMs,
      cacheErrors: rule?.cacheErrors ?? NO_STATUSES,
      errorTtlMs,
      staleIfErrorMs,
      refreshAhead,
      join: refreshAhead ? JOIN_REFRESH : JOIN_NO_REFRESH,
      joinBypass: JOIN_BYPASS,
      cacheControl: rule?.cacheControl ?? d.cacheControl,
      maxTtlMs: d.maxTtlMs,
      clientNoCache: rule?.clientNoCache ?? d.clientNoCache,
      keepOk: ttlMs > 0 || staleIfErrorMs > 0
        ? Object.freeze({ cache: true, ttlMs, graceMs: staleIfErrorMs })
        : NOT_KEPT,
      keepError: errorTtlMs > 0 ? Object.freeze({ cache: true, ttlMs: errorTtlMs }) : NOT_KEPT,
      key: this.#filter(keyHeaders, ignoreHeaders),
      retry: rule?.retry ?? (info !== undefined && info.idempotency !== "IDEMPOTENCY_UNKNOWN"),
    });
  }

  #filter(keyHeaders: readonly string[], ignoreHeaders: readonly string[]): KeyFilter {
    const id = `${keyHeaders.join(",")}|${ignoreHeaders.join(",")}`;
    let filter = this.#filters.get(id);
    if (filter === undefined) this.#filters.set(id, filter = new KeyFilter({ keyHeaders, ignoreHeaders }));
    return filter;
  }
}

/** Not kept: the method's TTL (and grace) is 0. */
const NOT_KEPT: FinishOptions = Object.freeze({ cache: false, reason: "off" });
const JOIN_REFRESH: JoinOptions = Object.freeze({ refreshAhead: true });
const JOIN_NO_REFRESH: JoinOptions = Object.freeze({ refreshAhead: false });
const JOIN_BYPASS: JoinOptions = Object.freeze({ bypass: true });

function union(a: readonly string[], b: readonly string[] | undefined): readonly string[] {
  if (b === undefined || b.length === 0) return a;
  return [...new Set([...a, ...b])];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&");
}
