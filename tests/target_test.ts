import assert from "node:assert/strict";
import { grpcJsTarget, isBalanced, parseTarget, TargetError } from "../src/backend/target.ts";

Deno.test("parseTarget() reads every target form of the gRPC naming spec", async (t) => {
  const cases: [string, { addresses: string[]; names: string[]; balanced: boolean }][] = [
    ["127.0.0.1:50051", { addresses: ["127.0.0.1:50051"], names: [], balanced: false }],
    ["[::1]:50051", { addresses: ["[::1]:50051"], names: [], balanced: false }],
    ["backend.svc:8080", { addresses: [], names: ["backend.svc:8080 (system)"], balanced: true }],
    ["dns:///backend.svc:8080", { addresses: [], names: ["backend.svc:8080 (system)"], balanced: true }],
    ["dns:backend.svc", { addresses: [], names: ["backend.svc:443 (system)"], balanced: true }],
    ["dns://10.0.0.53/svc:1", { addresses: [], names: ["svc:1 (10.0.0.53:53)"], balanced: true }],
    ["dns://127.0.0.1:5353/svc.test:9", {
      addresses: [],
      names: ["svc.test:9 (127.0.0.1:5353)"],
      balanced: true,
    }],
    ["dns:///10.0.0.1:7", { addresses: ["10.0.0.1:7"], names: [], balanced: false }],
    ["ipv4:10.0.0.1:1,10.0.0.2", { addresses: ["10.0.0.1:1", "10.0.0.2:443"], names: [], balanced: true }],
    ["ipv4:10.0.0.1:1", { addresses: ["10.0.0.1:1"], names: [], balanced: false }],
    ["ipv6:::1,[fe80::1]:5", { addresses: ["[::1]:443", "[fe80::1]:5"], names: [], balanced: true }],
    [
      "10.0.0.1:50051, 10.0.0.2:50051",
      { addresses: ["10.0.0.1:50051", "10.0.0.2:50051"], names: [], balanced: true },
    ],
    ["a.svc:1,10.0.0.2:2", { addresses: ["10.0.0.2:2"], names: ["a.svc:1 (system)"], balanced: true }],
    ["unix:/run/backend.sock", { addresses: [], names: [], balanced: false }],
  ];
  for (const [text, expected] of cases) {
    await t.step(text, () => {
      const target = parseTarget(text);
      assert.deepEqual(target.addresses.map((a) => a.key), expected.addresses);
      assert.deepEqual(
        target.names.map((n) =>
          `${n.host}:${n.port} (${n.nameServer ? `${n.nameServer.ipAddr}:${n.nameServer.port}` : "system"})`
        ),
        expected.names,
      );
      assert.equal(isBalanced(target), expected.balanced);
    });
  }
});

Deno.test("parseTarget() refuses what names nothing, saying why", async (t) => {
  const cases: [string, RegExp][] = [
    [":::", /is not HOST:PORT/],
    ["backend", /has no port/],
    ["backend:0", /port 0 is not 1-65535/],
    ["backend:70000", /port 70000 is not 1-65535/],
    ["a:1,,b:2", /an empty element/],
    ["ipv4:10.0.0.1:1,backend:2", /"backend:2" is not an IPV4 address/],
    ["ipv6:10.0.0.1", /not an IPv6 address/],
    ["dns://resolver.local/svc:1", /DNS server "resolver.local" must be an IP address/],
    ["http://backend:80", /unknown scheme "http"/],
    ["[10.0.0.1]:80", /in brackets is not an IPv6 address/],
    ["bad_host!:80", /"bad_host!" is not a host name or IP address/],
    ["", /empty target/],
  ];
  for (const [text, why] of cases) {
    await t.step(JSON.stringify(text), () =>
      assert.throws(() => parseTarget(text), (err) => {
        assert.ok(err instanceof TargetError);
        assert.match(err.message, why);
        return true;
      }));
  }
});

Deno.test("Target.service names the service, not its addresses: the shared tier's namespace", () => {
  // One element: the text hashed before replicas (so a fleet keeps its namespace across the upgrade).
  assert.equal(parseTarget("127.0.0.1:50051").service, "127.0.0.1:50051");
  assert.equal(parseTarget("backend.svc:8080").service, "backend.svc:8080");
  // Any form of one name, whatever resolver and whatever it resolves to.
  assert.equal(parseTarget("dns:///backend.svc:8080").service, "backend.svc:8080");
  assert.equal(parseTarget("dns://127.0.0.1:5353/backend.svc:8080").service, "backend.svc:8080");
  // A list: the order it is written in does not matter.
  assert.equal(
    parseTarget("10.0.0.2:1,10.0.0.1:1").service,
    parseTarget("ipv4:10.0.0.1:1,10.0.0.2:1").service,
  );
  assert.notEqual(parseTarget("10.0.0.2:1,10.0.0.1:1").service, parseTarget("10.0.0.3:1,10.0.0.1:1").service);
});

Deno.test("grpcJsTarget() gives grpc-js a target it takes: a plain comma list's first element, else as given", () => {
  assert.equal(grpcJsTarget("10.0.0.1:1, 10.0.0.2:1"), "10.0.0.1:1");
  assert.equal(grpcJsTarget("a.svc:1,b.svc:1"), "a.svc:1");
  for (
    const same of [
      "backend:1",
      "dns:///svc:1",
      "dns://10.0.0.53/svc:1",
      "ipv4:10.0.0.1:1,10.0.0.2:1",
      "[::1]:5",
    ]
  ) {
    assert.equal(grpcJsTarget(same), same);
  }
});
