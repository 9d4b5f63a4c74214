// deno-lint-ignore-file no-import-prefix no-explicit-any
/**
 * Record runs (`backends/kafka/_fetch_decoder.ts`) through kafkajs's own `Batch` and the
 * hand-off queue (`_batch_queue.ts`), without a broker: compaction gaps inside and between
 * batches, a fetch that starts inside a (compressed) batch, seeks into a run, and records
 * that kafkajs's decoder reads but a run must read the same way.
 */
import { assert, assertEquals } from "@std/assert";
import type { EachBatchPayload } from "kafkajs";
import { BatchQueue, type BatchQueueHost } from "../../../backends/kafka/_batch_queue.ts";
import { deferred } from "../../../backends/_deferred.ts";
import {
  decodeFetchV11,
  kafkajsDecodeFetchV11,
  RecordRun,
} from "../../../backends/kafka/_fetch_decoder.ts";
import { type BrokerValue, Partition } from "../../../types.ts";
import type { KafkaPayload } from "../../../backends/kafka/payload.ts";
import { type BatchSpec, fetchResponse, type RecordSpec } from "../../_support/fetch_response.ts";
// @ts-ignore: internal kafkajs module without type declarations
import BatchModule from "npm:kafkajs@2.2.4/src/consumer/batch.js";

const Batch = BatchModule as any;
const P = Partition.of("t", 0);

/** Records at the given offset deltas (values: the offset as text). */
const at = (base: number, deltas: number[]): RecordSpec[] =>
  deltas.map((d) => ({ offsetDelta: d, value: new TextEncoder().encode(String(base + d)) }));

interface Host extends BatchQueueHost {
  positions: Map<Partition, number>;
  seeks: [number, number][];
}

function host(maxPollMessages = 100): Host {
  const h: Host = {
    o: { maxPollMessages, heartbeatIntervalMs: 10_000 },
    stats: { gapsRefetched: 0, gapsAccepted: 0 },
    assigned: new Set([P]),
    paused: new Set(),
    positions: new Map([[P, 0]]),
    highWatermarks: new Map(),
    highWatermarkAt: new Map(),
    seeks: [],
    generation: () => 1,
    revokeState: () => "none",
    revokeDone: () => deferred(),
    pendingAssignment: () => undefined,
    closing: () => false,
    rebalanceDetected: () => {},
    wakeUp: () => {},
    seek: (_p, offset) => void h.seeks.push([0, offset]),
  };
  return h;
}

/**
 * What kafkajs hands `eachBatch` for a fetch of `batches` from `fetchedOffset`: its own
 * `Batch` over Sluice's runs. Returns the payload and the offsets kafkajs resolved, as
 * kafkajs's runner resolves them (the last filtered message resolves `batch.lastOffset()`).
 */
async function kafkajsFetch(fetchedOffset: number, batches: BatchSpec[]) {
  const raw = fetchResponse("t", [{ partition: 0, batches, highWatermark: 10_000n }]);
  const part = (await decodeFetchV11(raw, true)).responses[0].partitions[0];
  assert(part.messages.every((m: unknown) => m instanceof RecordRun));
  const batch = new Batch("t", String(fetchedOffset), part);
  const resolved: string[] = [];
  const last = batch.messages[batch.messages.length - 1];
  const payload = {
    batch,
    heartbeat: () => Promise.resolve(),
    isRunning: () => true,
    isStale: () => false,
    resolveOffset: (o: string) =>
      void resolved.push(last && o === last.offset ? batch.lastOffset() : o),
  } as unknown as EachBatchPayload;
  return { payload, resolved, batch };
}

/** Takes until nothing is left; the offsets handed out. */
function drain(q: BatchQueue): number[] {
  const got: number[] = [];
  for (;;) {
    const out = q.take();
    if (out.length === 0) return got;
    got.push(...out.map((v) => v.offset));
  }
}

Deno.test("record runs: a compacted batch (gaps between its records) and the next fetch after it", async () => {
  const h = host(4);
  const q = new BatchQueue(h);
  // Offsets 0..9 once, compaction kept 1, 4, 6 and 9; then 10..12.
  const first = await kafkajsFetch(0, [{ baseOffset: 0n, records: at(0, [1, 4, 6, 9]) }]);
  assertEquals(first.batch.lastOffset(), "9");
  await q.eachBatch(first.payload);
  assertEquals(first.resolved, ["9"], "kafkajs continues after the whole batch");
  assertEquals(drain(q), [1, 4, 6, 9]);
  const second = await kafkajsFetch(10, [{ baseOffset: 10n, records: at(10, [0, 1, 2]) }]);
  await q.eachBatch(second.payload);
  assertEquals(drain(q), [10, 11, 12]);
  assertEquals(h.positions.get(P), 13);
  assertEquals(h.seeks, [], "no gap re-fetch");
});

