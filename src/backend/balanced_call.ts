/**
 * One call through the balancer: an attempt on the address the picker chose, and at most one more on
 * another address when the first one failed in a way that makes a second one safe:
 *
 * - **transparent**: the call never reached a backend — its connection could not be made, its stream was
 *   refused (REFUSED_STREAM), or a GOAWAY's last stream id excluded it. Any call may go again, as gRPC's
 *   transparent retry does (gRFC A6).
 * - **idempotent**: the call may have reached the backend and failed UNAVAILABLE before any of its answer
 *   was passed on. Only for methods declared idempotent or free of side effects, or named by a policy
 *   rule (`retryable`).
 *
 * Once response headers (or a message) have been passed on, the call is committed to its address, as in
 * gRPC. A retryable call of one request message holds its answer back until it is whole: the headers and
 * the first message until the status or a second message (a method declared server-streaming: the headers
 * until the first message). A backend killed mid-answer has then passed nothing on, and the call goes to
 * another address instead of failing: SIGKILL of a replica under load cut answers after their headers, and
 * after their message but before their trailers (tests/replicas_process_test.ts). A unary answer comes
 * in one burst, so holding it costs nothing; an undeclared stream's first message waits for its second.
 *
 * Every retry spends the retry budget's token first. A collapsed call is one backend call: retried here, it
 * is retried once for all its waiters.
 *
 * A passthrough stream keeps what its caller sent (up to `MAX_REPLAY_BYTES`) until the backend answers, so
 * that a transparent retry can send it again; streams are never retried once they may have reached one.
 *
 * @module
 */

import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import type {
  ResponseEvent,
  ResponseSink,
  StatusEvent,
  UpstreamCall,
  UpstreamStream,
} from "../wire/response.ts";
import type { Endpoint } from "./endpoint.ts";
import type { Unreached } from "./h2_channel.ts";

/** Why a call was sent again. */
export type RetryReason = "transparent" | "idempotent";

/** Most bytes of a passthrough stream's messages kept for a transparent retry: 64 KiB. */
export const MAX_REPLAY_BYTES = 64 * 1024;

/**
 * How grpc-js reports a call that never reached the backend: no connection to pick (its subchannel failed
 * to connect), or a stream refused (REFUSED_STREAM, which also ends streams past a GOAWAY's last id).
 */
const GRPC_JS_UNREACHED = /^(?:No connection established|Stream refused by server)/;

/** What a balanced call asks of the set of addresses (the Balancer). */
export interface BalancerHost {
  /** An address for a call; `exclude`: not this one (a retry). Undefined when there is none. */
  pick(exclude?: Endpoint): Endpoint | undefined;
  /** An attempt starts on `endpoint`; `first`: not a retry. */
  started(endpoint: Endpoint, first: boolean): void;
  /** An attempt on `endpoint` is over (answered, unreached or cancelled). */
  finished(endpoint: Endpoint): void;
  /** An attempt was answered with `code`. */
  answered(endpoint: Endpoint, code: StatusCode): void;
  /** An attempt never reached the backend at `endpoint`. */
  unreached(endpoint: Endpoint, why: Unreached): void;
  /** Whether a retry may be made (spends the budget). */
  retry(reason: RetryReason): boolean;
  /** The status of a call that has no address to go to. */
  noAddress(): StatusEvent;
}

/**
 * What of an answer a call holds back until it is whole, so that it can still be retried: nothing, its
 * headers (until a message), or its headers and first message (until the status or a second message).
 */
type Hold = "nothing" | "headers" | "answer";

/** Whether `event`, before the call is committed, is held back; `held`: what is held already. */
function holds(hold: Hold | undefined, event: ResponseEvent, held: ResponseEvent[] | undefined): boolean {
  if (hold === undefined || hold === "nothing") return false;
  if (event.type === "headers") return true;
  return hold === "answer" && event.type === "message" && !held?.some((e) => e.type === "message");
}

/** Starts one attempt on `endpoint`; `unreached` is the raw channel's hook (grpc-js has none). */
type StartAttempt<C extends UpstreamCall> = (
  endpoint: Endpoint,
  sink: ResponseSink,
  unreached: (why: Unreached) => boolean,
) => C;

/** What a grpc-js status says of a call that never reached the backend, if it says so. */
function grpcJsUnreached(status: StatusEvent): Unreached | undefined {
  if (status.code !== Status.UNAVAILABLE) return undefined;
  const match = GRPC_JS_UNREACHED.exec(status.details);
  return match === null ? undefined : match[0].startsWith("No") ? "connect" : "refused";
}

/**
 * Attempts of one call. `onAttempt` is told of each attempt once it has started (a stream replays what it
 * kept there); `replayable()` says whether a transparent retry can still be made.
 */
