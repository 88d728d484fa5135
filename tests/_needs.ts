/**
 * Tests that need a system tool no npm package ships (a real Redis, a real browser, …) declare it here, so
 * that a machine without the tool reports them as ignored, each on a line naming the Debian package, and
 * never as failures nor silent skips.
 *
 * Use it in place of `Deno.test`, with the same arguments:
 *
 * ```ts
 * import { needs } from "./_needs.ts";
 *
 * const test = needs("redis-server").test; // one line per file; `deno fmt` keeps test(…) calls as Deno.test(…)
 * test("Redis tier: …", async () => { … });
 * needs("redis-server", "redis-cli").test({ name: "Redis Cluster: …", sanitizeOps: false, async fn() { … } });
 * ```
 *
 * With every tool present the test is exactly the `Deno.test` it replaces. With one missing it is ignored,
 * and its name says what to install: `Redis tier: … [needs redis-server: apt-get install redis-server]`;
 * Deno's summary counts it (`| 12 ignored`) and `deno task test` (tests/_run.ts) lists them again at the end.
 *
 * With `COLLAPSER_REQUIRE_TOOLS=1` (set by .ci/run) nothing is ignored: a test whose tool is missing runs and
 * fails, saying which package is missing.
 *
 * A tool the suite does not know yet: add a line to `TOOLS` (the command, its Debian package, why the tests
 * use it, and a probe when being on the PATH is not enough). `deno task test` installs missing ones with
 * apt-get where it can (root on Debian).
 */

/** A system tool some tests need. */
export interface Tool {
  /** The Debian package that brings it. */
  readonly debian: string;
  /** Why tests need it (said when `deno task test` installs it). */
  readonly why: string;
  /** The executable to find on the PATH, or an absolute path. */
  readonly command: string;
  /** Arguments that succeed only when the tool is usable (beyond being on the PATH), if any. */
  readonly probe?: readonly string[];
}

/** Every tool a test may need, by the name tests give it. */
export const TOOLS = {
  "redis-server": {
    debian: "redis-server",
    why: "the shared tier's tests start their own Redis",
    command: "redis-server",
  },
  "redis-cli": {
    debian: "redis-tools",
    why: "Redis Cluster tests create their cluster with redis-cli",
    command: "redis-cli",
  },
  chromium: {
    debian: "chromium",
    why: "the status page is tested in a headless browser",
    command: "chromium",
  },
  "python3-grpcio": {
    debian: "python3-grpcio",
    why: "a C-core gRPC client (Python grpcio) checks the proxy's TLS",
    command: "/usr/bin/python3",
    probe: ["-c", "import grpc"],
  },
  promtool: {
    debian: "prometheus",
    why: "promtool checks the metrics exposition and the dashboard's PromQL",
    command: "promtool",
  },
  nginx: {
    debian: "nginx",
    why: "nginx's grpc_pass is a peer in interoperability tests",
    command: "nginx",
  },
  h2load: {
    debian: "nghttp2-client",
    why: "h2load drives HTTP/2 load",
    command: "h2load",
  },
  podman: {
    debian: "podman",
    why: "the container image is built and run for real",
    command: "podman",
  },
  runc: {
    debian: "runc",
    why: "podman runs the image with runc (crun fails on hybrid cgroups)",
    command: "runc",
  },
} as const satisfies Record<string, Tool>;

/** The name a test gives a tool. */
export type ToolName = keyof typeof TOOLS;

/** The environment variable that turns a missing tool into a failing test (CI). */
export const REQUIRE_TOOLS_ENV = "COLLAPSER_REQUIRE_TOOLS";

/** Where `command` is: itself if it is a path, else the first match on the PATH; undefined if nowhere. */
export function which(command: string): string | undefined {
  const isFile = (path: string) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  };
  if (command.includes("/")) return isFile(command) ? command : undefined;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir !== "" && isFile(`${dir}/${command}`)) return `${dir}/${command}`;
  }
  return undefined;
}

const present = new Map<ToolName, boolean>();

/** Whether `name` is usable here (looked up once per process). */
export function hasTool(name: ToolName): boolean {
  let found = present.get(name);
  if (found === undefined) {
    const tool: Tool = TOOLS[name];
    const path = which(tool.command);
    found = path !== undefined;
    if (found && tool.probe !== undefined) {
      try {
        const probe = new Deno.Command(path!, { args: [...tool.probe], stdout: "null", stderr: "null" });
        found = probe.outputSync().success;
      } catch {
        found = false;
      }
    }
    present.set(name, found);
  }
  return found;
}

/** What a test named `name` says when ignored: `[needs redis-server: apt-get install redis-server]`. */
export function needsNote(missing: readonly ToolName[]): string {
  return `[needs ${missing.join(", ")}: apt-get install ${debianPackages(missing).join(" ")}]`;
}

/** The Debian packages that bring `tools`, each once. */
export function debianPackages(tools: readonly ToolName[]): string[] {
  return [...new Set(tools.map((name) => TOOLS[name].debian))];
}

/** Raised by a test whose tool is missing when `COLLAPSER_REQUIRE_TOOLS=1` forbids ignoring it. */
export class MissingToolError extends Error {
  override name = "MissingToolError";
}

type TestFn = (t: Deno.TestContext) => void | Promise<void>;

/** `Deno.test`, ignored (its name saying which package) where a tool in `tools` is missing. */
export interface NeedsTest {
  /** The tools that are missing here (empty when the test runs). */
  readonly missing: readonly ToolName[];
  /** Registers a test, as `Deno.test(name, fn)` does. */
  test(name: string, fn: TestFn): void;
  /** Registers a test, as `Deno.test(definition)` does. */
  test(definition: Deno.TestDefinition): void;
}

/** Declares that the tests registered through the result need every tool in `tools` (see the top of the file). */
export function needs(...tools: ToolName[]): NeedsTest {
  const missing = tools.filter((name) => !hasTool(name));
  const required = Deno.env.get(REQUIRE_TOOLS_ENV) === "1";
  return {
    missing,
    test(nameOrDefinition: string | Deno.TestDefinition, fn?: TestFn) {
      const definition: Deno.TestDefinition = typeof nameOrDefinition === "string"
        ? { name: nameOrDefinition, fn: fn! }
        : nameOrDefinition;
      if (missing.length === 0) return Deno.test(definition);
      const name = `${definition.name} ${needsNote(missing)}`;
      if (!required) return Deno.test({ ...definition, name, ignore: true });
      Deno.test({
        ...definition,
        name,
        fn() {
          throw new MissingToolError(
            `${missing.join(", ")} is missing (apt-get install ${debianPackages(missing).join(" ")}), and ` +
              `${REQUIRE_TOOLS_ENV}=1 forbids ignoring this test`,
          );
        },
      });
    },
  };
}
