/**
 * The bare relay (bench/relay_server.ts) behind the proxy's command line, so that `bench/load.ts` can run it
 * in the proxy's place and profile it the same way:
 *
 * ```sh
 * deno run -A bench/load.ts --only b --proxy-entry bench/_relay_entry.ts --cpu-prof /tmp/relay-prof
 * ```
 *
 * It accepts the proxy's flags and ignores all but `--backend`, `--port` and `--host`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startRelayServer } from "./relay_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  strict: false,
  options: { backend: { type: "string" }, port: { type: "string" }, host: { type: "string" } },
});
await startRelayServer({
  backend: String(values.backend),
  port: Number(values.port ?? 0),
  host: String(values.host ?? "127.0.0.1"),
});
// Exit on the harness's SIGTERM, so that --cpu-prof writes its profile.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
Deno.addSignalListener("SIGINT", () => Deno.exit(0));
