import assert from "node:assert/strict";
import type { MethodInfo } from "../src/policy/descriptor.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import {
  methodGlob,
  type MethodPatterns,
  methodPatterns,
  PatternError,
  Policy,
  type PolicyRule,
} from "../src/policy/policy.ts";
import { NEVER_CACHED, parsePolicy, PolicyFileError } from "../src/policy/policy_file.ts";

/** A policy file rule as parsePolicy would build it. */
function rule(method: string, fields: Omit<PolicyRule, "method" | "matches"> = {}): PolicyRule {
  return { method, matches: methodGlob(method), ...fields };
}

function info(idempotency: MethodInfo["idempotency"], streaming = ""): MethodInfo {
  return {
    clientStreaming: streaming === "client" || streaming === "bidi",
    serverStreaming: streaming === "server" || streaming === "bidi",
    idempotency,
  };
}

const catalog = new Map<string, MethodInfo>([
  ["/shop.Cart/Upload", info("NO_SIDE_EFFECTS", "client")],
  ["/shop.Cart/Chat", info("IDEMPOTENT", "bidi")],
  ["/shop.Cart/Watch", info("NO_SIDE_EFFECTS", "server")],
  ["/shop.Cart/Get", info("NO_SIDE_EFFECTS")],
  ["/shop.Cart/Put", info("IDEMPOTENT")],
  ["/shop.Cart/Add", info("IDEMPOTENCY_UNKNOWN")],
]);

/** Method globs as a flag gives them (`--collapse`, `--no-collapse`). */
function globs(list: string): MethodPatterns {
  return methodPatterns(list, { allowDeclared: true });
}

function decide(policy: Policy, method: string): [boolean, string] {
  const { collapse, reason } = policy.resolve(method);
  return [collapse, reason];
}

Deno.test("methodGlob() lets * match any run of characters, / included, and takes the rest literally", () => {
  const cases: [string, string, boolean][] = [
    ["/shop.Cart/*", "/shop.Cart/Add", true],
    ["/shop.Cart/*", "/shop.Cart/", true],
    ["/shop.Cart/*", "/shop.CartX/Add", false],
    ["/shop.*/Get*", "/shop.Catalog/GetItem", true],
    ["/shop.*/Get*", "/shop.a/b/GetItem", true],
    ["/shop.*/Get*", "/shop.Catalog/ListItems", false],
    ["/*", "/any.Service/Method", true],
    ["*", "/any.Service/Method", true],
    ["*", "", true],
    ["/a.b/C", "/a.b/C", true],
    ["/a.b/C", "/aXb/C", false],
    ["/a.b/C", "/a.b/CD", false],
    ["/a.b/*", "/aXb/C", false],
    ["/a-b_c/D-*", "/a-b_c/D-1", true],
    ["/a-b/C", "/a_b/C", false],
  ];
  for (const [pattern, method, expected] of cases) {
    assert.equal(methodGlob(pattern)(method), expected, `${pattern} ~ ${method}`);
  }
});

Deno.test("methodGlob() throws a PatternError quoting a pattern it cannot use", () => {
  for (
    const pattern of ["shop.Cart/*", "", "**", "/a/[bc]", "/a/b+", "/a b/C", "/a/(b|c)", "/a/b?", "/a$/^b"]
  ) {
    assert.throws(() => methodGlob(pattern), (err: unknown) => {
      assert.ok(err instanceof PatternError, `${pattern}: ${err}`);
      assert.ok(err.message.includes(JSON.stringify(pattern)), err.message);
      return true;
    });
  }
});

