/**
 * The eachBatch → poll hand-off (backends/kafka/_batch_queue.ts), without a broker: a fake
 * consumer host and fake kafkajs `eachBatch` payloads. Every test runs twice: with kafkajs's
 * record objects (what a consumer of kafkajs's decoder gets) and with record runs
 * (Sluice's decoder, `_fetch_decoder.ts`, three records to a run).
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { Buffer } from "node:buffer";
import { ConsumerError } from "../../../errors.ts";
import type { EachBatchPayload } from "kafkajs";
import {
  BatchQueue,
  type BatchQueueHost,
  type RevokeState,
} from "../../../backends/kafka/_batch_queue.ts";
import { type Deferred, deferred } from "../../../backends/_deferred.ts";
import { Partition } from "../../../types.ts";
import { decodeFetchV11 } from "../../../backends/kafka/_fetch_decoder.ts";
import { fetchResponse } from "../../_support/fetch_response.ts";

type Form = "records" | "runs";
let form: Form = "records";
/** Registers `fn` once per form of the batch's messages. */
function test(name: string, fn: () => Promise<void> | void): void {
  for (const f of ["records", "runs"] as const) {
    Deno.test(`${name} (${f})`, () => {
      form = f;
      return fn();
    });
  }
}

const P0 = Partition.of("t", 0);
const P1 = Partition.of("t", 1);

interface FakeHost extends BatchQueueHost {
  assigned: Set<Partition>;
  paused: Set<Partition>;
  gen: number;
  revoke: RevokeState;
  done: Deferred;
  pending: Set<Partition> | undefined;
  isClosing: boolean;
  seeks: [string, number][];
  wakes: number;
  detected: number;
}

function host(maxPollMessages = 100, heartbeatIntervalMs = 10_000): FakeHost {
  const h: FakeHost = {
    o: { maxPollMessages, heartbeatIntervalMs },
    stats: { gapsRefetched: 0, gapsAccepted: 0 },
    assigned: new Set([P0, P1]),
    paused: new Set(),
    positions: new Map([[P0, 0], [P1, 0]]),
    highWatermarks: new Map(),
    highWatermarkAt: new Map(),
    gen: 1,
    revoke: "none",
    done: deferred(),
    pending: undefined,
    isClosing: false,
    seeks: [],
    wakes: 0,
    detected: 0,
    generation: () => h.gen,
    revokeState: () => h.revoke,
    revokeDone: () => h.done,
    pendingAssignment: () => h.pending,
    closing: () => h.isClosing,
    rebalanceDetected: () => void h.detected++,
    wakeUp: () => void h.wakes++,
    seek: (p, offset) => void h.seeks.push([String(p), offset]),
  };
  return h;
}

interface FakeFetch {
  payload: EachBatchPayload;
  resolved: string[];
  heartbeats: number;
}

/** The messages of a batch of `count` records from `from`, in the current form. */
async function messagesOf(p: Partition, from: number, count: number): Promise<unknown[]> {
  const value = (i: number) => new TextEncoder().encode(`m${from + i}`);
  if (form === "records") {
    return Array.from({ length: count }, (_, i) => ({
      key: null,
      value: value(i),
      headers: {},
      timestamp: "1700000000000",
      offset: String(from + i),
      attributes: 0,
    }));
  }
  const batches = [];
  for (let i = 0; i < count; i += 3) {
    const n = Math.min(3, count - i);
    batches.push({
      baseOffset: BigInt(from + i),
      records: Array.from({ length: n }, (_, j) => ({ value: value(i + j) })),
    });
  }
  const decoded = await decodeFetchV11(
    fetchResponse(p.topic.name, [{ partition: p.index, batches }]),
    true,
  );
  return decoded.responses[0].partitions[0].messages;
}

