/**
 * Flag handling shared by the example programs: a bad flag prints one line and the usage, and exits 1.
 *
 * @module
 */

/** Runs `parse` (parseArgs and any value checks); on an error prints it with `usage` and exits 1. */
export function parseFlagsOrExit<T>(name: string, usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\n\n${usage}`);
    Deno.exit(1);
  }
}
