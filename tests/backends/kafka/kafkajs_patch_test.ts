// deno-lint-ignore-file no-import-prefix no-explicit-any
/**
 * The kafkajs record-decoding fast paths (backends/kafka/kafkajs_patch.ts) return exactly
 * what kafkajs's own code returns: same values, same decoder positions, same records
 * (no broker needed).
 */
import { assert, assertEquals } from "@std/assert";
import { kafkajsDecodePatched, kafkajsOriginals } from "../../../backends/kafka/kafkajs_patch.ts";
// @ts-ignore: internal kafkajs module without type declarations
import LongModule from "npm:kafkajs@2.2.4/src/utils/long.js";
// @ts-ignore: internal kafkajs module without type declarations
import DecoderModule from "npm:kafkajs@2.2.4/src/protocol/decoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import EncoderModule from "npm:kafkajs@2.2.4/src/protocol/encoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import RecordBatchModule from "npm:kafkajs@2.2.4/src/protocol/recordBatch/v0/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import Record from "npm:kafkajs@2.2.4/src/protocol/recordBatch/record/v0/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import decodeRecordBatch from "npm:kafkajs@2.2.4/src/protocol/recordBatch/v0/decoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import decodeMessages from "npm:kafkajs@2.2.4/src/protocol/requests/fetch/v4/decodeMessages.js";
// @ts-ignore: internal kafkajs module without type declarations
import BatchModule from "npm:kafkajs@2.2.4/src/consumer/batch.js";

const Long = LongModule as any;
const Decoder = DecoderModule as any;
const Encoder = EncoderModule as any;
const RecordBatch = (RecordBatchModule as any).RecordBatch;
const Batch = BatchModule as any;

/** Runs `fn` with kafkajs's own functions put back, then restores the fast paths. */
async function unpatched<T>(fn: () => T | Promise<T>): Promise<T> {
  const fast = {
    fromValue: Long.fromValue,
    readVarLong: Decoder.prototype.readVarLong,
    toString: Long.prototype.toString,
    add: Long.prototype.add,
    gte: Long.prototype.gte,
  };
  Long.fromValue = function (this: unknown, v: unknown) {
    return kafkajsOriginals.fromValue!(v);
  };
  Decoder.prototype.readVarLong = kafkajsOriginals.readVarLong;
  Long.prototype.toString = function (this: unknown) {
    return kafkajsOriginals.toString!(this);
  };
  Long.prototype.add = function (this: unknown, addend: unknown) {
    return kafkajsOriginals.add!(this, addend);
  };
  Long.prototype.gte = function (this: unknown, other: unknown) {
    return kafkajsOriginals.gte!(this, other);
  };
  try {
    return await fn();
  } finally {
    Long.fromValue = fast.fromValue;
    Decoder.prototype.readVarLong = fast.readVarLong;
    Long.prototype.toString = fast.toString;
    Long.prototype.add = fast.add;
    Long.prototype.gte = fast.gte;
  }
}

/** A seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Signed 64-bit values of every magnitude, the edges of the fast path included. */
function samples(): bigint[] {
  const out = [0n, 1n, -1n, 63n, -64n, 64n, 8191n, -8192n, 2n ** 31n, -(2n ** 31n)];
  for (const bits of [41, 47, 48, 49, 52, 53, 54, 62]) {
    out.push(2n ** BigInt(bits) - 1n, 2n ** BigInt(bits), -(2n ** BigInt(bits)));
  }
  out.push(2n ** 63n - 1n, -(2n ** 63n));
  const r = rng(42);
  for (let i = 0; i < 3000; i++) {
    const bits = 1 + Math.floor(r() * 63); // |v| < 2^63: always a signed 64-bit value
    const magnitude = BigInt(Math.floor(r() * 2 ** 31)) * 2n ** 32n +
      BigInt(Math.floor(r() * 2 ** 32));
    const v = magnitude % 2n ** BigInt(bits);
    out.push(r() < 0.5 ? -v : v);
  }
  return out;
}