Deno.test("methodPatterns() parses a comma-separated list, declared only where allowed", async (t) => {
  await t.step("entries are trimmed and empty ones dropped", () => {
    const patterns = methodPatterns(" /a.B/* , ,/c.D/Get*,", { allowDeclared: false });
    assert.deepEqual(patterns.source, ["/a.B/*", "/c.D/Get*"]);
    assert.equal(patterns.declared, false);
    assert.equal(patterns.matches("/a.B/X"), true);
    assert.equal(patterns.matches("/c.D/GetY"), true);
    assert.equal(patterns.matches("/c.D/ListY"), false);
  });
  await t.step("an empty list is an error", () => {
    for (const list of ["", " ", ",", " , ,"]) {
      assert.throws(() => methodPatterns(list, { allowDeclared: true }), PatternError);
      assert.throws(() => methodPatterns(list, { allowDeclared: true }), /empty pattern list/);
    }
  });
  await t.step("declared is a flag, not a glob, and only where allowed", () => {
    const patterns = globs("declared");
    assert.equal(patterns.declared, true);
    assert.equal(patterns.matches("/declared"), false);
    assert.throws(() => methodPatterns("/a/*,declared", { allowDeclared: false }), /only meaningful/);
  });
  await t.step("a bad entry is named", () => {
    assert.throws(() => globs("/a/*, b/*"), /"b\/\*"/);
  });
});

Deno.test("Policy.resolve() decides collapse: streaming, then the first matching rule, then the flags", async (t) => {
  await t.step("a declared client or bidi stream never collapses, whatever a rule says", () => {
    const policy = new Policy({}, { rules: [rule("*", { collapse: true })], catalog });
    for (const method of ["/shop.Cart/Upload", "/shop.Cart/Chat"]) {
      const { collapse, streamsRequests, reason } = policy.resolve(method);
      assert.equal(collapse, false, method);
      assert.equal(streamsRequests, true, method);
      assert.match(reason, /streaming/);
    }
    assert.deepEqual(decide(policy, "/shop.Cart/Watch"), [true, "rule 1 (*)"]);
    assert.equal(policy.resolve("/shop.Cart/Watch").streamsRequests, false);
    assert.equal(policy.resolve("/shop.Cart/Add").streamsRequests, false);
  });

  await t.step("the first matching rule that sets collapse decides, numbered from 1", () => {
    const rules = [
      rule("/shop.Catalog/*", { collapse: true }),
      rule("/shop.Cart/*", { collapse: false }),
      rule("/shop.Cart/Get", { collapse: true }),
    ];
    const policy = new Policy({ noCollapse: globs("/shop.Catalog/*") }, { rules });
    assert.deepEqual(decide(policy, "/shop.Cart/Get"), [false, "rule 2 (/shop.Cart/*)"]);
    assert.deepEqual(decide(policy, "/shop.Catalog/List"), [true, "rule 1 (/shop.Catalog/*)"]);
    assert.deepEqual(decide(policy, "/other.S/M"), [true, "default"]);
  });

  await t.step("a first match without collapse defers to the flags; later rules never apply", () => {
    const rules = [
      rule("/shop.Cart/*", { ttlMs: 5 }),
      rule("/shop.Cart/Add", { collapse: true, ttlMs: 7, refreshAhead: false, keyHeaders: ["x-b"] }),
    ];
    const denied = new Policy({ noCollapse: globs("/shop.Cart/Add") }, { rules });
    const add = denied.resolve("/shop.Cart/Add");
    assert.deepEqual([add.collapse, add.reason], [false, "--no-collapse"]);
    assert.equal(add.ttlMs, 5);
    assert.equal(add.refreshAhead, true);
    assert.equal(add.key.keyed("x-b"), true); // unknown names are keyed anyway
    assert.deepEqual(add.key.keyHeaders, ["authorization"]);
    assert.deepEqual(decide(new Policy({}, { rules }), "/shop.Cart/Add"), [true, "default"]);
  });

  await t.step("--no-collapse wins over --collapse", () => {
    const policy = new Policy({ collapse: globs("/shop.Cart/*"), noCollapse: globs("/shop.Cart/Add") });
    assert.deepEqual(decide(policy, "/shop.Cart/Add"), [false, "--no-collapse"]);
    assert.deepEqual(decide(policy, "/shop.Cart/Get"), [true, "--collapse"]);
    assert.deepEqual(decide(policy, "/shop.Catalog/Get"), [false, "not in --collapse"]);
  });

  await t.step("--collapse declared takes methods declared safe; unknown ones follow the globs", () => {
    const defaults = { collapse: globs("declared,/extra.S/*") };
    const policy = new Policy(defaults, { catalog });
    const cases: [string, boolean][] = [
      ["/shop.Cart/Get", true],
      ["/shop.Cart/Put", true],
      ["/shop.Cart/Watch", true],
      ["/shop.Cart/Add", false],
      ["/unknown.S/M", false],
      ["/extra.S/M", true],
    ];
    for (const [method, expected] of cases) assert.equal(policy.resolve(method).collapse, expected, method);
    const globsOnly = new Policy({ collapse: globs("/extra.S/*") }, { catalog });
    assert.equal(globsOnly.resolve("/shop.Cart/Get").collapse, false);
    assert.equal(new Policy(defaults).resolve("/shop.Cart/Get").collapse, false);
  });

  await t.step("with no flags and no rules every method collapses", () => {
    assert.deepEqual(decide(new Policy(), "/a.B/C"), [true, "default"]);
  });
});

