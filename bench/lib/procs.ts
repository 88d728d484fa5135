/**
 * Process control for the load harness: spawning and stopping every process it starts (children included),
 * ports, running a tool to completion, and /proc snapshots of resident memory and of the CPU used by other
 * work on the machine. The list of live processes is owned here; `stopAll()` stops whatever is left.
 *
 * @module
 */

/** The repository root: every process runs there. */
export const ROOT = new URL("../../", import.meta.url).pathname;
export const DENO = Deno.execPath();

// ---------------------------------------------------------------------------------------------------------
// Processes: every one is tracked and stopped in `finally`, children included (nginx workers).

export interface Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly log: string;
  exited: boolean;
  readonly status: Promise<Deno.CommandStatus>;
  /** Captured standard output, when asked for. */
  readonly stdout?: Promise<string>;
}

const procs: Proc[] = [];

export function spawn(
  name: string,
  cmd: string,
  args: string[],
  logDir: string,
  capture = false,
  env?: Record<string, string>,
): Proc {
  const log = `${logDir}/${name}.log`;
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const toLog = (stream: ReadableStream<Uint8Array>) =>
    Deno.open(log, { write: true, create: true, append: true })
      .then((file) => stream.pipeTo(file.writable))
      .catch(() => {});
  let stdout: Promise<string> | undefined;
  if (capture) stdout = new Response(child.stdout).text();
  else toLog(child.stdout);
  toLog(child.stderr);
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    log,
    exited: false,
    status: child.status.then((s) => {
      proc.exited = true;
      return s;
    }),
    stdout,
  };
  procs.push(proc);
  return proc;
}

/** Pids whose parent is `ppid` (e.g. nginx workers). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) out.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** SIGTERM, a grace period, then SIGKILL for the process and any children it left. */
export async function stop(proc: Proc, graceMs = 3_000): Promise<void> {
  const index = procs.indexOf(proc);
  if (index >= 0) procs.splice(index, 1);
  if (proc.exited) return;
  const children = childPids(proc.pid);
  try {
    proc.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const exited = await Promise.race([proc.status.then(() => true), sleep(graceMs).then(() => false)]);
  if (!exited) {
    try {
      proc.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await proc.status;
  }
  for (const pid of children) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // exited with its parent, as it should
    }
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...procs].reverse().map((p) => stop(p)));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `count` distinct free loopback ports: all are bound before any is let go, so two of them can never be the
 * same port (picked one at a time, a port just let go could come back: a CI run's herd stack once gave the
 * backend the proxy's admin port, and the backend's Stats call read "HTTP/1.1" as a message length).
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

export async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await Promise.resolve();
  return port;
}

export async function waitForPort(port: number, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc.exited) throw new Error(`${proc.name} exited before listening; see ${proc.log}`);
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${timeoutMs} ms; see ${proc.log}`);
}

/** Runs a process to completion with a hard time limit; resolves with its standard output. */
export async function runToEnd(name: string, cmd: string, args: string[], logDir: string, limitMs: number) {
  const proc = spawn(name, cmd, args, logDir, true);
  const timer = setTimeout(() => stop(proc, 500), limitMs);
  try {
    const [status, out] = await Promise.all([proc.status, proc.stdout!]);
    if (!status.success) {
      throw new Error(
        `${name} failed (exit ${status.code}${status.signal ? `, ${status.signal}` : ""}); see ${proc.log}\n${
          out.slice(-2000)
        }`,
      );
    }
    return out;
  } finally {
    clearTimeout(timer);
    const index = procs.indexOf(proc);
    if (index >= 0) procs.splice(index, 1);
  }
}

// ---------------------------------------------------------------------------------------------------------
// /proc: resident memory

export interface Memory {
  rssMb: number;
  hwmMb: number;
}

// ---------------------------------------------------------------------------------------------------------
// /proc: CPU used by processes this harness did not start (other work on the machine skews every number)

export interface CpuSnapshot {
  at: number;
  /** Busy jiffies of the whole machine. */
  busy: number;
  /** Jiffies of this process and everything it started, live or reaped. */
  ours: number;
}

export function cpuSnapshot(): CpuSnapshot {
  const at = performance.now();
  const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] ?? 0);
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // After the command: state ppid … utime(14) stime(15) cutime(16) cstime(17) → f[11..14].
      parent.set(Number(entry.name), Number(f[1]));
      ticks.set(Number(entry.name), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    } catch {
      // gone meanwhile
    }
  }
  let ours = 0;
  for (const [pid, t] of ticks) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) {
      if (p === Deno.pid) {
        ours += t;
        break;
      }
    }
  }
  return { at, busy, ours };
}

/** Share of the machine's CPU (all cores) that other processes used between two snapshots, in %. */
export function otherCpuPct(from: CpuSnapshot, to: CpuSnapshot): number {
  const ticksPerS = 100; // USER_HZ
  const capacity = ((to.at - from.at) / 1000) * ticksPerS * navigator.hardwareConcurrency;
  const other = Math.max(0, to.busy - from.busy - (to.ours - from.ours));
  return capacity > 0 ? Math.min(100, (100 * other) / capacity) : 0;
}

/**
 * Memory of a process and its descendants (a proxy run with `--workers` is a supervisor and its workers):
 * RSS summed now; the peak is the sum of each process's own peak (an upper bound on the tree's).
 */
export function memory(pid: number): Memory | undefined {
  const read = (p: number) => {
    try {
      const status = Deno.readTextFileSync(`/proc/${p}/status`);
      const kb = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
      return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
    } catch {
      return undefined;
    }
  };
  const own = read(pid);
  if (own === undefined) return undefined;
  for (const child of descendants(pid)) {
    const m = read(child);
    if (m !== undefined) {
      own.rssMb += m.rssMb;
      own.hwmMb += m.hwmMb;
    }
  }
  return own;
}

/**
 * CPU time used so far by a process and its live descendants (user + system), in ms: the difference over a
 * round, divided by its answers, is what one answer cost the target (workers, nginx's worker included).
 */
export function cpuMs(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      // gone meanwhile
    }
  }
  return ticks * 10; // USER_HZ = 100
}

/** Every descendant of `pid` (Linux /proc). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        children.set(ppid, [...(children.get(ppid) ?? []), Number(entry.name)]);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const visit = (p: number) => {
    for (const child of children.get(p) ?? []) {
      out.push(child);
      visit(child);
    }
  };
  visit(pid);
  return out;
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the next read is this run's peak. */
export function resetPeak(pid: number): void {
  for (const p of [pid, ...descendants(pid)]) {
    try {
      Deno.writeTextFileSync(`/proc/${p}/clear_refs`, "5");
    } catch {
      // not permitted: the peak then covers the process's whole life, still an upper bound
    }
  }
}

/** Waits (at most 30 s) until other processes use under 5% of the CPU for 2 s in a row. */
export async function waitForQuiet(): Promise<void> {
  const until = performance.now() + 30_000;
  let quiet = 0;
  while (performance.now() < until && quiet < 2) {
    const from = cpuSnapshot();
    await sleep(1_000);
    quiet = otherCpuPct(from, cpuSnapshot()) < 5 ? quiet + 1 : 0;
  }
}

/** Runs a command in the repository root; its standard output and error, trimmed ("" when it cannot run). */
export async function commandText(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, cwd: ROOT, stdout: "piped", stderr: "piped" }).output();
    return (new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)).trim();
  } catch {
    return "";
  }
}
