import assert from "node:assert/strict";
import { type Address, parseTarget } from "../src/backend/target.ts";
import { dnsLookup, type NameLookup, Resolver } from "../src/backend/resolver.ts";
import { startTestDns } from "./_dns_server.ts";

/** A resolver whose every new set lands in `sets`, and a promise of the next one. */
function watching(
  target: string,
  options: { intervalMs?: number; minIntervalMs?: number; lookup?: NameLookup },
) {
  const sets: string[][] = [];
  let next = Promise.withResolvers<string[]>();
  const resolver = new Resolver(parseTarget(target), {
    ...options,
    onAddresses: (addresses: readonly Address[]) => {
      const keys = addresses.map((a) => `${a.key}${a.name ? ` (${a.name})` : ""}`);
      sets.push(keys);
      next.resolve(keys);
      next = Promise.withResolvers();
    },
  });
  return { resolver, sets, next: () => next.promise };
}

Deno.test("Resolver asks the DNS server a dns://SERVER/ target names, A and AAAA, and follows its answers", async () => {
  await using dns = await startTestDns();
  dns.set("svc.test", ["127.0.0.2", "127.0.0.3", "::1"]);
  const { resolver, sets, next } = watching(`dns://127.0.0.1:${dns.port}/svc.test:9`, {
    intervalMs: 60_000,
    minIntervalMs: 0,
  });
  try {
    await resolver.start();
    assert.deepEqual(sets, [["127.0.0.2:9 (svc.test)", "127.0.0.3:9 (svc.test)", "[::1]:9 (svc.test)"]]);
    dns.set("svc.test", ["127.0.0.3", "127.0.0.4"]);
    const changed = next();
    resolver.refresh();
    assert.deepEqual(await changed, ["127.0.0.3:9 (svc.test)", "127.0.0.4:9 (svc.test)"]);
    assert.equal(resolver.counts.ok, 2);
  } finally {
    resolver.close();
  }
});

Deno.test("Resolver resolves again every interval, and reports only changes", async () => {
  await using dns = await startTestDns();
  dns.set("svc.test", ["127.0.0.2"]);
  const { resolver, sets, next } = watching(`dns://127.0.0.1:${dns.port}/svc.test:9`, { intervalMs: 20 });
  try {
    await resolver.start();
    const before = dns.queries.get("svc.test")!;
    while (dns.queries.get("svc.test")! < before + 6) await new Promise((r) => setTimeout(r, 5));
    assert.equal(sets.length, 1, "the same answer again is no news");
    const changed = next();
    dns.set("svc.test", ["127.0.0.5"]);
    assert.deepEqual(await changed, ["127.0.0.5:9 (svc.test)"], "the timer alone picks the change up");
  } finally {
    resolver.close();
  }
});

Deno.test("Resolver keeps a name's addresses when it cannot be resolved, and says why", async () => {
  let fail = false;
  const lookup: NameLookup = (name) =>
    fail
      ? Promise.reject(new Error("SERVFAIL"))
      : Promise.resolve(name.host === "a.test" ? ["10.0.0.1"] : []);
  const { resolver, sets } = watching("a.test:1,10.0.0.9:2", { lookup, minIntervalMs: 0 });
  try {
    await resolver.start();
    assert.deepEqual(sets, [["10.0.0.9:2", "10.0.0.1:1 (a.test)"]]);
    fail = true;
    resolver.refresh();
    while (resolver.counts.error === 0) await new Promise((r) => setTimeout(r, 1));
    assert.equal(sets.length, 1, "nothing dropped");
    assert.match(resolver.lastError!, /a\.test: SERVFAIL/);
  } finally {
    resolver.close();
  }
});

Deno.test("dnsLookup() resolves plain names with the system resolver", async () => {
  const ips = await dnsLookup({ host: "localhost", port: 1 });
  assert.ok(ips.includes("127.0.0.1") || ips.includes("::1"), ips.join(","));
});
