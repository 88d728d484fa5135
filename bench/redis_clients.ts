/**
 * Side-by-side comparison of the two maintained npm Redis clients for the proxy's Redis tier, under Deno:
 * `ioredis` (npm:ioredis@6.0.0) and `redis` (node-redis, npm:redis@6.3.1). Starts throw-away `redis-server`
 * instances (no persistence) on free loopback ports and kills them at the end.
 *
 * ```sh
 * deno task bench:redis-clients                                # full run, under a minute
 * deno task bench:redis-clients --iterations 1000 --concurrent 2000 --messages 500
 * ```
 *
 * Both clients run with the options a proxy would use (fail fast while disconnected, reconnect forever with
 * a backoff capped at 500 ms, subscriber resubscribes: printed under OPTIONS) and are measured on (1) round
 * trips, throughput and EVALSHA with Buffers, (2) pub/sub latency, (3) Redis down at start, (4) Redis
 * SIGKILLed under load and restarted after 1 s, (5) `DEBUG SLEEP 2` vs a 50 ms per-command timeout, (6) a
 * wrong password, (7) whatever escapes to the process (warnings, library output, unhandled errors), caught
 * and listed. Latencies alternate between the clients in rounds of one run, so they compare on a busy
 * machine. Every wait is bounded; a watchdog ends the run after 270 s.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { parseArgs } from "node:util";

const USAGE = "usage: deno task bench:redis-clients [--iterations N] [--concurrent N] [--messages N]";
const opt = (() => {
  try {
    const str = (d: string) => ({ type: "string" as const, default: d });
    const options = { iterations: str("5000"), concurrent: str("10000"), messages: str("2000") };
    const { values: v } = parseArgs({ options: { ...options, help: { type: "boolean" } } });
    if (v.help) console.log(USAGE), Deno.exit(0);
    const [n, conc, msgs] = [v.iterations, v.concurrent, v.messages].map(Number);
    if (![n, conc, msgs].every((x) => Number.isInteger(x) && x >= 10)) {
      throw new Error("counts: integers ≥ 10");
    }
    return { n, conc, msgs };
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    Deno.exit(1);
  }
})();

// ---- 7. whatever escapes: import warnings, the libraries' console output, unhandled errors ----------------
let phase = "import";
const notes = new Map<string, number>();
const note = (s: string) => notes.set(`[${phase}] ${s}`, (notes.get(`[${phase}] ${s}`) ?? 0) + 1);
addEventListener("unhandledrejection", (e) => (e.preventDefault(), note(`unhandled: ${describe(e.reason)}`)));
addEventListener("error", (e) => (e.preventDefault(), note(`uncaught exception: ${describe(e.error)}`)));
process.on("warning", (w) => note(`process warning: ${w.name}: ${w.message}`));
const stderr = console.error;
console.warn = console.error = (...a: unknown[]) => note(`console: ${a.map(describe).join(" ")}`);
const { Redis } = await import("ioredis");
const { createClient, RESP_TYPES } = await import("redis");

function describe(e: unknown): string {
  const m = (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)).replace(/\s+/g, " ");
  return m.length > 80 ? m.slice(0, 77) + "..." : m;
}
const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
class Hangs extends Error {}
type Settled = { ok: boolean; value?: unknown; err?: unknown; ms: number };
/** Awaits `p` for at most `ms`; never throws. */
async function settle(p: Promise<unknown>, ms = 5000): Promise<Settled> {
  const t = now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, no) =>
    timer = setTimeout(() => no(new Hangs(`no result within ${ms} ms`)), ms)
  );
  try {
    return { ok: true, value: await Promise.race([p, late]), ms: now() - t };
  } catch (err) {
    return { ok: false, err, ms: now() - t };
  } finally {
    clearTimeout(timer);
  }
}
async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, step = 5): Promise<number | null> {
  const t = now();
  while (now() - t < ms) {
    if (await cond()) return now() - t;
    await sleep(step);
  }
  return null;
}
const f0 = (x: number | null | undefined) => x == null ? "—" : x.toFixed(0);
const q = (xs: number[], p: number) => xs.toSorted((a, b) => a - b)[Math.floor(p * (xs.length - 1))];
const mp = (xs: number[]) => `${f0(q(xs, 0.5))} / ${f0(q(xs, 0.99))}`;
const text = (s: Settled) => s.ok ? `resolves (${f0(s.ms)} ms)` : `${describe(s.err)} (${f0(s.ms)} ms)`;