/** A kafkajs eachBatch payload for `count` messages of `p` from `from` (fetched from there). */
async function fetch(
  p: Partition,
  from: number,
  count: number,
  opts: { heartbeat?: () => Promise<void>; stale?: () => boolean } = {},
): Promise<FakeFetch> {
  const f: FakeFetch = { resolved: [], heartbeats: 0, payload: undefined! };
  const messages = await messagesOf(p, from, count);
  f.payload = {
    batch: {
      topic: p.topic.name,
      partition: p.index,
      highWatermark: String(from + count + 10),
      messages,
      fetchedOffset: String(from),
      lastOffset: () => String(from + count - 1),
    },
    heartbeat: async () => {
      f.heartbeats++;
      await opts.heartbeat?.();
    },
    isRunning: () => true,
    isStale: opts.stale ?? (() => false),
    resolveOffset: (o: string) => void f.resolved.push(o),
  } as unknown as EachBatchPayload;
  return f;
}

/** Lets pending promise callbacks run. */
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

/** Tracks whether a promise has settled. */
function track(p: Promise<void>): { settled: () => boolean; error: () => unknown } {
  let settled = false;
  let error: unknown;
  p.then(() => settled = true, (e) => {
    settled = true;
    error = e;
  });
  return { settled: () => settled, error: () => error };
}

const offsets = (q: BatchQueue) => q.take().map((m) => `${m.partition.index}@${m.offset}`);

test("batch queue: a handler queues its batch, resolves its offsets, records the high watermark and wakes poll", async () => {
  const h = host();
  const q = new BatchQueue(h);
  const f = await fetch(P0, 0, 3);
  await q.eachBatch(f.payload);
  assertEquals(f.resolved, ["2"]);
  assertEquals(h.wakes, 1);
  assertEquals(h.highWatermarks.get(P0), 13);
  assert(h.highWatermarkAt.has(P0));
  assertEquals(offsets(q), ["0@0", "0@1", "0@2"]);
  assertEquals(h.positions.get(P0), 3);
  assertEquals(offsets(q), []);
});

test("batch queue: messages are handed out in arrival order, at most maxPollMessages per take", async () => {
  const h = host(4);
  const q = new BatchQueue(h);
  // One fetch round: both handlers are called together.
  const [a, b] = [await fetch(P0, 0, 3), await fetch(P1, 5, 3)];
  await Promise.all([q.eachBatch(a.payload), q.eachBatch(b.payload)]);
  h.positions.set(P1, 5);
  assertEquals(offsets(q), ["0@0", "0@1", "0@2", "1@5"]);
  assertEquals(offsets(q), ["1@6", "1@7"]);
  assertEquals(h.positions.get(P0), 3);
  assertEquals(h.positions.get(P1), 8);
});

test("batch queue: a handler of the next round waits for room until the older round is handed out", async () => {
  const h = host();
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload); // round 1 returns at once
  const second = await fetch(P0, 2, 2);
  const waiting = track(q.eachBatch(second.payload)); // round 2: round 1 is still queued
  await tick();
  assert(!waiting.settled(), "round 2 waits while round 1 is queued");
  assertEquals(second.resolved, ["3"], "its offsets are resolved before it waits");
  assertEquals(q.take().length, 4); // hands out round 1 (and round 2)
  await tick();
  assert(waiting.settled(), "room made: the handler returns");
  assertEquals(waiting.error(), undefined);
  assertEquals(second.heartbeats, 1, "it heartbeats before returning");
});

test("batch queue: a handler waiting for room heartbeats every heartbeatIntervalMs", async () => {
  const h = host(100, 5);
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  const second = await fetch(P0, 2, 2);
  const waiting = track(q.eachBatch(second.payload));
  await new Promise((r) => setTimeout(r, 40));
  assert(!waiting.settled());
  assert(second.heartbeats >= 2, `heartbeats while waiting: ${second.heartbeats}`);
  q.take();
  await tick();
  assert(waiting.settled());
});

