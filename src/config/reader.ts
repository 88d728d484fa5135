/**
 * Reading one configuration value: a flag, else its environment variable, checked and converted, with an
 * error that names where the bad value came from (`--port: invalid port "x" (expected 0-65535)`). Every
 * part of the configuration (config.ts and the `*_flags.ts` beside it) reads through a {@linkcode Reader}.
 *
 * @module
 */

import { parseDuration } from "../util/duration.ts";

/** A configuration value that cannot be used; the message names the flag or variable and the value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** The option table node:util parseArgs takes: flag name → string or boolean. */
export type FlagTable = Record<string, { type: "string" | "boolean"; short?: string }>;

/** A value found, and where: `--flag` or the variable's name. */
export interface Found {
  readonly value: string;
  readonly source: string;
}

/** Longest delay a timer can wait (setTimeout fires at once past 2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Flags over environment variables, read and checked one value at a time. */
export class Reader {
  readonly #values: Readonly<Record<string, string | boolean | undefined>>;
  readonly #env: Readonly<Record<string, string | undefined>>;

  constructor(
    values: Readonly<Record<string, string | boolean | undefined>>,
    env: Readonly<Record<string, string | undefined>>,
  ) {
    this.#values = values;
    this.#env = env;
  }

  /** Whether `--flag` was given (as a string flag or a boolean one). */
  given(flag: string): boolean {
    return this.#values[flag] !== undefined && this.#values[flag] !== false;
  }

  /** The flag's value, else the variable's (an empty variable counts as unset). */
  pick(flag: string, name: string): Found | undefined {
    const fromFlag = this.#values[flag];
    if (typeof fromFlag === "string") return { value: fromFlag, source: `--${flag}` };
    const fromEnv = this.#env[name];
    return fromEnv === undefined || fromEnv === "" ? undefined : { value: fromEnv, source: name };
  }

  /** A string value, as given. */
  string(flag: string, name: string): string | undefined {
    return this.pick(flag, name)?.value;
  }

  /** A port, 0-65535. */
  port(flag: string, name: string, fallback: number): number {
    const found = this.pick(flag, name);
    if (found === undefined) return fallback;
    const n = Number(found.value);
    if (!/^\d+$/.test(found.value) || n > 65535) {
      throw new ConfigError(
        `${found.source}: invalid port ${JSON.stringify(found.value)} (expected 0-65535)`,
      );
    }
    return n;
  }

  /** A Go-style duration (`100ms`, `10s`), in ms; at most what a timer can wait. */
  duration(flag: string, name: string, fallback: number, allowZero: boolean): number {
    const found = this.pick(flag, name);
    if (found === undefined) return fallback;
    let ms: number;
    try {
      ms = parseDuration(found.value);
    } catch (err) {
      throw new ConfigError(`${found.source}: ${(err as Error).message}`);
    }
    if (!allowZero && ms <= 0) throw new ConfigError(`${found.source}: must be greater than 0`);
    if (ms > MAX_TIMER_MS) {
      throw new ConfigError(`${found.source}: ${JSON.stringify(found.value)} is too long (at most 596h)`);
    }
    return ms;
  }

  /** A whole number from 0 to `max`. */
  count(flag: string, name: string, fallback: number, max = 1_000_000_000): number {
    const found = this.pick(flag, name);
    if (found === undefined) return fallback;
    const n = Number(found.value);
    if (!/^\d+$/.test(found.value) || n > max) {
      throw new ConfigError(
        `${found.source}: invalid count ${JSON.stringify(found.value)} (expected 0 or more)`,
      );
    }
    return n;
  }

  /** A comma-separated list, each item checked by `check` (which throws with the reason); no repeats. */
  list(flag: string, name: string, check: (raw: string) => string): string[] {
    const found = this.pick(flag, name);
    const out: string[] = [];
    for (const raw of found?.value.split(",") ?? []) {
      if (raw.trim() === "") continue;
      let checked: string;
      try {
        checked = check(raw);
      } catch (err) {
        throw new ConfigError(`${found!.source}: ${(err as Error).message}`);
      }
      if (!out.includes(checked)) out.push(checked);
    }
    return out;
  }

  /** A value converted by `convert`, which throws with the reason; undefined when unset. */
  parsed<T>(flag: string, name: string, convert: (raw: string) => T): T | undefined {
    const found = this.pick(flag, name);
    if (found === undefined) return undefined;
    try {
      return convert(found.value);
    } catch (err) {
      throw new ConfigError(`${found.source}: ${(err as Error).message}`);
    }
  }

  /** A boolean flag, else its variable (`1/true/yes/on`, `0/false/no/off`). */
  bool(flag: string, name: string, fallback: boolean): boolean {
    if (this.#values[flag] === true) return true;
    const fromEnv = this.#env[name];
    if (fromEnv === undefined || fromEnv === "") return fallback;
    const lower = fromEnv.toLowerCase();
    if (["1", "true", "yes", "on"].includes(lower)) return true;
    if (["0", "false", "no", "off"].includes(lower)) return false;
    throw new ConfigError(`${name}: expected true or false, got ${JSON.stringify(fromEnv)}`);
  }
}