// ---- throw-away redis-server instances -------------------------------------------------------------------
const servers = new Set<Deno.ChildProcess>();
const LO = "127.0.0.1"; // loopback only
const freePort = () =>
  ((l) => (l.close(), (l.addr as Deno.NetAddr).port))(Deno.listen({ hostname: LO, port: 0 }));
const tcp = (port: number) => Deno.connect({ hostname: LO, port });
async function startServer(port: number, extra: string[] = []): Promise<Deno.ChildProcess> {
  const args = ["--port", `${port}`, "--bind", LO, "--save", "", "--appendonly", "no", ...extra];
  const proc = new Deno.Command("redis-server", { args, stdout: "null", stderr: "null" }).spawn();
  servers.add(proc);
  proc.status.then(() => servers.delete(proc));
  const up = await waitFor(async () => (await settle(tcp(port).then((c) => c.close()))).ok, 5000, 10);
  if (up === null) throw new Error(`redis-server on port ${port} did not start`);
  return proc;
}
async function stopServer(proc: Deno.ChildProcess, signal: Deno.Signal = "SIGTERM") {
  kill(proc, signal);
  await settle(proc.status, 3000);
}
async function done(srv: Deno.ChildProcess, ...conns: Conn[]) {
  conns.forEach((c) => c.close());
  await stopServer(srv);
}
const kill = (p: Deno.ChildProcess, sig: Deno.Signal) => servers.has(p) && p.kill(sig); // throws once reaped
const killAll = () => servers.forEach((p) => kill(p, "SIGKILL"));
const bye = () => (killAll(), Deno.exit(130));
for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, bye);
Deno.unrefTimer(setTimeout(() => (stderr("watchdog: run exceeded 270 s"), killAll(), Deno.exit(2)), 270_000));
/** PUBLISH over a fresh raw socket, so a subscriber's recovery is timed apart from the command client's. */
async function rawPublish(port: number, ch: string) {
  const c = await tcp(port);
  const cmd = ["PUBLISH", ch, "probe"].map((s) => `$${s.length}\r\n${s}\r\n`).join("");
  await c.write(new TextEncoder().encode(`*3\r\n${cmd}`)).then(() => c.read(new Uint8Array(64)))
    .finally(() => c.close());
}

// ---- the two clients behind one small interface -----------------------------------------------------------
interface Conn {
  errors: string[]; // one entry per 'error' event
  connect: Promise<unknown>;
  get(k: string): Promise<unknown>;
  getBuf(k: string): Promise<unknown>;
  set(k: string, v: Buffer): Promise<unknown>;
  evalBuf(sha: string, keys: string[], args: (Buffer | string)[]): Promise<unknown>;
  publish(ch: string, m: string): Promise<unknown>;
  raw(args: string[]): Promise<unknown>;
  subscribe(ch: string, cb: (m: Buffer) => void): Promise<unknown>;
  close(): void;
}
type ConnOpts = { password?: string; timeoutMs?: number; pipeline?: boolean; sub?: boolean; bare?: boolean };
type Lib = { name: string; conn(port: number, o?: ConnOpts): Conn };
const backoff = (n: number) => Math.min(50 * 2 ** n, 500);
function errorLog(em: { on(ev: "error", cb: (e: Error) => void): unknown }, o: ConnOpts) {
  const errors: string[] = [];
  if (!o.bare) em.on("error", (e) => errors.push(describe(e))); // bare: no 'error' listener at all
  return errors;
}

