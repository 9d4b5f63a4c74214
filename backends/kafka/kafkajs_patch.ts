// deno-lint-ignore-file no-import-prefix
/**
 * Fixes for kafkajs 2.2.4, applied once when the Kafka backend is imported, to the kafkajs
 * instance the backend uses. None changes what kafkajs sends, receives or returns.
 *
 * **An idle connection that never sleeps.** `RequestQueue.scheduleCheckPendingRequests`
 * (src/network/requestQueue/index.js) runs after every response. With nothing pending and
 * no throttling it computes `throttledUntil - Date.now()` = `-1 - now`, a large negative
 * delay, and calls `setTimeout` with it; the runtime clamps it to 1 ms (Deno and Node
 * print "TimeoutNegativeWarning"), and the callback schedules itself again. Every broker
 * connection therefore wakes the process about 1000 times a second for as long as it is
 * open: measured here as 3–6% of a core for a consumer paused by backpressure, against
 * Sluice's budget of < 1%. The fix skips scheduling when no request is pending: nothing
 * is waiting to be sent, and `push()` schedules a check itself whenever it queues a
 * request. Throttled or over-limit queues behave as before.
 *
 * **Record decoding spent a quarter of the CPU on 64-bit arithmetic.** kafkajs's `Long` is
 * a `BigInt` wrapper, and decoding one record (src/protocol/recordBatch/record/v0) parses
 * the batch's first offset and first timestamp from decimal strings again
 * (`Long.fromValue(string)`), and reads the timestamp delta with `readVarLong`, which
 * builds it from about ten `BigInt` operations. A CPU profile of a consumer reading 100-byte
 * records put those at ~25% of the process's time. Two fast paths, same results:
 * - `Long.fromValue(string)` remembers the last two strings it parsed and returns the same
 *   `Long` for them (a `Long` is immutable: no method changes its `value`), so a batch's
 *   first offset and first timestamp are parsed once per batch instead of once per record;
 * - `Decoder.readVarLong` decodes varlongs of up to 7 bytes (|value| < 2^48, which covers
 *   timestamp and offset deltas) with exact `Number` arithmetic and returns
 *   `Long.fromNumber` of the result; longer or truncated input goes to the original;
 * - `Long#toString` remembers its last two results, so the records of a batch that share a
 *   timestamp share its text (converted once) instead of converting it per record.
 *
 * **Three Longs, a `BigInt` parse and a stack trace per record left (issue 20).** A profile
 * of Sluice reading 1.5 M records with 512 KiB fetches still put ~15% of its busy time in
 * `Long` (`fromNumber`, `fromString`, `toString`) and ~6% in GC. Three more fast paths, same
 * results (tests/backends/kafka/kafkajs_patch_test.ts compares each with kafkajs's own code):
 * - `Batch` (src/consumer/batch.js, line 23) drops records before the fetched offset with
 *   `Long.fromValue(message.offset).gte(longFetchedOffset)`: a `BigInt` parsed from every
 *   record's offset text. `Long.fromValue` of a canonical non-negative decimal text (digits,
 *   no leading zero: what `Long#toString` of an offset gives) now returns a `Long` that
 *   keeps the text and parses it only when its `value` is first read; its `toString` is the
 *   text, and `gte` between two such `Long`s compares the texts (the longer is larger,
 *   equal lengths compare character by character), which for canonical decimals is exactly
 *   the `BigInt` comparison. It is a `Long` (`instanceof`, every method, `Long.isLong`) whose
 *   `value` is a getter; any other text goes to kafkajs's own parse;
 * - `Long#add(number)` (the record decoder's `add(offsetDelta)`) adds `BigInt(number)`
 *   directly instead of wrapping the number in a `Long` first (kafkajs's `fromNumber` does
 *   the same `BigInt(number)` for any integer; other addends go to the original);
 * - the varlong fast path returns one shared `Long` per value for 0 ≤ value < 4096 (record
 *   timestamp deltas), made on first use, instead of a new one per record.
 *
 * **Record decoding itself** (issue 20, second pass): kafkajs's Fetch v11 response decoder
 * is replaced by Sluice's own, which reads the same bytes into the same objects without a
 * `Decoder`, `Long`s or an exception per response, and gives Sluice's own consumers one
 * lazily decoded run per record batch (`_fetch_decoder.ts`, imported here). The fast paths
 * above still serve kafkajs's decoder where Sluice's hands a batch back to it.
 *
 * @module
 */
