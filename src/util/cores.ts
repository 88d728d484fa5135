/**
 * How many cores this process may use: the machine's, capped by a cgroup v2 CPU quota (a container's CPU
 * limit, `/sys/fs/cgroup/cpu.max`) when one is set. `--workers auto` starts that many.
 *
 * @module
 */

/** The cores available: hardware threads, capped by the cgroup quota (rounded up, at least 1). */
export function availableCores(
  read: (path: string) => string | undefined = readTextOrUndefined,
  hardware: number = navigator.hardwareConcurrency,
): number {
  const quota = read("/sys/fs/cgroup/cpu.max")?.trim().split(/\s+/);
  if (quota !== undefined && quota[0] !== "max") {
    const limit = Number(quota[0]) / Number(quota[1] ?? 100_000);
    if (Number.isFinite(limit) && limit > 0) return Math.max(1, Math.min(hardware, Math.ceil(limit)));
  }
  return Math.max(1, hardware);
}

/** A file's text, or undefined when it cannot be read (a cgroup file that is not there). */
export function readTextOrUndefined(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}