const ioOptions = (port: number, o: ConnOpts) => ({
  host: LO,
  port,
  password: o.password,
  lazyConnect: true, // connect() then hands back a promise, as node-redis does
  connectTimeout: 1000,
  enableOfflineQueue: !!o.sub, // commands fail at once while disconnected; a subscriber's SUBSCRIBE waits
  maxRetriesPerRequest: o.sub ? null : 0, // in-flight commands reject on connection loss, not resent
  retryStrategy: backoff, // reconnect forever, at most 500 ms apart
  commandTimeout: o.sub ? undefined : o.timeoutMs ?? 1000,
  enableAutoPipelining: o.pipeline ?? true,
});
function ioConn(port: number, o: ConnOpts = {}): Conn {
  const r = new Redis(ioOptions(port, o));
  // call()/callBuffer() drop the command name under enableAutoPipelining (redis/ioredis#1923), and
  // evalshaBuffer exists at run time but not in the 6.0.0 typings: use the generated methods.
  const gen = r as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  return {
    errors: errorLog(r, o),
    connect: r.connect(),
    get: (k) => r.get(k),
    getBuf: (k) => r.getBuffer(k),
    set: (k, v) => r.set(k, v, "PX", 1000),
    evalBuf: (sha, keys, args) => gen.evalshaBuffer(sha, keys.length, ...keys, ...args),
    publish: (ch, m) => r.publish(ch, m),
    raw: ([cmd, ...a]) => gen[cmd.toLowerCase()](...a),
    subscribe: (ch, cb) => (r.on("messageBuffer", (_c: Buffer, m: Buffer) => cb(m)), r.subscribe(ch)),
    close: () => r.disconnect(),
  };
}
const nrSock = (port: number) => ({ host: LO, port, connectTimeout: 1000, reconnectStrategy: backoff });
function nrConn(port: number, o: ConnOpts = {}): Conn {
  const c = createClient({
    socket: nrSock(port),
    password: o.password,
    disableOfflineQueue: !o.sub,
    commandOptions: { timeout: o.timeoutMs ?? 1000 }, // applies only while a command is unsent
  });
  const b = c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  return {
    errors: errorLog(c, o),
    connect: c.connect(),
    get: (k) => c.get(k),
    getBuf: (k) => b.get(k),
    set: (k, v) => c.set(k, v, { expiration: { type: "PX", value: 1000 } }),
    evalBuf: (sha, keys, args) => b.evalSha(sha, { keys, arguments: args }),
    publish: (ch, m) => c.publish(ch, m),
    raw: (args) => c.sendCommand(args),
    subscribe: (ch, cb) => c.subscribe(ch, (m: Buffer) => cb(m), true),
    close: () => c.destroy(),
  };
}
const libs: Lib[] = [{ name: "ioredis", conn: ioConn }, { name: "node-redis", conn: nrConn }];

// ---- the measurements -------------------------------------------------------------------------------------
const table = new Map<string, Record<string, string>>();
const put = (row: string, lib: string, v: string) => table.set(row, { ...table.get(row), [lib]: v });
const CH = "bench:chan";
const LUA = "local v=redis.call('GET',KEYS[1]) if v then return {1,v} end " +
  "if redis.call('SET',KEYS[2],ARGV[1],'NX','PX',ARGV[2]) then return {2} end return {3}";

/** `n` sequential ops per client after 200 warm-up ops, clients alternating in 5 rounds; µs samples. */
async function alternate(conns: Conn[], n: number, op: (c: Conn, j: number, i: number) => Promise<unknown>) {
  const us: number[][] = conns.map(() => []);
  for (const [j, c] of conns.entries()) for (let i = 0; i < 200; i++) await op(c, j, i);
  for (let k = 0; k < n * conns.length; k++) {
    const j = Math.floor(k / (n / 5)) % conns.length, t = now();
    await op(conns[j], j, k);
    us[j].push((now() - t) * 1000);
  }
  return us;
}