test("batch queue: a rebalance found while waiting is rethrown and the batch dropped", async () => {
  const h = host(100, 5);
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  const rebalance = Object.assign(new Error("rebalancing"), { type: "REBALANCE_IN_PROGRESS" });
  const second = await fetch(P1, 0, 2, { heartbeat: () => Promise.reject(rebalance) });
  const waiting = track(q.eachBatch(second.payload));
  await new Promise((r) => setTimeout(r, 30));
  assert(waiting.settled());
  assertEquals(waiting.error(), rebalance);
  assertEquals(h.detected, 1, "the consumer is told of the rebalance");
  assertEquals(offsets(q), ["0@0", "0@1"], "only the first batch is left");
});

test("batch queue: batches of a paused partition are dropped and kafkajs rewound to the first message not handed out", async () => {
  const h = host(2);
  const q = new BatchQueue(h);
  const [a, b] = [await fetch(P0, 0, 4), await fetch(P1, 0, 2)];
  await Promise.all([q.eachBatch(a.payload), q.eachBatch(b.payload)]);
  assertEquals(offsets(q), ["0@0", "0@1"]);
  h.paused.add(P0);
  q.drop((b) => h.paused.has(b.partition), true);
  assertEquals(h.seeks, [["t/0", 2]]);
  assertEquals(offsets(q), ["1@0", "1@1"]);
  assertEquals(offsets(q), []);
});

test("batch queue: take drops (and rewinds) a queued batch of a partition paused since", async () => {
  const h = host();
  const q = new BatchQueue(h);
  const [a, b] = [await fetch(P0, 0, 2), await fetch(P1, 0, 2)];
  await Promise.all([q.eachBatch(a.payload), q.eachBatch(b.payload)]);
  h.paused.add(P0);
  assertEquals(offsets(q), ["1@0", "1@1"]);
  assertEquals(h.seeks, [["t/0", 0]]);
});

test("batch queue: a revoked partition's batches are dropped without a rewind, and a waiting handler released", async () => {
  const h = host();
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  const waiting = track(q.eachBatch((await fetch(P1, 0, 2)).payload));
  await tick();
  assert(!waiting.settled());
  h.assigned.delete(P0);
  q.forget(P0);
  q.drop((b) => b.partition === P0, false);
  await tick();
  assert(waiting.settled(), "room made by the drop");
  assertEquals(h.seeks, []);
  assertEquals(offsets(q), ["1@0", "1@1"]);
});

test("batch queue: a batch of an earlier generation, or of a partition not assigned, is never handed out", async () => {
  const h = host();
  const q = new BatchQueue(h);
  const [a, b] = [await fetch(P0, 0, 2), await fetch(P1, 0, 2)];
  await Promise.all([q.eachBatch(a.payload), q.eachBatch(b.payload)]);
  h.assigned.delete(P1);
  h.gen = 2;
  assertEquals(offsets(q), []);
});

test("batch queue: nothing is handed out while a revoke or an assignment is pending", async () => {
  const h = host();
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  h.revoke = "pending";
  assertEquals(offsets(q), []);
  h.revoke = "none";
  h.pending = new Set([P0]);
  assertEquals(offsets(q), []);
  h.pending = undefined;
  assertEquals(offsets(q), ["0@0", "0@1"]);
});

test("batch queue: a stale batch, or one of a paused partition, is neither queued nor resolved", async () => {
  const h = host();
  const q = new BatchQueue(h);
  const stale = await fetch(P0, 0, 2, { stale: () => true });
  await q.eachBatch(stale.payload);
  h.paused.add(P1);
  const paused = await fetch(P1, 0, 2);
  await q.eachBatch(paused.payload);
  assertEquals([stale.resolved, paused.resolved], [[], []]);
  assertEquals(offsets(q), []);
});

