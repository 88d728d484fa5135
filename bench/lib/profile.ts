/**
 * Where the proxy's CPU went, from the V8 CPU profiles a `--cpu-prof DIR` run leaves (one per proxy process,
 * so one per scenario): its busy time split into the runtime (Deno's `node:http2`, the event loop and other
 * built-ins), garbage collection, the proxy's own code (`src/`, self time) and npm packages, and the proxy's
 * largest functions. For a unique-key run this is the per-miss cost breakdown (docs/performance.md).
 *
 * @module
 */

import { fmt } from "./format.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One profile's busy time in ms and its shares in %, and the largest `src/` functions by self time. */
export interface Breakdown {
  file: string;
  busyMs: number;
  shares: { runtime: number; gc: number; src: number; npm: number };
  topSrc: { name: string; pct: number }[];
}

/** Splits one `.cpuprofile` (idle time left out). */
export function breakdown(file: string, profile: CpuProfile, top = 8): Breakdown {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const sums = { runtime: 0, gc: 0, src: 0, npm: 0 };
  const srcFunctions = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const { functionName, url } = byId.get(id)!.callFrame;
    if (functionName === "(idle)") continue;
    busy += us;
    const at = url.indexOf("/src/");
    if (functionName === "(garbage collector)") sums.gc += us;
    else if (at >= 0 && !url.includes("node_modules")) {
      sums.src += us;
      const name = `${url.slice(at + 5)} ${functionName || "(anonymous)"}`;
      srcFunctions.set(name, (srcFunctions.get(name) ?? 0) + us);
    } else if (url.includes("node_modules") || url.startsWith("npm:")) sums.npm += us;
    else sums.runtime += us;
  }
  const pct = (us: number) => (busy > 0 ? (100 * us) / busy : 0);
  return {
    file,
    busyMs: busy / 1000,
    shares: { runtime: pct(sums.runtime), gc: pct(sums.gc), src: pct(sums.src), npm: pct(sums.npm) },
    topSrc: [...srcFunctions].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({
      name,
      pct: pct(us),
    })),
  };
}

/** The breakdown of every `.cpuprofile` in `dir` (oldest first: the scenarios' order), as Markdown. */
export async function profileReport(dir: string): Promise<string> {
  const files: { name: string; mtime: number }[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".cpuprofile")) continue;
    files.push({ name: entry.name, mtime: (await Deno.stat(`${dir}/${entry.name}`)).mtime?.getTime() ?? 0 });
  }
  files.sort((a, b) => a.mtime - b.mtime);
  const lines = [
    "",
    "## Where the proxy's CPU went (--cpu-prof)",
    "",
    "Busy time of each proxy process (one per scenario, in order), idle left out: the runtime (Deno's " +
    "`node:http2`, the event loop, other built-ins), garbage collection, the proxy's own `src/` (self time) " +
    "and npm packages; then its largest `src/` functions by self time.",
    "",
    "| Profile | Busy | Runtime | GC | src/ | npm | Largest in src/ |",
    "|---|--:|--:|--:|--:|--:|---|",
  ];
  for (const { name } of files) {
    const b = breakdown(name, JSON.parse(await Deno.readTextFile(`${dir}/${name}`)));
    const topSrc = b.topSrc.slice(0, 4).map((f) => `${f.name} ${fmt(f.pct, 1)}%`).join("; ");
    lines.push(
      `| ${name} | ${fmt(b.busyMs, 0)} ms | ${fmt(b.shares.runtime, 1)}% | ${fmt(b.shares.gc, 1)}% | ` +
        `${fmt(b.shares.src, 1)}% | ${fmt(b.shares.npm, 1)}% | ${topSrc} |`,
    );
  }
  return lines.join("\n");
}