Deno.test("Policy.resolve() takes TTLs, cached errors and refresh-ahead from the rule, else the flags", async (t) => {
  await t.step("documented defaults", () => {
    const p = new Policy().resolve("/a.B/C");
    assert.deepEqual([p.ttlMs, p.errorTtlMs, p.cacheErrors.size, p.staleIfErrorMs], [100, 100, 0, 0]);
    assert.deepEqual([p.refreshAhead, p.join], [true, { refreshAhead: true }]);
  });
  await t.step("flags, then rule fields", () => {
    const defaults = { ttlMs: 250, staleIfErrorMs: 1000, refreshAhead: false };
    const rules = [
      rule("/a.B/Rule", {
        ttlMs: 2000,
        cacheErrors: new Set([Status.NOT_FOUND]),
        errorTtlMs: 50,
        staleIfErrorMs: 0,
        refreshAhead: true,
      }),
      rule("/a.B/Ttl", { ttlMs: 0, cacheErrors: new Set([Status.NOT_FOUND]) }),
    ];
    const policy = new Policy(defaults, { rules });
    const flags = policy.resolve("/a.B/Flags");
    assert.deepEqual(
      [flags.ttlMs, flags.errorTtlMs, flags.staleIfErrorMs, flags.refreshAhead, flags.join.refreshAhead],
      [250, 250, 1000, false, false],
    );
    const ruled = policy.resolve("/a.B/Rule");
    assert.deepEqual(
      [ruled.ttlMs, ruled.errorTtlMs, ruled.staleIfErrorMs, ruled.refreshAhead, ruled.join.refreshAhead],
      [2000, 50, 0, true, true],
    );
    assert.deepEqual([...ruled.cacheErrors], [Status.NOT_FOUND]);
    const ttl = policy.resolve("/a.B/Ttl");
    assert.deepEqual([ttl.ttlMs, ttl.errorTtlMs, ttl.staleIfErrorMs], [0, 0, 1000]);
  });
});

Deno.test("Policy.resolve() keys authorization and unknown metadata, never the per-call headers", () => {
  const policy = new Policy({ keyHeaders: ["x-flag-key"], ignoreHeaders: ["x-flag-ignored", "x-debug-*"] }, {
    rules: [rule("/a.B/*", { keyHeaders: ["x-rule-key", "x-debug-id"], ignoreHeaders: ["x-request-*"] })],
  });
  const ruled = policy.resolve("/a.B/C").key;
  const plain = policy.resolve("/other.S/M").key;
  const builtIn = ["te", "content-type", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"].concat(
    ["accept-encoding", "user-agent", "traceparent", "tracestate", "grpc-trace-bin", "b3", "x-b3-traceid"],
  );
  for (const name of builtIn) assert.equal(ruled.keyed(name), false, name);
  const cases: [string, boolean, boolean][] = [
    ["authorization", true, true],
    ["x-locale", true, true],
    ["x-flag-key", true, true],
    ["x-rule-key", true, true],
    ["x-flag-ignored", false, false],
    ["x-debug-trace", false, false],
    ["x-debug-id", true, false], // keyHeaders win over an ignore glob
    ["x-request-id", false, true],
  ];
  for (const [name, inRule, elsewhere] of cases) {
    assert.equal(ruled.keyed(name), inRule, `rule: ${name}`);
    assert.equal(plain.keyed(name), elsewhere, `flags: ${name}`);
  }
});