async function roundTrips() {
  phase = "1-2 round trips, pub/sub";
  const port = freePort();
  const srv = await startServer(port);
  const conns = libs.map((l) => l.conn(port));
  const subs = libs.map((l) => l.conn(port, { sub: true }));
  const plain = ioConn(port, { pipeline: false }); // for reference: ioredis without auto-pipelining
  await Promise.all([...conns, ...subs, plain].map((c) => settle(c.connect)));
  const lat = async (row: string, op: (c: Conn, j: number, i: number) => Promise<unknown>) => {
    const us = await alternate(conns, opt.n, op);
    libs.forEach((l, j) => put(row, l.name, mp(us[j])));
  };
  await lat("GET missing: median / p99 µs", (c) => c.get("missing"));
  const kib = Buffer.alloc(1024, "x");
  await lat("SET 1 KiB PX 1000: median / p99 µs", (c, _, i) => c.set(`k${i % 100}`, kib));
  const best = [0, 0, 0];
  for (let round = 0; round < 3; round++) {
    for (const [j, c] of [...conns, plain].entries()) {
      const t = now();
      await settle(Promise.all(Array.from({ length: opt.conc }, () => c.get("missing"))), 30_000);
      best[j] = Math.max(best[j], opt.conc / ((now() - t) / 1000));
    }
  }
  const row = `${opt.conc} concurrent GETs: ops/s, best of 3`;
  put(row, "ioredis", `${f0(best[0])} (no auto-pipelining: ${f0(best[2])})`);
  put(row, "node-redis", f0(best[1]));
  // EVALSHA with binary values: SET branch first ({2}), then the GET branch returns the bytes ({1, <bytes>}).
  const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
  const shas: string[] = [];
  for (const [j, c] of conns.entries()) {
    shas.push(String(await c.raw(["SCRIPT", "LOAD", LUA])));
    await c.raw(["DEL", `bin:${j}`]);
    const miss = await settle(c.evalBuf(shas[j], [`bin:${j}`, `bin:${j}`], [bin, "60000"]));
    const hit = (await settle(c.evalBuf(shas[j], [`bin:${j}`, `nx:${j}`], [bin, "60000"]))).value;
    const got = (await settle(c.getBuf(`bin:${j}`))).value;
    const okHit = Array.isArray(hit) && hit[0] === 1 && Buffer.isBuffer(hit[1]) && hit[1].equals(bin);
    const okGet = Buffer.isBuffer(got) && got.equals(bin);
    const reply = `${JSON.stringify(miss.value)} / [1, ${okHit ? "Buffer ✓" : "✗"}]`;
    put("EVALSHA reply: SET / GET branch", libs[j].name, reply);
    put("GET of binary value", libs[j].name, okGet ? "Buffer ✓" : `✗ ${describe(got)}`);
  }
  const ev = await alternate(conns, opt.n / 5, (c, j) => c.evalBuf(shas[j], ["bin:0", "x"], [bin, "1000"]));
  libs.forEach((l, j) => put("EVALSHA (GET branch, Buffer): median / p99 µs", l.name, mp(ev[j])));
  // 2. publish on the command connection, receive on the subscriber connection.
  const received = libs.map(() => () => {});
  for (const [j, s] of subs.entries()) await settle(s.subscribe(`${CH}:${j}`, () => received[j]()));
  const pub = await alternate(conns, opt.msgs, (c, j, i) => {
    const got = new Promise<void>((r) => received[j] = r);
    return settle(Promise.all([got, c.publish(`${CH}:${j}`, `${i}`)]), 1000);
  });
  libs.forEach((l, j) => put("publish→receive: median / p99 µs", l.name, mp(pub[j])));
  await done(srv, ...conns, ...subs, plain);
}

/** Times, from now, until a command succeeds and until the subscriber gets a message (in parallel). */
function recovery(c: Conn, port: number, gotMessage: () => boolean) {
  return Promise.all([
    waitFor(async () => (await settle(c.get("k"), 1000)).ok, 10_000),
    waitFor(async () => (await settle(rawPublish(port, CH), 1000), gotMessage()), 10_000, 20),
  ]);
}

