/**
 * Reading the HTTP caching headers a gRPC backend (or caller) may send as metadata: `cache-control` (RFC
 * 9111 §5.2, with RFC 5861's `stale-while-revalidate` and `stale-if-error`), `age`, and Fastly's
 * `surrogate-key` (space-separated tags an answer can later be purged by).
 *
 * Parsing never throws: a directive that is not well formed is skipped and counted, and the others stand,
 * so a malformed header changes nothing that a well-formed part of it does not say. Numbers are
 * delta-seconds (digits only; a quoted `"60"` is accepted, as RFC 9111 §5.2 asks of recipients); a negative
 * or non-numeric one is malformed, and one past 2^31 is taken as 2^31 (RFC 9111 §1.2.2). When a directive
 * appears twice, the first one counts (RFC 9111 §4.2.1).
 *
 * @module
 */

/** What a `cache-control` value says, as far as a shared cache acts on it. */
export interface CacheDirectives {
  /** `max-age`, in seconds. */
  maxAgeS?: number;
  /** `s-maxage` (shared caches: wins over max-age), in seconds. */
  sMaxAgeS?: number;
  noStore: boolean;
  /** `private`, qualified (`private="x"`) or not: a shared cache does not store the answer. */
  private: boolean;
  /** `no-cache`, qualified or not: not reused without revalidation, which gRPC has not. */
  noCache: boolean;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  /** `stale-while-revalidate` (RFC 5861), in seconds. */
  staleWhileRevalidateS?: number;
  /** `stale-if-error` (RFC 5861), in seconds. */
  staleIfErrorS?: number;
  /** Directives skipped as malformed. */
  invalid: number;
  /** Numbers past {@linkcode MAX_DELTA_SECONDS}, taken as that. */
  huge: number;
}

/** The largest delta-seconds taken as given (RFC 9111 §1.2.2: 2^31). */
export const MAX_DELTA_SECONDS = 2 ** 31;
/** A longer header is ignored whole (and counted as one malformed value): no real one comes near. */
const MAX_HEADER_LENGTH = 8192;
/** Most surrogate keys read from one answer; the rest are ignored (and counted). */
export const MAX_SURROGATE_KEYS = 256;
/** Longest surrogate key read (Fastly's limit); longer ones are ignored (and counted). */
export const MAX_SURROGATE_KEY_LENGTH = 1024;

/** A metadata value as node:http2 gives it: one string, repeated ones as a list, or a number. */
export type HeaderValue = string | string[] | number | undefined;

/** Parses one `cache-control` value (repeated headers joined with commas). */
export function parseCacheControl(value: HeaderValue): CacheDirectives {
  const result: CacheDirectives = {
    noStore: false,
    private: false,
    noCache: false,
    mustRevalidate: false,
    proxyRevalidate: false,
    invalid: 0,
    huge: 0,
  };
  const text = joined(value);
  if (text === undefined) return result;
  if (text.length > MAX_HEADER_LENGTH) {
    result.invalid++;
    return result;
  }
  const seconds = (raw: string | undefined): number | undefined => {
    if (raw === undefined || !/^\d+$/.test(raw)) {
      result.invalid++;
      return undefined;
    }
    const n = raw.length > 10 ? Infinity : Number(raw);
    if (n <= MAX_DELTA_SECONDS) return n;
    result.huge++;
    return MAX_DELTA_SECONDS;
  };
  /** Numeric directives seen: the first occurrence counts, even when it is malformed. */
  const seen = new Set<string>();
  const first = (name: string) => !seen.has(name) && seen.add(name) !== undefined;
  const malformed = scanDirectives(text, (name, raw) => {
    switch (name) {
      case "max-age":
        if (first(name)) result.maxAgeS = seconds(raw);
        break;
      case "s-maxage":
        if (first(name)) result.sMaxAgeS = seconds(raw);
        break;
      case "stale-while-revalidate":
        if (first(name)) result.staleWhileRevalidateS = seconds(raw);
        break;
      case "stale-if-error":
        if (first(name)) result.staleIfErrorS = seconds(raw);
        break;
      case "no-store":
        result.noStore = true;
        break;
      case "private":
        result.private = true;
        break;
      case "no-cache":
        result.noCache = true;
        break;
      case "must-revalidate":
        result.mustRevalidate = true;
        break;
      case "proxy-revalidate":
        result.proxyRevalidate = true;
        break;
        // Anything else (public, immutable, no-transform, extensions) changes nothing here: ignored.
    }
  });
  result.invalid += malformed;
  return result;
}