test("batch queue: a handler called after the revoke is done makes kafkajs rejoin", async () => {
  const h = host();
  const q = new BatchQueue(h);
  h.revoke = "done";
  let thrown: unknown;
  await q.eachBatch((await fetch(P0, 0, 2)).payload).catch((e) => thrown = e);
  assertEquals((thrown as { type?: string }).type, "REBALANCE_IN_PROGRESS");
});

test("batch queue: messages below the position are skipped (handed out already)", async () => {
  const h = host();
  const q = new BatchQueue(h);
  h.positions.set(P0, 2);
  await q.eachBatch((await fetch(P0, 0, 4)).payload);
  assertEquals(offsets(q), ["0@2", "0@3"]);
});

test("batch queue: a batch fetched from beyond the position is re-fetched once, then accepted", async () => {
  const h = host();
  const q = new BatchQueue(h);
  const warn = console.warn;
  const warned: string[] = [];
  console.warn = (...a: unknown[]) => void warned.push(a.join(" "));
  try {
    await q.eachBatch((await fetch(P0, 5, 2)).payload);
    assertEquals(offsets(q), [], "a gap (0..4): not handed out");
    assertEquals(h.seeks, [["t/0", 0]], "kafkajs sought back to the position");
    assertEquals(h.stats.gapsRefetched, 1);
    await q.eachBatch((await fetch(P0, 5, 2)).payload); // the re-fetch starts at 5 again
    assertEquals(offsets(q), ["0@5", "0@6"]);
    assertEquals(h.stats.gapsAccepted, 1);
    assertEquals(warned.length, 2);
  } finally {
    console.warn = warn;
  }
});

test("batch queue: resync keeps queued batches that continue at the offset, else re-fetches", async () => {
  const h = host();
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  q.resync(P0, 0);
  assertEquals(h.seeks, [["t/0", 2]], "kept: kafkajs continues after the queued batch");
  q.resync(P0, 1);
  assertEquals(h.seeks, [["t/0", 2], ["t/0", 1]], "dropped: fetched again from 1");
  assertEquals(offsets(q), []);
});

test("batch queue: releaseAll empties the queue and releases waiting handlers", async () => {
  const h = host();
  const q = new BatchQueue(h);
  await q.eachBatch((await fetch(P0, 0, 2)).payload);
  const waiting = track(q.eachBatch((await fetch(P0, 2, 2)).payload));
  await tick();
  assert(!waiting.settled());
  q.releaseAll();
  await tick();
  assert(waiting.settled());
  assertEquals(offsets(q), []);
});

Deno.test("batch queue: a malformed record in a run: the take hands out what it collected, the next take fails with a ConsumerError", async () => {
  form = "runs";
  const h = host();
  const q = new BatchQueue(h);
  const good = await fetch(P0, 0, 3);
  const bad = await fetch(P1, 0, 3);
  const raw = fetchResponse("t", [{
    partition: 1,
    batches: [{
      baseOffset: 0n,
      records: [0, 1, 2].map((i) => ({ value: new TextEncoder().encode(`v${i}`) })),
    }],
  }]);
  // The third record's offset delta (zig-zag 4, before a null key and "v2") becomes 9: beyond
  // the batch's last offset.
  const at = raw.lastIndexOf(Buffer.from([0x04, 0x01, 0x04, 0x76, 0x32]));
  assert(at > 0);
  raw[at] = 18;
  (bad.payload.batch as { messages: unknown }).messages =
    (await decodeFetchV11(raw, true)).responses[0].partitions[0].messages;
  await Promise.all([q.eachBatch(good.payload), q.eachBatch(bad.payload)]);
  assertEquals(offsets(q), ["0@0", "0@1", "0@2", "1@0", "1@1"], "nothing collected is lost");
  assertEquals([h.positions.get(P0), h.positions.get(P1)], [3, 2]);
  assertThrows(() => q.take(), ConsumerError, "malformed");
  // And again: the bad record is never skipped.
  assertThrows(() => q.take(), ConsumerError, "malformed");
  assertEquals(h.positions.get(P1), 2);
});