async function downAtStart(lib: Lib) {
  phase = `3 down at start (${lib.name})`;
  const port = freePort(), t0 = now();
  const c = lib.conn(port); // a throw here would end the run as a "bench error" below
  put("down: create client", lib.name, "returns (no throw)");
  const connected = settle(c.connect, 15_000);
  const sub = lib.conn(port, { sub: true });
  const subConnected = settle(sub.connect, 15_000);
  let got = 0;
  const subscribed = settle(sub.subscribe(CH, () => got++), 15_000);
  await sleep(200);
  put("down: GET fails after", lib.name, text(await settle(c.get("k"))));
  await sleep(1800);
  const rate = (c.errors.length / ((now() - t0) / 1000)).toFixed(1);
  put("down: 'error' events/s", lib.name, `${rate}: ${c.errors[0]}`);
  const srv = await startServer(port);
  const tUp = now();
  const [cmdMs, subMs] = await recovery(c, port, () => got > 0);
  put("down→up: GET ok / sub gets msg after, ms", lib.name, `${f0(cmdMs)} / ${f0(subMs)}`);
  const at = (s: Settled) => s.ok ? `resolves ${f0(t0 + s.ms - tUp)} ms after Redis is up` : text(s);
  const [cs, ss, sb] = await Promise.all([connected, subConnected, subscribed]);
  put("down: connect() (cmd / sub)", lib.name, `${at(cs)}; sub ${at(ss)}`);
  put("down: SUBSCRIBE issued while down", lib.name, at(sb));
  await done(srv, c, sub);
}

async function killedMidRun(lib: Lib) {
  phase = `4 killed mid-run (${lib.name})`;
  const port = freePort();
  let srv = await startServer(port);
  const c = lib.conn(port), sub = lib.conn(port, { sub: true }), bare = lib.conn(port, { bare: true });
  await Promise.all([c, sub, bare].map((x) => settle(x.connect)));
  let got = 0, stop = false, tRestart = Infinity, okAfter: number | null = null;
  await settle(sub.subscribe(CH, () => got++));
  const inflight = new Set<Promise<unknown>>();
  const workers = Array.from({ length: 16 }, async () => {
    while (!stop) {
      const p = c.get("k");
      inflight.add(p);
      const r = await settle(p);
      inflight.delete(p);
      if (r.ok && okAfter === null && now() > tRestart) okAfter = now() - tRestart;
      if (!r.ok) await sleep(5);
    }
  });
  await sleep(300);
  kill(srv, "SIGSTOP"); // freeze it for 50 ms first, so that commands are truly unanswered when it dies
  await sleep(50);
  const snap = [...inflight], errs0 = c.errors.length, tKill = now();
  await stopServer(srv, "SIGKILL");
  const rej = (await Promise.all(snap.map((p) => settle(p, 3000).then((r) => ({ ...r, ms: now() - tKill })))))
    .filter((r) => !r.ok);
  const slowest = f0(Math.max(0, ...rej.map((r) => r.ms)));
  const first = describe(rej[0]?.err);
  put(
    "killed: in-flight → rejected, within",
    lib.name,
    `${snap.length} → ${rej.length}, ${slowest} ms: ${first}`,
  );
  await sleep(Math.max(0, 1000 - (now() - tKill)));
  put("killed: 'error' events in 1 s outage", lib.name, `${c.errors.length - errs0}`);
  got = 0;
  srv = await startServer(port);
  tRestart = now();
  const [, subMs] = await recovery(c, port, () => got > 0);
  await waitFor(() => okAfter !== null, 5000);
  put("restarted: GET ok / sub gets msg after, ms", lib.name, `${f0(okAfter)} / ${f0(subMs)}`);
  put("restarted: GET on a client w/o 'error' listener", lib.name, text(await settle(bare.get("k"), 2000)));
  stop = true;
  await settle(Promise.all(workers));
  await done(srv, c, sub, bare);
}