import "./_fetch_decoder.ts";
// kafkajs ships no types for its internals.
// deno-lint-ignore no-explicit-any
type AnyQueue = any;
// The import map maps only the bare "kafkajs"; this is the same pinned version (same
// module instance, no lock change), hence the file-wide no-import-prefix exception.
// @ts-ignore: internal kafkajs module without type declarations
import RequestQueueModule from "npm:kafkajs@2.2.4/src/network/requestQueue/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import LongModule from "npm:kafkajs@2.2.4/src/utils/long.js";
// @ts-ignore: internal kafkajs module without type declarations
import DecoderModule from "npm:kafkajs@2.2.4/src/protocol/decoder.js";

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
  // See "A request-timeout timer that outlives its connection" and "A timeout check that
  // ticks only while a request is in flight" below.
  const scheduleTimeoutCheck = proto.scheduleRequestTimeoutCheck;
  const destroy = proto.destroy;
  if (typeof scheduleTimeoutCheck === "function" && typeof destroy === "function") {
    proto.scheduleRequestTimeoutCheck = function (this: AnyQueue): void {
      if (!this.enforceRequestTimeout || !(this.inflight instanceof Map)) {
        scheduleTimeoutCheck.call(this);
        this.requestTimeoutIntervalId?.unref?.();
        return;
      }
      this.destroy(); // as kafkajs does: the previous interval and throttle timer go
      this[CHECK_WANTED] = true;
      watchInflight(this);
      if (this.inflight.size > 0) startTimeoutCheck(this);
    };
    proto.destroy = function (this: AnyQueue): void {
      this[CHECK_WANTED] = false;
      this[CHECK_TICKING] = false;
      destroy.call(this);
      this.requestTimeoutIntervalId = null;
    };
  }
  proto[PATCHED] = true;
}

/*
 * **A request-timeout timer that outlives its connection.** On connect,
 * `RequestQueue.scheduleRequestTimeoutCheck` (src/network/requestQueue/index.js, line 91)
 * starts a 100 ms `setInterval` that is cleared only by `destroy()` (the connection's
 * `disconnect()`) or once the connection no longer reports itself connected. After a
 * broker restart kafkajs drops brokers from its pool (`removeBroker` on a closed
 * connection) without disconnecting their other connections, so `disconnect()` of the
 * client never reaches them: their interval ran for ever and the process never ended
 * after `run()` returned. The fix unrefs the interval: it only enforces timeouts of
 * requests in flight, and a request in flight keeps the process alive through its socket
 * anyway. (Sluice's clients also close any socket kafkajs left open at teardown.)
 */

/*
 * **A timeout check that ticks only while a request is in flight.** kafkajs's check is a
 * `setInterval` of `min(requestTimeout, 100)` ms per connection, from connect to
 * disconnect, whether or not anything was sent: a consumer that is paused (fully
 * backpressured) and sends nothing still woke ~30 times a second on its three connections,
 * most of its CPU while paused (bench/README.md, "CPU while paused"). Here the interval is
 * started when a request goes in flight (the `inflight` map gains an entry) and stopped as
 * soon as the last request in flight is answered or timed out (the map becomes empty: a
 * paused consumer's heartbeat or lag refresh then costs no extra tick 100 ms later; its
 * first tick finding the map empty would stop it too). While it runs it does what
 * kafkajs's does: time out requests past their `requestTimeout`, and stop for good once
 * the connection no longer reports itself connected. A request still times out within one
 * tick of its deadline, as before. `destroy()` (disconnect) stops it, as before.
 */