function attempts<C extends UpstreamCall>(
  host: BalancerHost,
  sink: ResponseSink,
  retryable: boolean,
  start: StartAttempt<C>,
  hooks: {
    onAttempt?: (call: C) => void;
    onCommit?: () => void;
    replayable?: () => boolean;
    /** What of the answer is held back until it is whole (see the module comment). @default {"nothing"} */
    hold?: Hold;
  } = {},
): { current: () => C | undefined; cancel: () => void } {
  let current: C | undefined;
  let endCurrent: (() => void) | undefined;
  let cancelled = false;
  let retried = false;
  const attempt = (endpoint: Endpoint, first: boolean) => {
    host.started(endpoint, first);
    let open = true;
    let committed = false;
    let unreachedSeen = false;
    let held: ResponseEvent[] | undefined;
    const commit = () => {
      committed = true;
      hooks.onCommit?.();
      if (held !== undefined) { for (const e of held.splice(0)) sink(e); }
    };
    const end = () => {
      if (!open) return;
      open = false;
      host.finished(endpoint);
    };
    endCurrent = end;
    const again = (reason: RetryReason): boolean => {
      if (retried || cancelled || (reason === "transparent" && hooks.replayable?.() === false)) return false;
      const next = host.pick(endpoint);
      if (next === undefined || !host.retry(reason)) return false;
      retried = true;
      attempt(next, false);
      return true;
    };
    const unreached = (why: Unreached): boolean => {
      end();
      unreachedSeen = true;
      host.unreached(endpoint, why);
      return again("transparent");
    };
    current = start(endpoint, (event) => {
      if (event.type !== "status") {
        if (!committed) {
          if (holds(hooks.hold, event, held)) return void (held ??= []).push(event);
          commit();
        }
        return sink(event);
      }
      end();
      if (!unreachedSeen && !committed) {
        const why = grpcJsUnreached(event);
        if (why !== undefined && unreached(why)) return;
      }
      if (!unreachedSeen) host.answered(endpoint, event.code);
      if (!committed && retryable && event.code === Status.UNAVAILABLE && again("idempotent")) return;
      if (!committed && held !== undefined) commit();
      sink(event);
    }, unreached);
    hooks.onAttempt?.(current);
  };
  const first = host.pick();
  if (first === undefined) {
    const status = host.noAddress();
    queueMicrotask(() => cancelled || sink(status));
  } else attempt(first, true);
  return {
    current: () => current,
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      endCurrent?.();
      current?.cancel();
    },
  };
}

/** A call of one request message over the balancer (the collapsed path's, or grpc-js's). */
export function balancedUnary(
  host: BalancerHost,
  sink: ResponseSink,
  retryable: boolean,
  start: StartAttempt<UpstreamCall>,
  streamsResponses = false,
): UpstreamCall {
  const hold: Hold = !retryable ? "nothing" : streamsResponses ? "headers" : "answer";
  return { cancel: attempts(host, sink, retryable, start, { hold }).cancel };
}

/** A passthrough stream over the balancer, retried only transparently (what it sent is replayed). */
export function balancedStream(
  host: BalancerHost,
  sink: ResponseSink,
  start: StartAttempt<UpstreamStream>,
): UpstreamStream {
  let kept: Uint8Array[] | undefined = [];
  let keptBytes = 0;
  let ended = false;
  let paused = false;
  let drains: (() => void)[] = [];
  const run = attempts(host, sink, false, start, {
    replayable: () => kept !== undefined,
    onCommit: () => kept = undefined,
    onAttempt: (call) => {
      if (kept === undefined) return;
      for (const message of kept) call.write(message);
      if (ended) call.end();
      if (paused) call.pause();
      // Writers waiting for the failed attempt to drain would wait forever: let them go on.
      const waiting = drains;
      drains = [];
      for (const listener of waiting) listener();
    },
  });
  const current = () => run.current();
  return {
    cancel: run.cancel,
    write: (message) => {
      if (kept !== undefined) {
        keptBytes += message.byteLength;
        if (keptBytes > MAX_REPLAY_BYTES) kept = undefined;
        else kept.push(message);
      }
      return current()?.write(message) ?? true;
    },
    end: () => {
      ended = true;
      current()?.end();
    },
    onDrain: (listener) => {
      const call = current();
      if (call === undefined) return listener();
      drains.push(listener);
      call.onDrain(() => {
        if (current() !== call) return;
        drains = drains.filter((l) => l !== listener);
        listener();
      });
    },
    pause: () => {
      paused = true;
      current()?.pause();
    },
    resume: () => {
      paused = false;
      current()?.resume();
    },
  };
}
