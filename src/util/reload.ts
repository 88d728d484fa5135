/**
 * SIGHUP: re-read what the proxy was started with (the policy, certificates) without a restart. Each
 * reloader logs its own outcome and keeps what it had when its new reading fails.
 *
 * @module
 */

/** Runs every reloader, in order, on each SIGHUP, one SIGHUP at a time. Returns a function that stops. */
export function onSighup(...reloaders: (() => Promise<void>)[]): () => void {
  let queue = Promise.resolve();
  const listener = () => {
    queue = queue.then(async () => {
      for (const reload of reloaders) await reload();
    });
  };
  Deno.addSignalListener("SIGHUP", listener);
  return () => Deno.removeSignalListener("SIGHUP", listener);
}