Deno.test("Policy.resolve() returns one frozen policy per method, and stays right past its memo bound", () => {
  const policy = new Policy({ noCollapse: globs("/a.B/No*") }, {
    rules: [rule("/a.B/Rule", { ttlMs: 9 })],
  });
  const first = policy.resolve("/a.B/Rule");
  assert.equal(policy.resolve("/a.B/Rule"), first);
  assert.ok(Object.isFrozen(first));
  assert.throws(() => {
    (first as { collapse: boolean }).collapse = false;
  }, TypeError);
  for (let i = 0; i < 5000; i++) policy.resolve(`/junk.S/M${i}`);
  const again = policy.resolve("/a.B/Rule");
  assert.deepEqual([again.collapse, again.ttlMs, again.reason], [true, 9, "default"]);
  assert.equal(policy.resolve("/a.B/Rule"), again);
  assert.deepEqual(decide(policy, "/a.B/No4097"), [false, "--no-collapse"]);
  assert.equal(policy.resolve("/junk.S/M4999").ttlMs, 100);
});

Deno.test("parsePolicy() reads YAML and JSON alike", () => {
  const json =
    '{"rules":[{"method":"/shop.Cart/*","collapse":false},{"method":"/shop.Catalog/Get*","ttl":"1s"}]}';
  const yaml = "rules:\n  - method: /shop.Cart/*\n    collapse: false\n" +
    "  - method: /shop.Catalog/Get*\n    ttl: 1s\n";
  for (const text of [json, yaml]) {
    const rules = parsePolicy(text, "p.yaml");
    assert.deepEqual(rules.map(({ method, collapse, ttlMs }) => [method, collapse, ttlMs]), [
      ["/shop.Cart/*", false, undefined],
      ["/shop.Catalog/Get*", undefined, 1000],
    ]);
    assert.equal(rules[0].matches("/shop.Cart/Add"), true);
    assert.equal(rules[1].matches("/shop.Catalog/GetItem"), true);
    assert.equal(rules[1].matches("/shop.Catalog/ListItems"), false);
  }
  assert.deepEqual(parsePolicy("rules: []", "p.yaml"), []);
  assert.deepEqual(parsePolicy('{"rules": []}', "p.yaml"), []);
});

Deno.test("parsePolicy() reads every field, durations Go-style or the number 0", () => {
  const [r] = parsePolicy(
    `rules:
  - method: "*"
    collapse: true
    ttl: 1m30s
    cacheErrors: [NOT_FOUND, PERMISSION_DENIED]
    errorTtl: 250ms
    keyHeaders: [X-Tenant]
    ignoreHeaders: [x-request-*, x-debug]
    staleIfError: 0
    refreshAhead: false
`,
    "p.yaml",
  );
  const durations = [r.ttlMs, r.errorTtlMs, r.staleIfErrorMs];
  assert.deepEqual([r.collapse, durations, r.refreshAhead], [true, [90_000, 250, 0], false]);
  assert.deepEqual(r.cacheErrors, new Set([Status.NOT_FOUND, Status.PERMISSION_DENIED]));
  assert.deepEqual(r.keyHeaders, ["x-tenant"]);
  assert.deepEqual(r.ignoreHeaders, ["x-request-*", "x-debug"]);
  const key = new Policy({}, { rules: [r] }).resolve("/a.B/C").key;
  assert.deepEqual(["x-request-id", "x-tenant", "x-other"].map((n) => key.keyed(n)), [false, true, true]);
});