/**
 * Whether a caller's `cache-control` asks for an answer straight from the backend: `no-cache`, or
 * `max-age=0` (RFC 9111 §5.2.1). Other request directives are not acted on.
 */
export function wantsFresh(value: HeaderValue): boolean {
  if (value === undefined) return false;
  const d = parseCacheControl(value);
  return d.noCache || d.maxAgeS === 0;
}

/** An `age` value in seconds, or undefined when it is not delta-seconds. */
export function parseAge(value: HeaderValue): number | undefined {
  const text = joined(value)?.trim();
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return text.length > 10 ? MAX_DELTA_SECONDS : Math.min(Number(text), MAX_DELTA_SECONDS);
}

/**
 * The tags of a `surrogate-key` value: separated by spaces or tabs, each repeated once, at most
 * {@linkcode MAX_SURROGATE_KEYS} of at most {@linkcode MAX_SURROGATE_KEY_LENGTH} characters; `skipped`
 * counts what was left out. `tags` is undefined when there are none.
 */
export function parseSurrogateKeys(value: HeaderValue): { tags: string[] | undefined; skipped: number } {
  const text = joined(value, " ");
  if (text === undefined) return { tags: undefined, skipped: 0 };
  const tags: string[] = [];
  let skipped = 0;
  for (const tag of text.split(/[ \t]+/)) {
    if (tag === "" || tags.includes(tag)) continue;
    if (tag.length > MAX_SURROGATE_KEY_LENGTH || tags.length >= MAX_SURROGATE_KEYS) skipped++;
    else tags.push(tag);
  }
  return { tags: tags.length === 0 ? undefined : tags, skipped };
}

/** A header's value as one string (repeated values joined), or undefined. */
function joined(value: HeaderValue, separator = ","): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.join(separator);
  return String(value);
}

/** RFC 9110 `tchar`, by char code. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}

function isTchar(code: number): boolean {
  return code < 128 && TCHAR[code] === 1;
}

/**
 * Walks a `#cache-directive` list (`token [ "=" ( token / quoted-string ) ]`, comma-separated, optional
 * whitespace around elements), calling `visit` with each well-formed directive's lower-cased name and its
 * value (unquoted); returns how many elements were malformed and skipped.
 */
function scanDirectives(text: string, visit: (name: string, value: string | undefined) => void): number {
  let malformed = 0;
  let i = 0;
  const n = text.length;
  /** Skips to the comma after this element (outside quotes), counting it malformed. */
  const skip = () => {
    malformed++;
    let quoted = false;
    for (; i < n; i++) {
      const c = text[i];
      if (quoted && c === "\\") i++;
      else if (c === '"') quoted = !quoted;
      else if (c === "," && !quoted) break;
    }
  };
  while (i < n) {
    const c = text[i];
    if (c === " " || c === "\t" || c === ",") {
      i++;
      continue;
    }
    const start = i;
    while (i < n && isTchar(text.charCodeAt(i))) i++;
    if (i === start) {
      skip();
      continue;
    }
    const name = text.slice(start, i).toLowerCase();
    let value: string | undefined;
    if (text[i] === "=") {
      i++;
      if (text[i] === '"') {
        let unquoted = "";
        let closed = false;
        for (i++; i < n; i++) {
          const q = text[i];
          if (q === "\\" && i + 1 < n) unquoted += text[++i];
          else if (q === '"') {
            closed = true;
            i++;
            break;
          } else unquoted += q;
        }
        if (!closed) {
          malformed++;
          break;
        }
        value = unquoted;
      } else {
        const valueStart = i;
        while (i < n && isTchar(text.charCodeAt(i))) i++;
        if (i === valueStart) {
          skip();
          continue;
        }
        value = text.slice(valueStart, i);
      }
    }
    while (i < n && (text[i] === " " || text[i] === "\t")) i++;
    if (i < n && text[i] !== ",") {
      skip();
      continue;
    }
    visit(name, value);
  }
  return malformed;
}
