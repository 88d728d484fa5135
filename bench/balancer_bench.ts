/**
 * What the balancer adds to one backend call, without the network: the picker, the per-address counters,
 * outlier bookkeeping and the retry wrapper around a call whose "channel" answers OK at once. Measured with
 * 1, 3 and 30 addresses: the per-call cost must not grow with the count. The baseline is the same fake
 * channel called directly, as the single-address path does.
 *
 * ```sh
 * deno bench -A bench/balancer_bench.ts
 * ```
 *
 * @module
 */

import { balancedUnary } from "../src/backend/balanced_call.ts";
import { Balancer } from "../src/backend/balancer.ts";
import { parseTarget } from "../src/backend/target.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import { type ResponseEvent, statusEvent, type UpstreamCall } from "../src/wire/response.ts";

const OK = statusEvent(Status.OK, "");
const CALL: UpstreamCall = { cancel() {} };
let answered = 0;
const sink = (event: ResponseEvent) => {
  if (event.type === "status") answered++;
};
/** A channel that answers OK at once. */
const channel = (s: (e: ResponseEvent) => void): UpstreamCall => {
  s(OK);
  return CALL;
};

/** A balancer over `n` IP addresses (nothing is dialled: the fake channel stands in for each). */
async function balancer(n: number): Promise<Balancer> {
  const list = Array.from({ length: n }, (_, i) => `10.0.${i >> 8}.${i & 255}:50051`).join(",");
  const b = new Balancer(parseTarget(n === 1 ? `ipv4:${list},${list}` : list));
  await b.start();
  return b;
}

const [one, three, thirty] = await Promise.all([balancer(1), balancer(3), balancer(30)]);
const balanced = (b: Balancer) => () => void balancedUnary(b, sink, false, (_endpoint, s) => channel(s));

Deno.bench({
  name: "direct: the channel alone (one IP)",
  group: "call",
  baseline: true,
  fn: () => void channel(sink),
});
Deno.bench({ name: "balancer, 1 address", group: "call", fn: balanced(one) });
Deno.bench({ name: "balancer, 3 addresses", group: "call", fn: balanced(three) });
Deno.bench({ name: "balancer, 30 addresses", group: "call", fn: balanced(thirty) });

globalThis.addEventListener("unload", () => {
  for (const b of [one, three, thirty]) b.close();
  if (answered === 0) throw new Error("no call answered");
});