const CHECK_WANTED = Symbol("sluice.timeoutCheckWanted");
const CHECK_TICKING = Symbol("sluice.timeoutCheckTicking");
const INFLIGHT_WATCHED = Symbol("sluice.inflightWatched");

function watchInflight(queue: AnyQueue): void {
  const inflight = queue.inflight as Map<unknown, unknown> & { [INFLIGHT_WATCHED]?: true };
  if (inflight[INFLIGHT_WATCHED]) return;
  inflight[INFLIGHT_WATCHED] = true;
  const set = inflight.set;
  inflight.set = function (key: unknown, value: unknown) {
    set.call(inflight, key, value);
    if (queue[CHECK_WANTED] && !queue[CHECK_TICKING]) startTimeoutCheck(queue);
    return inflight;
  };
  const remove = inflight.delete;
  inflight.delete = function (key: unknown): boolean {
    const removed = remove.call(inflight, key);
    if (inflight.size === 0 && queue[CHECK_TICKING]) stopTimeoutCheck(queue);
    return removed;
  };
}

/** Stops the check that is ticking (`requestTimeoutIntervalId` is its interval). */
function stopTimeoutCheck(queue: AnyQueue): void {
  clearInterval(queue.requestTimeoutIntervalId);
  queue.requestTimeoutIntervalId = null;
  queue[CHECK_TICKING] = false;
}

function startTimeoutCheck(queue: AnyQueue): void {
  queue[CHECK_TICKING] = true;
  const id = setInterval(() => {
    const inflight = queue.inflight as Map<unknown, AnyQueue>;
    const now = Date.now();
    for (const request of inflight.values()) {
      if (now - request.sentAt > request.requestTimeout) request.timeoutRequest();
    }
    if (!queue.isConnected()) {
      queue.destroy();
    } else if (inflight.size === 0) {
      clearInterval(id);
      if (queue.requestTimeoutIntervalId === id) queue.requestTimeoutIntervalId = null;
      queue[CHECK_TICKING] = false;
    }
  }, Math.min(queue.requestTimeout, 100));
  (id as { unref?: () => void }).unref?.();
  queue.requestTimeoutIntervalId = id;
}

// deno-lint-ignore no-explicit-any
const Long = LongModule as any;

/**
/** Shared `Long`s for the small values `readVarLong` returns most (see the module doc). */
const SMALL_LONGS = 4096;
const smallLongs: unknown[] = [];