Deno.test("record runs: a batch whose last records were compacted away: kafkajs skips to its end, the gap is allowed", async () => {
  const h = host(2);
  const q = new BatchQueue(h);
  // count 2 but last offset delta 9: records 0 and 3 remain of 0..9.
  const spec: BatchSpec = {
    baseOffset: 0n,
    records: [...at(0, [0, 3]), { offsetDelta: 9 }],
    count: 2,
  };
  const first = await kafkajsFetch(0, [spec]);
  assertEquals(first.batch.lastOffset(), "9");
  await q.eachBatch(first.payload);
  assertEquals(first.resolved, ["9"]);
  assertEquals(drain(q), [0, 3]);
  assertEquals(h.positions.get(P), 4);
  const second = await kafkajsFetch(10, [{ baseOffset: 10n, records: at(10, [0, 1]) }]);
  await q.eachBatch(second.payload);
  assertEquals(drain(q), [10, 11]);
  assertEquals(h.seeks, [], "the gap 4..9 is the batch's own end: not re-fetched");
  assertEquals(h.stats, { gapsRefetched: 0, gapsAccepted: 0 });
});

Deno.test("record runs: a fetch from inside a batch's compacted tail: kafkajs skips to its end, nothing re-fetched", async () => {
  const h = host();
  h.positions.set(P, 5); // 0..4 were handed out (and committed) before the cleaner ran
  const q = new BatchQueue(h);
  const compacted: BatchSpec = {
    baseOffset: 0n,
    attributes: 1,
    records: [...at(0, [0, 3]), { offsetDelta: 9 }],
    count: 2,
  };
  const first = await kafkajsFetch(5, [compacted]);
  await q.eachBatch(first.payload);
  assertEquals(first.resolved, ["9"], "kafkajs continues after the batch, at 10");
  assertEquals(drain(q), []);
  assertEquals(h.positions.get(P), 5);
  await q.eachBatch(
    (await kafkajsFetch(10, [{ baseOffset: 10n, records: at(10, [0, 1]) }])).payload,
  );
  assertEquals(drain(q), [10, 11]);
  assertEquals(h.seeks, []);
  assertEquals(h.stats, { gapsRefetched: 0, gapsAccepted: 0 });
});

Deno.test("record runs: a fetch inside a gzip batch hands out nothing before the position", async () => {
  for (const attributes of [0, 1]) {
    const h = host(3);
    h.positions.set(P, 37);
    const q = new BatchQueue(h);
    const deltas = Array.from({ length: 50 }, (_, i) => i);
    const f = await kafkajsFetch(37, [
      { baseOffset: 0n, attributes, records: at(0, deltas) },
      { baseOffset: 50n, attributes, records: at(50, deltas.slice(0, 5)) },
    ]);
    await q.eachBatch(f.payload);
    const got = drain(q);
    assertEquals(got, Array.from({ length: 18 }, (_, i) => 37 + i), `attributes ${attributes}`);
    assertEquals(f.resolved, ["54"]);
  }
});

Deno.test("record runs: a pause in the middle of a run rewinds kafkajs to the next record; the re-fetch starts inside the batch", async () => {
  const h = host(4);
  const q = new BatchQueue(h);
  const deltas = Array.from({ length: 10 }, (_, i) => i);
  const spec: BatchSpec = { baseOffset: 0n, attributes: 1, records: at(0, deltas) };
  await q.eachBatch((await kafkajsFetch(0, [spec])).payload);
  assertEquals(q.take().map((v) => v.offset), [0, 1, 2, 3]);
  q.drop(() => true, true);
  assertEquals(h.seeks, [[0, 4]]);
  // The broker returns the whole batch again from 4.
  await q.eachBatch((await kafkajsFetch(4, [spec])).payload);
  assertEquals(drain(q), [4, 5, 6, 7, 8, 9]);
});

Deno.test("record runs: a record whose timestamp delta needs more than 7 bytes reads as kafkajs reads it", async () => {
  // Legal batches: base time 1.7e12 ms, one record 2^50 ms later (< 2^53, a valid long);
  // and the other way round. kafkajs reads them; a run failed them as malformed.
  const raw = fetchResponse("t", [{
    partition: 0,
    batches: [{
      baseOffset: 0n,
      maxTimestamp: 1_700_000_000_000n + 2n ** 50n,
      records: [{ timestampDelta: 0 }, { timestampDelta: 2 ** 50 }],
    }, {
      baseOffset: 2n,
      baseTimestamp: 1_700_000_000_000n + 2n ** 50n,
      records: [{ timestampDelta: 0 }, { timestampDelta: -(2 ** 50) - 1 }],
    }],
  }]);
  const theirs = (await kafkajsDecodeFetchV11(raw)).responses[0].partitions[0].messages;
  const runs = (await decodeFetchV11(raw, true)).responses[0].partitions[0].messages;
  const out: BrokerValue<KafkaPayload>[] = [];
  let error: unknown;
  try {
    for (const run of runs) while (!run.done) run.readInto(out, P, 10);
  } catch (e) {
    error = e;
  }
  assertEquals(error, undefined, "a run reads every record kafkajs's decoder reads");
  assertEquals(out.map((v) => String(v.timestamp)), theirs.map((m: any) => m.timestamp));
});
