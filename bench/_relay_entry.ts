import { parseArgs } from "node:util";
import { startRelayServer } from "./relay_server.ts";
const { values } = parseArgs({
  args: Deno.args,
  strict: false,
  options: { backend: { type: "string" }, port: { type: "string" }, host: { type: "string" } },
});
await startRelayServer({
  backend: String(values.backend),
  port: Number(values.port),
  host: String(values.host),
});
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
Deno.addSignalListener("SIGINT", () => Deno.exit(0));