/** True for "0" and digit strings without a leading zero: the texts `String(bigint)` gives for n ≥ 0. */
function naturalText(text: string): boolean {
  const n = text.length;
  if (n === 0) return false;
  const first = text.charCodeAt(0);
  if (first === 48) return n === 1;
  if (first < 49 || first > 57) return false;
  for (let i = 1; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * Wraps `compute` so that the results for the last two keys are returned again without
 * computing (most recent first). For pure computations on immutable results only.
 */
function lastTwo<K, A, R>(compute: (arg: A) => R): (key: K, arg: A) => R {
  let key1: K | undefined;
  let result1: R | undefined;
  let key2: K | undefined;
  let result2: R | undefined;
  return (key, arg) => {
    if (key === key1) return result1!;
    if (key !== key2) {
      const result = compute(arg);
      key2 = key1;
      result2 = result1;
      key1 = key;
      result1 = result;
      return result;
    }
    key2 = key1;
    key1 = key;
    const result = result2!;
    result2 = result1;
    result1 = result;
    return result;
  };
}
// deno-lint-ignore no-explicit-any
const Decoder = DecoderModule as any;
const DECODE_PATCHED = Symbol.for("sluice.kafkajs.decodePatched");

/** True when the record-decoding fast paths are in place (for tests). */
export function kafkajsDecodePatched(): boolean {
  return Long?.[DECODE_PATCHED] === true;
}

/** @internal kafkajs's own `Long.fromValue`, `Long#toString` and `Decoder#readVarLong`, for tests. */
export const kafkajsOriginals: {
  fromValue?: (value: unknown) => unknown;
  readVarLong?: () => unknown;
  toString?: (long: unknown) => string;
  add?: (long: unknown, addend: unknown) => unknown;
  gte?: (long: unknown, other: unknown) => boolean;
} = {};

if (
  typeof Long?.fromValue === "function" && typeof Long.fromNumber === "function" &&
  typeof Decoder?.prototype?.readVarLong === "function" &&
  typeof Long.prototype?.add === "function" && !Long[DECODE_PATCHED]
) {
  const fromValue = Long.fromValue;
  // A Long of a natural number's canonical text, parsed on first use (see the module doc).
  type TextLong = { text: string; parsed: bigint | undefined; value: bigint };
  const TextLong = function (this: TextLong, text: string) {
    this.text = text;
    this.parsed = undefined;
  } as unknown as { new (text: string): TextLong; prototype: TextLong };
  TextLong.prototype = Object.create(Long.prototype, {
    constructor: { value: Long, writable: true, configurable: true },
    value: {
      get(this: TextLong): bigint {
        return this.parsed ??= BigInt(this.text);
      },
      configurable: true,
    },
    toString: {
      value: function (this: TextLong): string {
        return this.text;
      },
      writable: true,
      configurable: true,
    },
  });
  // A record's decoding asks for the batch's first timestamp, then its first offset.
  const parse = lastTwo((text: string) =>
    naturalText(text) ? new TextLong(text) : fromValue.call(Long, text)
  );
  Long.fromValue = function (this: unknown, value: unknown): unknown {
    return typeof value === "string" ? parse(value, value) : fromValue.call(this, value);
  };
  const gte = Long.prototype.gte;
  Long.prototype.gte = function (this: unknown, other: unknown): boolean {
    if (this instanceof TextLong && other instanceof TextLong) {
      const a = this.text;
      const b = other.text;
      return a.length === b.length ? a >= b : a.length > b.length;
    }
    return gte.call(this, other);
  };
  const add = Long.prototype.add;
  Long.prototype.add = function (this: { value: bigint }, addend: unknown): unknown {
    return typeof addend === "number" && Number.isInteger(addend)
      ? new Long(this.value + BigInt(addend))
      : add.call(this, addend);
  };
  /** `Long.fromNumber(n)`, shared for small `n` (a `Long` never changes). */
  const longOf = (n: number): unknown =>
    n >= 0 && n < SMALL_LONGS ? (smallLongs[n] ??= Long.fromNumber(n)) : Long.fromNumber(n);
  const readVarLong = Decoder.prototype.readVarLong;
  // deno-lint-ignore no-explicit-any
  Decoder.prototype.readVarLong = function (this: any): unknown {
    const buffer = this.buffer;
    let offset = this.offset;
    let zigzag = 0;
    let scale = 1;
    // 7 bytes carry 49 bits: the zigzag value and its decoding stay exact in a double.
    for (let i = 0; i < 7; i++) {
      const byte = buffer[offset++];
      if (byte === undefined) break;
      zigzag += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        this.offset = offset;
        return longOf(zigzag % 2 === 0 ? zigzag / 2 : -(zigzag + 1) / 2);
      }
      scale *= 128;
    }
    return readVarLong.call(this);
  };
  // A record's timestamp text is built with `Long#toString` (BigInt to decimal), and the
  // records of a batch usually share their timestamp (each record converts its timestamp,
  // then its offset). Strings never change.
  const toString = Long.prototype.toString;
  const text = lastTwo((long: unknown) => toString.call(long) as string);
  Long.prototype.toString = function (this: { value: bigint }): string {
    return text(this.value, this);
  };
  kafkajsOriginals.toString = (long) => toString.call(long);
  kafkajsOriginals.add = (long, addend) => add.call(long, addend);
  kafkajsOriginals.gte = (long, other) => gte.call(long, other);
  kafkajsOriginals.fromValue = (v) => fromValue.call(Long, v);
  kafkajsOriginals.readVarLong = readVarLong;
  Long[DECODE_PATCHED] = true;
}

// @ts-ignore: internal kafkajs module without type declarations
import ConsumerGroupModule from "npm:kafkajs@2.2.4/src/consumer/consumerGroup.js";
// deno-lint-ignore no-explicit-any
const ConsumerGroup = ConsumerGroupModule as any;
const SEEKS_PATCHED = Symbol.for("sluice.kafkajs.seeksClearedOnJoin");

/** True when pending seeks are dropped when kafkajs (re)joins its group (for tests). */
export function kafkajsSeeksPatched(): boolean {
  return ConsumerGroup?.prototype?.[SEEKS_PATCHED] === true;
}

/*
 * **Seeks that outlive their generation.** `consumer.seek()` only records the offset in
 * `ConsumerGroup.seekOffset` (src/consumer/consumerGroup.js `seek`, a `SeekOffsets` map
 * created once in the constructor); the next fetch pops it (`seekOffsets`, called from
 * `fetch`) and applies it to the current `OffsetManager`. A rejoin (`joinAndSync`)
 * replaces the OffsetManager (`[PRIVATE.SYNC]`) but not that map: a seek made in the old
 * generation and not yet fetched (the fetch loop waits for the `eachBatch` handlers
 * during a rebalance) is applied to the new generation's first fetch instead of the
 * committed offset, and a seek of a partition that went to another member is applied
 * whenever the partition comes back, generations later. Kafka's own consumer forgets
 * positions with the assignment. The fix clears the map when a join starts; Sluice seeks
 * every partition of the new assignment itself (to the committed offset, or to where it
 * continues for a partition it kept).
 */
if (
  typeof ConsumerGroup?.prototype?.joinAndSync === "function" &&
  !ConsumerGroup.prototype[SEEKS_PATCHED]
) {
  const joinAndSync = ConsumerGroup.prototype.joinAndSync;
  // deno-lint-ignore no-explicit-any
  ConsumerGroup.prototype.joinAndSync = function (this: any): unknown {
    this.seekOffset?.clear?.();
    return joinAndSync.call(this);
  };
  ConsumerGroup.prototype[SEEKS_PATCHED] = true;
}

// @ts-ignore: internal kafkajs module without type declarations
import BrokerPoolModule from "npm:kafkajs@2.2.4/src/cluster/brokerPool.js";
// @ts-ignore: internal kafkajs module without type declarations
import ErrorsModule from "npm:kafkajs@2.2.4/src/errors.js";
// deno-lint-ignore no-explicit-any
const BrokerPool = BrokerPoolModule as any;
// deno-lint-ignore no-explicit-any
const KafkaErrors = ErrorsModule as any;
const POOL_PATCHED = Symbol.for("sluice.kafkajs.connectStopsOnDisconnect");
const POOL_CLOSED = Symbol.for("sluice.kafkajs.poolDisconnected");

/** True when a disconnect ends a connect still retrying (for tests). */
export function kafkajsConnectPatched(): boolean {
  return BrokerPool?.prototype?.[POOL_PATCHED] === true;
}

/*
 * **A connect that outlives its client.** `BrokerPool.connect` (src/cluster/brokerPool.js)
 * retries the seed broker with the client's retry policy (10 retries up to 10 s apart by
 * default: about a minute) and nothing stops it: `disconnect()` closes the brokers, but the
 * retry loop creates a new seed broker (`createSeedBroker`) and tries again, keeping the
 * process alive and logging an error per attempt long after Sluice gave up on its
 * `connectTimeoutMs`. The fix marks the pool on `disconnect()`; from then on the seed
 * broker's `connect` fails with a non-retriable error, which ends the loop at its next
 * attempt (`bail`). A later `connect()` (kafkajs's own restart after a crash calls
 * `disconnect()` then `connect()`) clears the mark.
 */
if (
  typeof BrokerPool?.prototype?.connect === "function" &&
  typeof BrokerPool.prototype.disconnect === "function" &&
  typeof BrokerPool.prototype.createSeedBroker === "function" &&
  typeof KafkaErrors?.KafkaJSNonRetriableError === "function" &&
  !BrokerPool.prototype[POOL_PATCHED]
) {
  const proto = BrokerPool.prototype;
  const { connect, disconnect, createSeedBroker } = proto;
  const closedConnect = () =>
    Promise.reject(
      new KafkaErrors.KafkaJSNonRetriableError("the client was disconnected; not reconnecting"),
    );
  // deno-lint-ignore no-explicit-any
  const fence = (pool: any) => {
    if (pool[POOL_CLOSED] && pool.seedBroker) pool.seedBroker.connect = closedConnect;
  };
  // deno-lint-ignore no-explicit-any
  proto.connect = function (this: any): unknown {
    this[POOL_CLOSED] = false;
    if (this.seedBroker?.connect === closedConnect) delete this.seedBroker.connect;
    return connect.call(this);
  };
  // deno-lint-ignore no-explicit-any
  proto.disconnect = async function (this: any): Promise<unknown> {
    this[POOL_CLOSED] = true;
    try {
      return await disconnect.call(this);
    } finally {
      fence(this);
    }
  };
  // deno-lint-ignore no-explicit-any
  proto.createSeedBroker = async function (this: any): Promise<unknown> {
    const r = await createSeedBroker.call(this);
    fence(this);
    return r;
  };
  proto[POOL_PATCHED] = true;
}

// @ts-ignore: internal kafkajs module without type declarations
import RunnerModule from "npm:kafkajs@2.2.4/src/consumer/runner.js";
// deno-lint-ignore no-explicit-any
const Runner = RunnerModule as any;
const IDLE_FETCH_PATCHED = Symbol.for("sluice.kafkajs.idleFetchWaitsForResume");
/** The heartbeat interval the runner passes to `ConsumerGroup.heartbeat`, once seen. */
const HEARTBEAT_INTERVAL = Symbol("sluice.heartbeatInterval");
/** The wake-ups of the idle waits going on in a ConsumerGroup's fetchers. */
const IDLE_WAKERS = Symbol("sluice.idleFetchWakers");
/** Longest idle wait, whatever the heartbeat interval. */
const IDLE_FETCH_MAX_MS = 10_000;

/** True when an all-paused fetch round waits for `resume()` (for tests). */
export function kafkajsIdleFetchPatched(): boolean {
  return ConsumerGroup?.prototype?.[IDLE_FETCH_PATCHED] === true;
}

/*
 * **A fetch loop that wakes twice a second while every partition is paused.** When nothing
 * is fetchable, `ConsumerGroup.fetch` (src/consumer/consumerGroup.js, line 491) sleeps
 * `maxWaitTimeInMs` (500 ms) and returns no batch; the runner then heartbeats (sent only
 * once `heartbeatInterval`, 3 s, has passed since the last one) and fetches again: a consumer
 * paused for backpressure woke about twice a second per broker to find nothing to do
 * (bench/README.md, "CPU while paused"). The fix: while every assigned partition is paused,
 * a fetch round waits until `resume()`, the runner's `stop()`, a rejoin (`joinAndSync`), or
 * the next heartbeat is due, whichever comes first (at most 10 s). Then, if a partition was
 * resumed, kafkajs's own round runs; else what kafkajs's round does when nothing is
 * fetchable (metadata refresh if needed, stale-assignment check, pending seeks, its error
 * recovery), without its sleep, and no batch is returned: the runner heartbeats, now due,
 * as before. One wake-up per heartbeat interval instead of one per `maxWaitTimeInMs`. Until
 * the runner has heartbeated once (the interval is learned from its `heartbeat({ interval })`
 * calls), when no heartbeat went out since the last was due (no member id yet), or with
 * some partition active, rounds are kafkajs's own.
 */
if (
  typeof ConsumerGroup?.prototype?.fetch === "function" &&
  typeof ConsumerGroup.prototype.heartbeat === "function" &&
  typeof ConsumerGroup.prototype.resume === "function" &&
  typeof ConsumerGroup.prototype.joinAndSync === "function" &&
  typeof Runner?.prototype?.stop === "function" &&
  !ConsumerGroup.prototype[IDLE_FETCH_PATCHED]
) {
  const proto = ConsumerGroup.prototype;
  const { fetch, heartbeat, resume, joinAndSync } = proto;
  // deno-lint-ignore no-explicit-any
  proto.heartbeat = function (this: any, options: { interval?: number }): unknown {
    if (typeof options?.interval === "number") this[HEARTBEAT_INTERVAL] = options.interval;
    return heartbeat.call(this, options);
  };
  // deno-lint-ignore no-explicit-any
  proto.fetch = async function (this: any, nodeId: unknown): Promise<unknown> {
    const interval = this[HEARTBEAT_INTERVAL];
    if (typeof interval !== "number" || !everyPartitionPaused(this)) {
      return await fetch.call(this, nodeId);
    }
    // +1: a timer may fire a millisecond before `Date.now()` says it is due.
    const ms = Math.min(this.lastRequest + interval + 1 - Date.now(), IDLE_FETCH_MAX_MS);
    if (ms <= 0) return await fetch.call(this, nodeId); // no heartbeat went out: kafkajs's pace
    await idleWait(this, ms);
    if (!everyPartitionPaused(this)) return await fetch.call(this, nodeId);
    // kafkajs's round as it goes when nothing is fetchable, without its sleep (just slept).
    try {
      await this.cluster.refreshMetadataIfNecessary();
      this.checkForStaleAssignment();
      await this.seekOffsets(
        this.filterPartitionsByNode(nodeId, this.subscriptionState.assigned()),
      );
    } catch (e) {
      await this.recoverFromFetch(e);
    }
    return [];
  };
  // deno-lint-ignore no-explicit-any
  proto.resume = function (this: any, ...args: unknown[]): unknown {
    const result = resume.apply(this, args);
    wakeIdle(this);
    return result;
  };
  // deno-lint-ignore no-explicit-any
  proto.joinAndSync = function (this: any, ...args: unknown[]): unknown {
    wakeIdle(this);
    return joinAndSync.apply(this, args);
  };
  const stop = Runner.prototype.stop;
  // deno-lint-ignore no-explicit-any
  Runner.prototype.stop = function (this: any, ...args: unknown[]): unknown {
    const result = stop.apply(this, args); // sets `running` false before it waits
    wakeIdle(this.consumerGroup);
    return result;
  };
  proto[IDLE_FETCH_PATCHED] = true;
}

/** Some partition is assigned, and every assigned partition is paused. */
// deno-lint-ignore no-explicit-any
function everyPartitionPaused(group: any): boolean {
  const state = group.subscriptionState;
  if (typeof state?.assigned !== "function" || typeof state.active !== "function") return false;
  const some = (list: { partitions: unknown[] }[]) => list.some((t) => t.partitions.length > 0);
  return some(state.assigned()) && !some(state.active());
}

/** Sleeps `ms`, or less when {@link wakeIdle} is called for `group`. */
// deno-lint-ignore no-explicit-any
function idleWait(group: any, ms: number): Promise<void> {
  const wakers: Set<() => void> = group[IDLE_WAKERS] ??= new Set();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(id);
      wakers.delete(done);
      resolve();
    };
    const id = setTimeout(done, ms);
    wakers.add(done);
  });
}

/** Ends every idle wait of `group`'s fetchers. */
// deno-lint-ignore no-explicit-any
function wakeIdle(group: any): void {
  const wakers: Set<() => void> | undefined = group?.[IDLE_WAKERS];
  if (wakers !== undefined) { for (const wake of [...wakers]) wake(); }
}
