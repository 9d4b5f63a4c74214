// deno-lint-ignore-file no-import-prefix
/**
 * A fix for a kafkajs 2.2.4 bug that keeps an idle (or paused) consumer busy.
 *
 * `RequestQueue.scheduleCheckPendingRequests` (src/network/requestQueue/index.js) runs
 * after every response. With nothing pending and no throttling it computes
 * `throttledUntil - Date.now()` = `-1 - now`, a large negative delay, and calls
 * `setTimeout` with it; the runtime clamps it to 1 ms (Deno and Node print
 * "TimeoutNegativeWarning"), and the callback schedules itself again. Every broker
 * connection therefore wakes the process about 1000 times a second for as long as it is
 * open: measured here as 3–6% of a core for a consumer paused by backpressure, against
 * Sluice's budget of < 1%.
 *
 * The patch only skips scheduling when no request is pending: nothing is waiting to be
 * sent, and `push()` schedules a check itself whenever it queues a request. Throttled or
 * over-limit queues behave as before. It is applied once, when the Kafka backend is
 * imported, to the kafkajs instance the backend uses.
 *
 * @module
 */
// kafkajs ships no types for its internals.
// deno-lint-ignore no-explicit-any
type AnyQueue = any;
// The import map maps only the bare "kafkajs"; this is the same pinned version (same
// module instance, no lock change), hence the file-wide no-import-prefix exception.
// @ts-ignore: internal kafkajs module without type declarations
import RequestQueueModule from "npm:kafkajs@2.2.4/src/network/requestQueue/index.js";

const RequestQueue = RequestQueueModule as AnyQueue;
const PATCHED = Symbol.for("sluice.kafkajs.requestQueuePatched");

/** True when the patch is in place (for tests). */
export function kafkajsPatched(): boolean {
  return RequestQueue?.prototype?.[PATCHED] === true;
}

const proto = RequestQueue?.prototype;
if (proto && typeof proto.scheduleCheckPendingRequests === "function" && !proto[PATCHED]) {
  const original = proto.scheduleCheckPendingRequests;
  proto.scheduleCheckPendingRequests = function (this: AnyQueue): void {
    if (!Array.isArray(this.pending) || this.pending.length === 0) return;
    return original.call(this);
  };
  proto[PATCHED] = true;
}