Deno.test("parsePolicy() says what is wrong in one line naming the file, the rule and the field", async (t) => {
  const check = (text: string, expected: (message: string) => void) => {
    assert.throws(() => parsePolicy(text, "p.yaml"), (err: unknown) => {
      assert.ok(err instanceof PolicyFileError, `${err}`);
      assert.ok(err.message.startsWith("p.yaml: "), err.message);
      assert.ok(!err.message.includes("\n"), err.message);
      expected(err.message);
      return true;
    });
  };
  const documents: [string, string, RegExp][] = [
    ["YAML syntax error", "rules: [\n  - x", /not valid YAML or JSON: .*line \d+/],
    ["JSON syntax error", '{"rules": [}', /not valid YAML or JSON: .*line \d+/],
    [
      "duplicate keys in a rule",
      "rules:\n  - method: /a/*\n    ttl: 1s\n    ttl: 2s",
      /YAML or JSON: .*unique.*line 4/,
    ],
    ["top level a list", "- method: /a/*", /expected a mapping with a "rules:" list/],
    ["top level a scalar", "rules", /expected a mapping with a "rules:" list/],
    ["empty file", "", /expected a mapping with a "rules:" list/],
    ["missing rules", "{}", /expected a mapping with a "rules:" list/],
    ["unknown top-level field", "rules: []\nrule: []", /unknown top-level field "rule"/],
    ["rules not a list", "rules: {method: /a/*}", /rules: expected a list/],
    ["rule not a mapping", "rules: [/a/*]", /rule 1: expected a mapping/],
    ["missing method", "rules:\n  - ttl: 1s", /rule 1: method: required/],
    [
      "bad glob",
      "rules:\n  - method: shop.Cart/*",
      /rule 1 \(shop.Cart\/\*\): method: invalid method pattern/,
    ],
    [
      "second rule",
      "rules:\n  - method: /a/*\n  - method: /b/*\n    tll: 1s",
      /rule 2 \(\/b\/\*\): tll: unknown/,
    ],
  ];
  for (const [what, text, expected] of documents) {
    await t.step(what, () => check(text, (message) => assert.match(message, expected)));
  }
  // [field, YAML value, part of the problem]: the message is "p.yaml: rule 1 (/a.B/*): <field>: <problem>".
  type FieldCase = [field: string, value: string, problem: string];
  const fields: FieldCase[] = [
    ["tll", "1s", "unknown field"],
    ["ttl", "5x", 'invalid duration "5x"'],
    ["ttl", "100", "expected a duration"],
    ["staleIfError", "597h", "too long"],
    ["collapse", '"false"', "expected true or false"],
    ["refreshAhead", "yes", "expected true or false"],
    ["cacheErrors", "[NOT_FOUNDD]", 'unknown status "NOT_FOUNDD"'],
    ["cacheErrors", "[toString]", 'unknown status "toString"'], // inherited by Status from Object.prototype
    ...NEVER_CACHED.map((name): FieldCase => ["cacheErrors", `[${name}]`, `${name} is never cached`]),
    ["cacheErrors", "NOT_FOUND", "expected a list"],
    ["errorTtl", "1s", "without cacheErrors"],
    ["keyHeaders", '["x tenant"]', 'invalid metadata name "x tenant"'],
    ["keyHeaders", "[x-*]", 'invalid metadata name "x-*"'],
    ["ignoreHeaders", "[Authorization]", "authorization is always part of the key"],
  ];
  for (const [field, value, problem] of fields) {
    const text = `rules:\n  - method: /a.B/*\n    ${field}: ${value}\n`;
    await t.step(`${field}: ${value}`, () => {
      check(text, (message) => {
        assert.ok(message.startsWith(`p.yaml: rule 1 (/a.B/*): ${field}: `), message);
        assert.ok(message.includes(problem), message);
      });
    });
  }
});