async function slowRedis(lib: Lib) {
  phase = `5 slow Redis (${lib.name})`;
  const port = freePort();
  const srv = await startServer(port, ["--enable-debug-command", "yes"]);
  const c = lib.conn(port, { timeoutMs: 50 }), other = lib.conn(port, { timeoutMs: 5000 });
  await Promise.all([settle(c.connect), settle(other.connect)]);
  await other.raw(["SET", "k5", "v5"]);
  const sleeping = settle(other.raw(["DEBUG", "SLEEP", "2"]), 5000);
  await sleep(50);
  const race = (p: Promise<unknown>) =>
    Promise.race([p, sleep(50).then(() => Promise.reject(new Error("race")))]);
  const [own, raced] = await Promise.all([settle(c.get("k5")), settle(race(c.get("k5")))]);
  put("DEBUG SLEEP 2: GET, own 50 ms timeout", lib.name, text(own));
  put("DEBUG SLEEP 2: GET, Promise.race 50 ms", lib.name, text(raced));
  await sleeping;
  const after = await settle(c.get("k5"));
  put("after the sleep: GET k5, same conn", lib.name, after.ok ? `${after.value} (usable)` : text(after));
  await done(srv, c, other);
}

async function wrongPassword(lib: Lib) {
  phase = `6 wrong password (${lib.name})`;
  const port = freePort();
  const srv = await startServer(port, ["--requirepass", "secret"]);
  const c = lib.conn(port, { password: "wrong" }), t0 = now();
  put("wrong password: connect()", lib.name, text(await settle(c.connect, 2000)));
  put("wrong password: GET", lib.name, text(await settle(c.get("k"))));
  await sleep(Math.max(0, 3000 - (now() - t0)));
  put("wrong password: 'error' events/s", lib.name, `${(c.errors.length / 3).toFixed(1)}: ${c.errors[0]}`);
  const bare = lib.conn(port, { password: "wrong", bare: true });
  put("wrong password, no 'error' listener: connect()", lib.name, text(await settle(bare.connect, 2000)));
  await sleep(500);
  await done(srv, c, bare);
}

try {
  await roundTrips();
  for (const lib of libs) {
    await downAtStart(lib);
    await killedMidRun(lib);
    await slowRedis(lib);
    await wrongPassword(lib);
  }
} catch (e) {
  note(`bench error: ${describe(e)}`);
} finally {
  killAll();
  await settle(Promise.all([...servers].map((p) => p.status)), 3000);
}

const cols = [
  [...table.keys()],
  ...libs.map((l) => [l.name, ...[...table.values()].map((r) => r[l.name] ?? "")]),
];
const w = cols.map((col) => Math.max(...col.map((s) => s.length)));
const line = (c: string[]) => c.map((s, i) => s.padEnd(w[i])).join(" │ ");
console.log(`\nDeno ${Deno.version.deno}; n=${opt.n}, concurrent=${opt.conc}, messages=${opt.msgs}\n`);
console.log(`${line(["", ...libs.map((l) => l.name)])}\n${line(w.map(() => "")).replace(/[^│]/g, "─")}`);
for (const [k, r] of table) console.log(line([k, ...libs.map((l) => r[l.name] ?? "—")]));
const json = (o: object) => JSON.stringify({ ...o, port: undefined });
const strategy = "n => min(50·2^n, 500)";
console.log(`\nOPTIONS ioredis ${json(ioOptions(0, {}))} + retryStrategy: ${strategy}`);
console.log("  subscriber: same but enableOfflineQueue true, maxRetriesPerRequest null, no commandTimeout");
console.log(`OPTIONS node-redis {socket: ${json(nrSock(0))} + reconnectStrategy: ${strategy},`);
console.log(
  "  disableOfflineQueue: true, commandOptions: {timeout: 1000}}; subscriber: disableOfflineQueue false",
);
console.log(`\nEscaped to the process (warnings, library output, unhandled errors): ${notes.size || "none"}`);
for (const [k, n] of notes) console.log(`  ${n > 1 ? `${n}× ` : ""}${k}`);
Deno.exit(0);
