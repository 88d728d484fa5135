/**
 * balancedUnary()'s attempts on their own: what a retryable call holds back of an answer until it is whole,
 * so that a backend that dies mid-answer is retried on another address and its caller sees one answer. The
 * attempts are driven event by event here; tests/balancer_test.ts and tests/replicas_process_test.ts run
 * the same through real backends.
 */

import assert from "node:assert/strict";
import { balancedUnary, type BalancerHost, type RetryReason } from "../src/backend/balanced_call.ts";
import type { Endpoint } from "../src/backend/endpoint.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import { type ResponseEvent, type ResponseSink, statusEvent } from "../src/wire/response.ts";

/** Two addresses, a budget that always allows a retry, and each attempt's sink in order. */
function twoAddresses() {
  const endpoints = [{ name: "a" }, { name: "b" }] as unknown as Endpoint[];
  const attempts: { endpoint: Endpoint; sink: ResponseSink }[] = [];
  const retries: RetryReason[] = [];
  const host: BalancerHost = {
    pick: (exclude) => endpoints.find((e) => e !== exclude),
    started: () => {},
    finished: () => {},
    answered: () => {},
    unreached: () => {},
    retry: (reason) => (retries.push(reason), true),
    noAddress: () => statusEvent(Status.UNAVAILABLE, "none"),
  };
  const seen: ResponseEvent[] = [];
  const call = (retryable: boolean, streamsResponses = false) =>
    balancedUnary(host, (e) => seen.push(e), retryable, (endpoint, sink) => {
      attempts.push({ endpoint, sink });
      return { cancel: () => {} };
    }, streamsResponses);
  return { endpoints, attempts, retries, seen, call };
}

const headers = (from: string): ResponseEvent => ({ type: "headers", headers: { "x-from": from } });
const message = (byte: number): ResponseEvent => ({ type: "message", frame: new Uint8Array([byte]) });
const ok = statusEvent(Status.OK, "");
const broken = statusEvent(Status.UNAVAILABLE, "backend unreachable: read ECONNRESET");

/** What the caller saw, shortly: `h:a`, `m:1`, `s:14`. */
function shown(events: ResponseEvent[]): string[] {
  return events.map((e) =>
    e.type === "headers"
      ? `h:${e.headers["x-from"]}`
      : e.type === "message"
      ? `m:${e.frame[0]}`
      : e.type === "status"
      ? `s:${e.code}`
      : e.type
  );
}

Deno.test("balancedUnary, retryable: headers and a message cut off before the status are retried on the other address, and the caller sees one answer", () => {
  const t = twoAddresses();
  t.call(true);
  const first = t.attempts[0];
  first.sink(headers("a"));
  first.sink(message(1));
  assert.deepEqual(t.seen, [], "nothing passed on while the answer is not whole");
  first.sink(broken);
  assert.deepEqual(t.retries, ["idempotent"]);
  assert.equal(t.attempts.length, 2);
  assert.notEqual(t.attempts[1].endpoint, first.endpoint, "another address");
  t.attempts[1].sink(headers("b"));
  t.attempts[1].sink(message(2));
  t.attempts[1].sink(ok);
  assert.deepEqual(shown(t.seen), ["h:b", "m:2", "s:0"]);
});

Deno.test("balancedUnary, retryable: a whole answer is passed on in order once its status comes", () => {
  const t = twoAddresses();
  t.call(true);
  const [first] = t.attempts;
  first.sink(headers("a"));
  first.sink(message(1));
  first.sink(ok);
  assert.deepEqual(shown(t.seen), ["h:a", "m:1", "s:0"]);
  assert.deepEqual(t.retries, []);
});

Deno.test("balancedUnary, retryable: a second message shows a stream; it is passed on and no longer retried", () => {
  const t = twoAddresses();
  t.call(true);
  const [first] = t.attempts;
  first.sink(headers("a"));
  first.sink(message(1));
  assert.deepEqual(t.seen, []);
  first.sink(message(2));
  assert.deepEqual(shown(t.seen), ["h:a", "m:1", "m:2"]);
  first.sink(broken);
  assert.deepEqual(shown(t.seen), ["h:a", "m:1", "m:2", "s:14"]);
  assert.deepEqual(t.retries, [], "committed: the caller has part of the answer");
});

Deno.test("balancedUnary, retryable and declared server-streaming: only the headers wait, the first message goes at once", () => {
  const t = twoAddresses();
  t.call(true, true);
  const [first] = t.attempts;
  first.sink(headers("a"));
  assert.deepEqual(t.seen, []);
  first.sink(message(1));
  assert.deepEqual(shown(t.seen), ["h:a", "m:1"]);
  first.sink(broken);
  assert.deepEqual(t.retries, []);
  assert.deepEqual(shown(t.seen), ["h:a", "m:1", "s:14"]);
});

Deno.test("balancedUnary, retryable and declared server-streaming: headers cut off before a message are retried", () => {
  const t = twoAddresses();
  t.call(true, true);
  t.attempts[0].sink(headers("a"));
  t.attempts[0].sink(broken);
  assert.deepEqual(t.retries, ["idempotent"]);
  t.attempts[1].sink(headers("b"));
  t.attempts[1].sink(message(2));
  t.attempts[1].sink(ok);
  assert.deepEqual(shown(t.seen), ["h:b", "m:2", "s:0"]);
});

Deno.test("balancedUnary, not retryable: nothing is held back, and a failure after the headers reaches the caller", () => {
  const t = twoAddresses();
  t.call(false);
  const [first] = t.attempts;
  first.sink(headers("a"));
  assert.deepEqual(shown(t.seen), ["h:a"]);
  first.sink(message(1));
  first.sink(broken);
  assert.deepEqual(shown(t.seen), ["h:a", "m:1", "s:14"]);
  assert.deepEqual(t.retries, []);
  assert.equal(t.attempts.length, 1);
});

Deno.test("balancedUnary, retryable: an error status after held headers (trailers) passes the headers on before it", () => {
  const t = twoAddresses();
  t.call(true);
  t.attempts[0].sink(headers("a"));
  t.attempts[0].sink(statusEvent(Status.NOT_FOUND, "no such key"));
  assert.deepEqual(shown(t.seen), ["h:a", "s:5"]);
  assert.deepEqual(t.retries, []);
});
