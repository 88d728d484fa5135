import assert from "node:assert/strict";
import { DRAIN_TURNS, fanOutStats, type Paced, paced, TURN_EVENTS } from "../src/server/fan_out.ts";
import { type ResponseEvent, statusEvent } from "../src/wire/response.ts";
import { Status } from "../src/wire/grpc_wire.ts";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const microtask = () => new Promise<void>((resolve) => queueMicrotask(resolve));

/** A call that writes what it may write at once, and logs every event it gets, at once or later. */
class Call implements Paced {
  readonly got: string[] = [];
  constructor(readonly log: string[], readonly name: string) {}
  deliver(event: ResponseEvent | undefined): void {
    const what = event === undefined ? "end" : event.type;
    this.got.push(what);
    this.log.push(`${this.name}:${what}`);
  }
  /** What a subscriber does: write now if paced() allows, else it is handed over later. */
  offer(event: ResponseEvent | undefined): void {
    if (paced(this, event)) this.deliver(event);
  }
}

const HEADERS: ResponseEvent = { type: "headers", headers: {} };
const MESSAGE: ResponseEvent = { type: "message", frame: new Uint8Array(5) };
const STATUS: ResponseEvent = statusEvent(Status.OK, "");

Deno.test("fan-out: one synchronous run writes TURN_EVENTS events; the rest leave TURN_EVENTS a turn, in order", async () => {
  await turn(); // nothing left from another test
  const log: string[] = [];
  const calls = Array.from({ length: TURN_EVENTS }, (_, i) => new Call(log, `c${i}`));
  const before = fanOutStats().waited;
  // A herd's answer: each event to every subscriber in turn, as a flight delivers it.
  for (const event of [HEADERS, MESSAGE, STATUS, undefined]) for (const call of calls) call.offer(event);
  assert.equal(log.length, TURN_EVENTS, "the headers to every call, then nothing more in this run");
  assert.ok(calls.every((c) => c.got.join() === "headers"));
  assert.equal(fanOutStats().waiting, 3 * TURN_EVENTS);
  assert.equal(fanOutStats().waited - before, 3 * TURN_EVENTS);

  await turn();
  assert.equal(log.length, 2 * TURN_EVENTS);
  assert.ok(calls.every((c) => c.got.join() === "headers,message"));
  await turn();
  await turn();
  assert.equal(fanOutStats().waiting, 0);
  for (const call of calls) assert.equal(call.got.join(), "headers,message,status,end");
  // One queue: what was offered first left first.
  assert.deepEqual(log.slice(2 * TURN_EVENTS, 2 * TURN_EVENTS + 2), ["c0:status", "c1:status"]);
  assert.deepEqual(log.slice(-2), [`c${TURN_EVENTS - 2}:end`, `c${TURN_EVENTS - 1}:end`]);
});

Deno.test("fan-out: the count starts again with each synchronous run, and an end costs nothing", async () => {
  await turn();
  const log: string[] = [];
  const call = new Call(log, "c");
  for (let i = 0; i < TURN_EVENTS - 1; i++) call.offer(MESSAGE);
  call.offer(undefined);
  call.offer(STATUS); // the last of this run's budget: the end before it was free
  call.offer(MESSAGE);
  assert.equal(log.length, TURN_EVENTS + 1);
  assert.equal(fanOutStats().waiting, 1);
  await microtask(); // a new run, but one event still waits: the next must wait behind it
  call.offer(STATUS);
  assert.equal(fanOutStats().waiting, 2);
  await turn();
  assert.deepEqual(log.slice(-2), ["c:message", "c:status"]);
  assert.equal(fanOutStats().waiting, 0);
  await microtask();
  for (let i = 0; i < TURN_EVENTS; i++) call.offer(MESSAGE);
  assert.equal(fanOutStats().waiting, 0, "a fresh run gets the whole budget");
});

Deno.test("fan-out: a call that throws on a waiting event does not keep the others from theirs", async () => {
  await turn();
  const log: string[] = [];
  const calls = Array.from({ length: TURN_EVENTS + 2 }, (_, i) => new Call(log, `c${i}`));
  const thrower: Paced = {
    deliver() {
      throw new Error("broken subscriber");
    },
  };
  for (const call of calls) call.offer(HEADERS);
  assert.equal(paced(thrower, HEADERS), false);
  for (const call of calls) call.offer(STATUS);
  await turn();
  await turn();
  assert.equal(fanOutStats().waiting, 0);
  for (const call of calls) assert.equal(call.got.join(), "headers,status");
});

Deno.test("fan-out: a long queue leaves at least a DRAIN_TURNS-th of itself a turn, so it never outgrows its drain", async () => {
  await turn();
  const log: string[] = [];
  const call = new Call(log, "c");
  const queued = 4 * DRAIN_TURNS * TURN_EVENTS; // long enough that a slice is more than TURN_EVENTS
  for (let i = 0; i < TURN_EVENTS + queued; i++) call.offer(MESSAGE);
  assert.equal(fanOutStats().waiting, queued);
  await turn();
  const first = Math.max(TURN_EVENTS, Math.ceil(queued / DRAIN_TURNS));
  assert.equal(log.length, TURN_EVENTS + first);
  await turn();
  const second = Math.max(TURN_EVENTS, Math.ceil((queued - first) / DRAIN_TURNS));
  assert.equal(log.length, TURN_EVENTS + first + second);
  while (fanOutStats().waiting > 0) await turn();
  assert.equal(log.length, TURN_EVENTS + queued);
});

Deno.test("fan-out: what is queued while a slice is handed out waits for the next turn (one drain, not two)", async () => {
  await turn();
  const log: string[] = [];
  const later = new Call(log, "later");
  const feeder: Paced = {
    deliver() {
      log.push("feeder");
      later.offer(MESSAGE); // queued behind the rest: two slices' worth in all
      later.offer(MESSAGE);
    },
  };
  for (let i = 0; i < TURN_EVENTS; i++) new Call(log, `c${i}`).offer(HEADERS);
  for (let i = 0; i < TURN_EVENTS; i++) assert.equal(paced(feeder, HEADERS), false);
  await turn();
  assert.equal(log.filter((l) => l === "feeder").length, TURN_EVENTS);
  assert.equal(log.filter((l) => l.startsWith("later")).length, 0, "nothing of the next slice in this turn");
  await turn();
  assert.equal(log.filter((l) => l.startsWith("later")).length, TURN_EVENTS, "one slice a turn");
  await turn();
  assert.equal(log.filter((l) => l.startsWith("later")).length, 2 * TURN_EVENTS);
  assert.equal(fanOutStats().waiting, 0);
});