/** What `fn` returns, or the message of what it throws. */
function outcome(fn: () => any): { value?: unknown; error?: string } {
  try {
    return { value: fn()?.value };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

Deno.test("kafkajs decode: the fast paths are installed when the backend is imported", () => {
  assert(kafkajsDecodePatched());
  assert(kafkajsOriginals.readVarLong !== Decoder.prototype.readVarLong);
});

Deno.test("kafkajs decode: readVarLong gives kafkajs's value and position for every magnitude", async () => {
  for (const v of samples()) {
    // Each value followed by a marker byte: the position after it must match too.
    const bytes = new Encoder().writeVarLong(Long.fromValue(v.toString())).writeInt8(7).buffer;
    const fast = new Decoder(bytes);
    const got = fast.readVarLong();
    const slow = new Decoder(bytes);
    const want = await unpatched(() => slow.readVarLong());
    assertEquals(got.value, v, `fast path decodes ${v}`);
    assertEquals(want.value, v, `kafkajs decodes ${v}`);
    assertEquals(fast.offset, slow.offset, `position after ${v}`);
    assertEquals(fast.readInt8(), 7);
  }
});

Deno.test("kafkajs decode: truncated varlongs behave as in kafkajs", async () => {
  for (const v of [300n, -(2n ** 40n), 2n ** 50n]) {
    const full = new Encoder().writeVarLong(Long.fromValue(v.toString())).buffer;
    for (let cut = 0; cut < full.length; cut++) {
      const bytes = full.subarray(0, cut);
      const run = (d: any) => {
        try {
          return { value: d.readVarLong().value, offset: d.offset };
        } catch (e) {
          return { error: (e as Error).message };
        }
      };
      const got = run(new Decoder(bytes));
      const want = await unpatched(() => run(new Decoder(bytes)));
      assertEquals(got, want, `${v} cut to ${cut} bytes`);
    }
  }
});

Deno.test("kafkajs decode: Long.fromValue gives kafkajs's value for any sequence of inputs", async () => {
  const r = rng(7);
  const inputs: unknown[] = [
    "0",
    "-1",
    "1795480000000",
    "9223372036854775807",
    "-9223372036854775808",
    "42",
    "NaN",
    7,
    -3.5,
    2 ** 40,
  ];
  for (let i = 0; i < 2000; i++) {
    const x = inputs[Math.floor(r() * inputs.length)];
    const got = outcome(() => Long.fromValue(x));
    const want = await unpatched(() => outcome(() => Long.fromValue(x)));
    assertEquals(got, want, `fromValue(${String(x)}) at step ${i}`);
    if (typeof want.value === "bigint") {
      assertEquals(Long.fromValue(x).add(Long.fromValue(1)).value, want.value + 1n);
    }
  }
});

Deno.test("kafkajs decode: Long#toString gives kafkajs's text for any sequence of values", async () => {
  const r = rng(11);
  const values = samples().slice(0, 40);
  for (let i = 0; i < 3000; i++) {
    // Runs of repeats and alternations, as record timestamps and offsets come.
    const v = values[r() < 0.5 ? i % 3 : Math.floor(r() * values.length)];
    const got = Long.fromValue(v.toString()).toString();
    const want = await unpatched(() => Long.fromValue(v.toString()).toString());
    assertEquals(got, want, `toString of ${v} at step ${i}`);
    assertEquals(got, v.toString());
  }
});

Deno.test("kafkajs decode: whole record batches decode to identical records", async () => {
  const r = rng(99);
  for (const firstTimestamp of [0, 1_795_480_000_000, 2 ** 47, 2 ** 53 - 1]) {
    for (const firstOffset of ["0", "123456789012", "9007199254740000"]) {
      const deltas = [0, 1, -1, 1000, -(2 ** 30), 2 ** 47 - 1, 2 ** 48, -(2 ** 52)];
      const records = Array.from({ length: 40 }, (_, i) =>
        Record({
          offsetDelta: i,
          timestampDelta: i < deltas.length ? deltas[i] : Math.floor(r() * 2 ** (r() * 50)),
          key: i % 3 === 0 ? null : Buffer.from(`key-${i}`),
          value: i % 7 === 0 ? null : Buffer.from(`value-${i}-${"x".repeat(i)}`),
          headers: i % 2 === 0
            ? {}
            : { h: Buffer.from(`h${i}`), multi: [Buffer.from("a"), Buffer.from("b")] },
        }));
      const encoded = await RecordBatch({
        firstOffset: Long.fromValue(firstOffset),
        firstTimestamp,
        maxTimestamp: firstTimestamp,
        lastOffsetDelta: records.length - 1,
        records,
      });
      const got = await decodeRecordBatch(new Decoder(encoded.buffer));
      const want = await unpatched(() => decodeRecordBatch(new Decoder(encoded.buffer)));
      assertEquals(got.records.length, 40);
      assertEquals(got, want, `batch at offset ${firstOffset}, timestamp ${firstTimestamp}`);
      assertEquals(
        got.records.map((x: { offset: string }) => x.offset),
        Array.from({ length: 40 }, (_, i) => (BigInt(firstOffset) + BigInt(i)).toString()),
      );
    }
  }
});

/** Offsets around the edges of the text comparison and of exact doubles. */
const OFFSET_TEXTS = [
  "0",
  "1",
  "9",
  "10",
  "99",
  "100",
  "123456789012",
  "999999999999",
  "1000000000000",
  String(2 ** 53 - 2),
  String(2 ** 53 - 1),
  "9007199254740992",
  "9007199254740993",
  "9223372036854775806",
  "9223372036854775807",
  "18446744073709551617",
];
/** Texts `String(bigint)` never gives: they must keep kafkajs's own parse. */
const ODD_TEXTS = ["-1", "-9223372036854775808", "007", "00", "+5", " 5", "5 ", "0x10", "1e3"];

Deno.test("kafkajs decode: Long.fromValue of offset texts gives kafkajs's values, texts and comparisons", async () => {
  const texts = [...OFFSET_TEXTS, ...ODD_TEXTS, "", "NaN", "Infinity", "12a"];
  const view = (x: unknown) => {
    const o = outcome(() => Long.fromValue(x));
    if (o.error !== undefined) return o;
    const long = Long.fromValue(x);
    return {
      value: long.value,
      text: long.toString(),
      json: JSON.stringify({ long }),
      isLong: Long.isLong(long),
      instance: long instanceof Long,
      plusOne: long.add(1).toString(),
      minusOne: long.subtract(Long.fromValue(1)).toString(),
      number: long.toNumber(),
      negated: long.negate().toString(),
      fromLong: Long.fromValue(long).value,
    };
  };
  for (const x of texts) assertEquals(view(x), await unpatched(() => view(x)), `fromValue(${x})`);
  const valid = [
    ...OFFSET_TEXTS,
    ...ODD_TEXTS.filter((t) => outcome(() => BigInt(t)).error === undefined),
  ];
  for (const a of valid) {
    for (const b of valid) {
      const got = Long.fromValue(a).gte(Long.fromValue(b));
      const want = await unpatched(() => Long.fromValue(a).gte(Long.fromValue(b)));
      assertEquals(got, want, `${a} >= ${b}`);
      assertEquals(got, BigInt(a) >= BigInt(b), `${a} >= ${b} as BigInt`);
      // Mixed with Longs made from numbers and from BigInt arithmetic.
      assertEquals(Long.fromValue(a).gte(Long.fromValue(BigInt(b))), BigInt(a) >= BigInt(b));
      assertEquals(Long.fromValue(BigInt(a)).gte(Long.fromValue(b)), BigInt(a) >= BigInt(b));
      assertEquals(Long.fromValue(a).gte(b), BigInt(a) >= BigInt(b));
    }
  }
});

Deno.test("kafkajs decode: Long#add gives kafkajs's result for numbers and Longs", async () => {
  const bases = ["0", "1000", String(2 ** 53 - 1), "9223372036854775000", "-5", "007"];
  const addends: unknown[] = [0, -0, 1, -1, 4095, 4096, 2 ** 31, 2 ** 53, -(2 ** 60), 1.5, NaN];
  addends.push(Long.fromValue("12"), "34", Long.fromValue("9007199254740993"));
  for (const base of bases) {
    for (const addend of addends) {
      const got = outcome(() => Long.fromValue(base).add(addend));
      const want = await unpatched(() => outcome(() => Long.fromValue(base).add(addend)));
      assertEquals(got, want, `${base} + ${String(addend)}`);
    }
  }
});

/** `count` records from offset `firstOffset`, encoded as kafkajs's producer does. */
async function encodedBatch(firstOffset: bigint, count: number, seed: number): Promise<Buffer> {
  const r = rng(seed);
  const records = Array.from({ length: count }, (_, i) =>
    Record({
      offsetDelta: i,
      timestampDelta: Math.floor(r() * 3) + i,
      key: i % 3 === 0 ? null : Buffer.from(`key-${i}`),
      value: Buffer.from(`value-${i}`),
      headers: i % 2 === 0 ? {} : { h: Buffer.from(`h${i}`), hop: [Buffer.from("a")] },
    }));
  const encoded = await RecordBatch({
    firstOffset: Long.fromValue(firstOffset.toString()),
    firstTimestamp: 1_795_480_000_000,
    maxTimestamp: 1_795_480_000_000 + count + 2,
    lastOffsetDelta: count - 1,
    records,
  });
  return encoded.buffer;
}

/** A fetch response's record set: whole batches, then the cut first `cut` bytes of one more. */
function recordSet(batches: Buffer[], tail: Buffer, cut: number): Buffer {
  const body = Buffer.concat([...batches, tail.subarray(0, cut)]);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  return Buffer.concat([size, body]);
}

/** What kafkajs's consumer sees of a `Batch`. */
function batchView(batch: any) {
  return {
    messages: batch.messages,
    within: batch.messagesWithinOffset.length,
    empty: batch.isEmpty(),
    emptyIncludingFiltered: batch.isEmptyIncludingFiltered(),
    compacted: batch.isEmptyDueToLogCompactedMessages(),
    firstOffset: batch.firstOffset(),
    lastOffset: batch.lastOffset(),
    offsetLag: batch.offsetLag(),
    offsetLagLow: batch.offsetLagLow(),
  };
}

Deno.test("kafkajs decode: fetched record sets make the same Batches, at every fetched-offset boundary", async () => {
  // First offsets below, at and beyond 2^53, and where the offset texts gain a digit.
  for (const first of [0n, 995n, 9_999_999_990n, 2n ** 53n - 7n, 2n ** 63n - 40n]) {
    const a = await encodedBatch(first, 12, Number(first % 1000n));
    const b = await encodedBatch(first + 12n, 9, 5);
    const c = await encodedBatch(first + 21n, 6, 6);
    for (const cut of [0, 30, c.length - 1]) {
      const bytes = recordSet([a, b], c, cut);
      const decode = () => decodeMessages(new Decoder(bytes));
      const records = await decode();
      assertEquals(records, await unpatched(decode), `records from ${first}, tail cut at ${cut}`);
      assertEquals(
        records.map((m: { offset: string }) => m.offset),
        Array.from({ length: 21 }, (_, i) => (first + BigInt(i)).toString()),
      );
      const last = first + 20n;
      const fetched = [
        0n,
        first - 1n,
        first,
        first + 1n,
        first + 11n,
        first + 12n,
        last,
        last + 1n,
      ];
      fetched.push(first * 10n + 1n, last + 100n);
      for (const offset of fetched.filter((o) => o >= 0n)) {
        const partition = {
          partition: 3,
          highWatermark: (last + 5n).toString(),
          messages: records,
        };
        const make = () => batchView(new Batch("topic", offset.toString(), partition));
        const got = make();
        assertEquals(got, await unpatched(make), `fetched offset ${offset}, first ${first}`);
        const kept = got.messages.map((m: { offset: string }) => BigInt(m.offset));
        const from = offset > first ? offset : first;
        assertEquals(kept.length, from > last ? 0 : Number(last + 1n - from));
        assert(kept.every((o: bigint) => o >= offset));
      }
    }
  }
});

Deno.test("kafkajs decode: real fetched records (tests/fixtures) decode identically", async () => {
  const { consumedPayloads } = await import("../../fixtures/kafka_records.ts");
  const got = await consumedPayloads(300, 64);
  const want = await unpatched(() => consumedPayloads(300, 64));
  assertEquals(got, want);
});

// @ts-ignore: internal kafkajs module without type declarations
import RequestQueueModule from "npm:kafkajs@2.2.4/src/network/requestQueue/index.js";

/** A kafkajs request queue as a connection builds one, with a stand-in logger. */
function requestQueue(connected: () => boolean = () => true): any {
  const Queue = (RequestQueueModule as any).default ?? RequestQueueModule;
  const noop = () => {};
  const logger = { debug: noop, info: noop, warn: noop, error: noop };
  return new Queue({
    maxInFlightRequests: null,
    requestTimeout: 30_000,
    enforceRequestTimeout: true,
    clientId: "test",
    broker: "127.0.0.1:1",
    logger,
    isConnected: connected,
  });
}

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("kafkajs request queue: the timeout check ticks only while a request is in flight", async () => {
  const queue = requestQueue();
  queue.scheduleRequestTimeoutCheck(); // what a connection does on connect
  assertEquals(queue.requestTimeoutIntervalId ?? null, null, "no timer while nothing is sent");
  let timedOut = 0;
  const request = { sentAt: Date.now(), requestTimeout: 30_000, timeoutRequest: () => timedOut++ };
  queue.inflight.set(1, request);
  assert(queue.requestTimeoutIntervalId != null, "a request in flight arms the check");
  queue.inflight.delete(1);
  assertEquals(queue.requestTimeoutIntervalId, null, "the last answer stops it at once");
  // A request past its deadline is timed out by the next tick, as kafkajs does.
  queue.inflight.set(2, { ...request, sentAt: Date.now() - 60_000 });
  await until("the late request timed out", () => timedOut === 1);
  queue.inflight.delete(2);
  queue.destroy();
  queue.inflight.set(3, request); // after disconnect nothing is armed again
  assertEquals(queue.requestTimeoutIntervalId ?? null, null);
  queue.inflight.delete(3);
});

Deno.test("kafkajs request queue: a connection that is gone stops the check for good", async () => {
  let connected = true;
  const queue = requestQueue(() => connected);
  queue.scheduleRequestTimeoutCheck();
  const request = { sentAt: Date.now(), requestTimeout: 30_000, timeoutRequest() {} };
  queue.inflight.set(1, request);
  connected = false;
  await until("the check stopped", () => queue.requestTimeoutIntervalId == null);
  queue.inflight.set(2, request); // disconnected: nothing re-arms it until the next connect
  assertEquals(queue.requestTimeoutIntervalId ?? null, null);
  queue.inflight.clear();
});

// @ts-ignore: internal kafkajs module without type declarations
import ConsumerGroupModule from "npm:kafkajs@2.2.4/src/consumer/consumerGroup.js";
// @ts-ignore: internal kafkajs module without type declarations
import RunnerModule from "npm:kafkajs@2.2.4/src/consumer/runner.js";
import { kafkajsIdleFetchPatched } from "../../../backends/kafka/kafkajs_patch.ts";

/**
 * A kafkajs ConsumerGroup with one partition assigned and stand-ins for what its idle fetch
 * round touches (no broker): `fetch` resolves with no batch after kafkajs's own
 * `maxWaitTimeInMs` sleep while the partition is paused. `paused` is read on every call.
 */
function idleGroup(state: { paused: boolean }, maxWaitTime = 20): any {
  const group = Object.create((ConsumerGroupModule as any).prototype);
  const noop = () => {};
  const partitions = () => state.paused ? [] : [0];
  Object.assign(group, {
    logger: { debug: noop, info: noop, warn: noop, error: noop },
    maxWaitTime,
    lastRequest: Date.now(),
    cluster: { refreshMetadataIfNecessary: () => Promise.resolve() },
    checkForStaleAssignment: noop,
    filterPartitionsByNode: (_node: unknown, tps: unknown) => tps,
    seekOffsets: () => Promise.resolve(),
    offsetManager: { committedOffsets: () => ({ t: {} }) }, // nothing fetchable anyway
    subscriptionState: {
      assigned: () => [{ topic: "t", partitions: [0] }],
      active: () => [{ topic: "t", partitions: partitions() }],
      resume: () => state.paused = false,
    },
  });
  return group;
}

/** Milliseconds `promise` took to settle. */
async function took(promise: Promise<unknown>): Promise<number> {
  const start = performance.now();
  await promise;
  return performance.now() - start;
}

/** What the runner does before each round: a heartbeat call (it learns the interval). */
async function heartbeatSeen(group: any, interval: number): Promise<void> {
  await group.heartbeat({ interval }).catch(() => {}); // no coordinator here: it fails
}

Deno.test("kafkajs idle fetch: with every partition paused a round waits until the next heartbeat is due, then skips kafkajs's own sleep", async () => {
  assert(kafkajsIdleFetchPatched());
  const group = idleGroup({ paused: true }, 1_000);
  const checks: string[] = [];
  group.checkForStaleAssignment = () => checks.push("stale assignment");
  group.seekOffsets = () => (checks.push("seeks"), Promise.resolve());
  await heartbeatSeen(group, 300);
  group.lastRequest = Date.now(); // a heartbeat just went out: the next is due in 300 ms
  const ms = await took(group.fetch(0));
  // Until the heartbeat is due, not kafkajs's 1 s sleep after it (nor its 1 s alone).
  assert(ms >= 290 && ms < 900, `took ${ms} ms`);
  assertEquals(checks, ["stale assignment", "seeks"], "kafkajs's idle-round checks ran");
});

Deno.test("kafkajs idle fetch: when no heartbeat went out since one was due, the round is kafkajs's own (no spin)", async () => {
  const group = idleGroup({ paused: true }, 50);
  await heartbeatSeen(group, 300);
  group.lastRequest = Date.now() - 1_000; // overdue: the runner did not send it (no member id)
  const ms = await took(group.fetch(0));
  assert(ms >= 40 && ms < 1_000, `took ${ms} ms: kafkajs's own maxWaitTimeInMs sleep`);
});

Deno.test("kafkajs idle fetch: resume() ends the wait at once", async () => {
  const state = { paused: true };
  const group = idleGroup(state, 5);
  await heartbeatSeen(group, 3_000);
  group.lastRequest = Date.now();
  let done = false;
  const round = group.fetch(0).then(() => done = true);
  await new Promise((r) => setTimeout(r, 100));
  assertEquals(done, false, "still waiting: nothing resumed, no heartbeat due");
  const ms = await took((group.resume([{ topic: "t" }]), round));
  assert(ms < 1_000, `took ${ms} ms after resume()`);
});

Deno.test("kafkajs idle fetch: the runner's stop() and a rejoin end the wait", async () => {
  for (const end of ["stop", "rejoin"]) {
    const group = idleGroup({ paused: true }, 5);
    await heartbeatSeen(group, 3_000);
    group.lastRequest = Date.now();
    const round = group.fetch(0);
    if (end === "stop") {
      const runner = Object.create((RunnerModule as any).prototype);
      Object.assign(runner, { running: false, consumerGroup: group });
      await runner.stop(); // not running: kafkajs's stop returns at once; the wait ends anyway
    } else {
      try {
        await group.joinAndSync();
      } catch { /* no broker: the join fails; the wait ended before it */ }
    }
    assert(await took(round) < 1_000, end);
  }
});

Deno.test("kafkajs idle fetch: rounds stay kafkajs's own with a partition active, or before the first heartbeat", async () => {
  const group = idleGroup({ paused: true });
  assert(await took(group.fetch(0)) < 1_000, "interval not known yet: kafkajs's 20 ms round");
  const none = idleGroup({ paused: true });
  none.subscriptionState.assigned = () => [];
  none.subscriptionState.active = () => [];
  await heartbeatSeen(none, 3_000);
  none.lastRequest = Date.now();
  assert(await took(none.fetch(0)) < 1_000, "nothing assigned: kafkajs's round");
});
