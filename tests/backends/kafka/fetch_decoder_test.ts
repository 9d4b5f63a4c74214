// deno-lint-ignore-file no-import-prefix no-explicit-any
/**
 * Sluice's Fetch v11 decoder (backends/kafka/_fetch_decoder.ts) returns what kafkajs's own
 * decoder returns, record for record, on every shape of response a broker sends: plain,
 * compressed, transactional and control batches, headers, a record set cut short by
 * maxBytes, offsets and timestamps beyond 2^53, the legacy message format, and random ones
 * (no broker needed).
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { Buffer } from "node:buffer";
import {
  decodeFetchV11,
  kafkajsDecodeFetchV11,
  RecordRun,
  useSluiceFetchDecoder,
} from "../../../backends/kafka/_fetch_decoder.ts";
import { ConsumerError } from "../../../errors.ts";
import { type BrokerValue, Partition } from "../../../types.ts";
import type { KafkaPayload } from "../../../backends/kafka/payload.ts";
import "../../../backends/kafka/kafkajs_patch.ts";
import {
  type BatchSpec,
  fetchResponse,
  type PartitionSpec,
  type RecordSpec,
} from "../../_support/fetch_response.ts";
// @ts-ignore: internal kafkajs module without type declarations
import FetchV11Module from "npm:kafkajs@2.2.4/src/protocol/requests/fetch/v11/response.js";
// @ts-ignore: internal kafkajs module without type declarations
import BatchModule from "npm:kafkajs@2.2.4/src/consumer/batch.js";

const Batch = BatchModule as any;
const bytes = (text: string) => new TextEncoder().encode(text);

/**
 * Decodes `raw` both ways and checks they agree (the same result, or the same error);
 * returns Sluice's result, or undefined when both threw.
 */
async function same(raw: Buffer): Promise<any> {
  const settle = (p: Promise<any>) => p.then((value) => ({ value }), (error) => ({ error }));
  const ours: any = await settle(decodeFetchV11(raw));
  const theirs: any = await settle(kafkajsDecodeFetchV11(raw));
  if (theirs.error) {
    assert(ours.error, `kafkajs threw ${theirs.error}, Sluice did not`);
    assertEquals(String(ours.error), String(theirs.error));
    return undefined;
  }
  if (ours.error) throw ours.error;
  assertEquals(ours.value, theirs.value);
  return ours.value;
}

const records = (n: number, f: (i: number) => RecordSpec = () => ({})): RecordSpec[] =>
  Array.from({ length: n }, (_, i) => f(i));

Deno.test("fetch decoder: plain batches over several partitions decode as kafkajs's", async () => {
  const parts: PartitionSpec[] = [0, 1, 2].map((partition) => ({
    partition,
    batches: [
      { baseOffset: 0n, records: records(5) },
      { baseOffset: 5n, records: records(3, (i) => ({ key: bytes(`k${i}`), timestampDelta: i })) },
    ],
  }));
  const out = await same(fetchResponse("orders", parts));
  assertEquals(out.responses[0].partitions.map((p: any) => p.messages.length), [8, 8, 8]);
  const m = out.responses[0].partitions[1].messages[6];
  assertEquals([m.offset, m.timestamp, Buffer.from(m.key).toString()], [
    "6",
    "1700000000001",
    "k1",
  ]);
  assert(Buffer.isBuffer(m.value), "values are Buffers, as kafkajs gives them");
});

Deno.test("fetch decoder: keys and values of every length class, null and empty", async () => {
  const sizes = [0, 1, 63, 64, 127, 128, 8191, 8192, 16_383, 16_384, 70_000];
  const batch: BatchSpec = {
    baseOffset: 42n,
    records: [
      { key: null, value: null },
      { key: new Uint8Array(0), value: new Uint8Array(0) },
      ...sizes.map((n) => ({ key: new Uint8Array(n % 300).fill(1), value: new Uint8Array(n) })),
    ],
  };
  const out = await same(fetchResponse("t", [{ partition: 0, batches: [batch] }]));
  const msgs = out.responses[0].partitions[0].messages;
  assertEquals(msgs[0].key, null);
  assertEquals(msgs[0].value, null);
  assertEquals(msgs.at(-1).value.length, 70_000);
});

Deno.test("fetch decoder: headers, repeated names, null values and names, unicode", async () => {
  const batch: BatchSpec = {
    baseOffset: 0n,
    records: [
      { headers: [] },
      { headers: [["a", bytes("1")], ["b", bytes("2")]] },
      { headers: [["dup", bytes("1")], ["dup", bytes("2")], ["dup", bytes("3")], ["x", null]] },
      { headers: [["n", null], ["n", bytes("v")]] },
      { headers: [[null, bytes("nameless")], ["ключ", bytes("значение")]] },
    ],
  };
  const out = await same(fetchResponse("t", [{ partition: 0, batches: [batch] }]));
  const h = out.responses[0].partitions[0].messages.map((m: any) => m.headers);
  assertEquals(h[2].dup.map((b: Buffer) => b.toString()), ["1", "2", "3"]);
  assertEquals(h[3].n[0], null);
  assertEquals(h[4].null.toString(), "nameless");
});

Deno.test("fetch decoder: a header named like an Object.prototype member is read as itself", async () => {
  // kafkajs folds headers with obj[key], which reads inherited members: a header named
  // "constructor" came out as [Object, value]. Sluice keeps the header's own value.
  const batch: BatchSpec = {
    baseOffset: 0n,
    records: [{ headers: [["constructor", bytes("c")], ["__proto__", bytes("p")]] }],
  };
  const out = await decodeFetchV11(fetchResponse("t", [{ partition: 0, batches: [batch] }]));
  const h = out.responses[0].partitions[0].messages[0].headers;
  assertEquals(Object.keys(h), ["constructor", "__proto__"]);
  assertEquals(h.constructor.toString(), "c");
  assertEquals(Object.getOwnPropertyDescriptor(h, "__proto__")?.value.toString(), "p");
  assertEquals(Object.getPrototypeOf(h), Object.prototype);
});

Deno.test("fetch decoder: a record set cut short by maxBytes ends at the last whole batch", async () => {
  const batches: BatchSpec[] = [0, 10, 20].map((b) => ({
    baseOffset: BigInt(b),
    records: records(10),
  }));
  const full = fetchResponse("t", [{ partition: 0, batches }]);
  const whole = (await same(full)).responses[0].partitions[0].messages.length;
  assertEquals(whole, 30);
  // Every cut point: inside the first batch's header, its records, the later batches.
  const setSize = full.length - fetchResponse("t", [{ partition: 0, batches: [] }]).length;
  const counts = new Set<number>();
  let threw = 0;
  for (let cut = 0; cut <= setSize; cut += 7) {
    const out = await same(
      fetchResponse("t", [{ partition: 0, batches, truncateTo: cut }, {
        partition: 1,
        batches: [{ baseOffset: 5n, records: records(2) }],
      }]),
    );
    // Under 17 bytes no magic byte can be read: kafkajs throws a RangeError (a broker never
    // cuts a response's first batch) and so does Sluice, which leaves that case to kafkajs.
    if (out === undefined) {
      assert(cut > 0 && cut < 17, `threw at cut ${cut}`);
      threw++;
      continue;
    }
    counts.add(out.responses[0].partitions[0].messages.length);
    assertEquals(out.responses[0].partitions[1].messages.length, 2, `cut at ${cut}`);
  }
  assertEquals([...counts].sort((a, b) => a - b), [0, 10, 20]);
  assertEquals(threw, 2);
});

Deno.test("fetch decoder: gzip-compressed batches, mixed with plain ones", async () => {
  const batches: BatchSpec[] = [
    { baseOffset: 100n, attributes: 1, records: records(50, (i) => ({ key: bytes(`k${i}`) })) },
    { baseOffset: 150n, records: records(3) },
    { baseOffset: 153n, attributes: 1, records: records(1, () => ({ headers: [["h", null]] })) },
  ];
  const out = await same(fetchResponse("t", [{ partition: 3, batches }]));
  const msgs = out.responses[0].partitions[0].messages;
  assertEquals(msgs.length, 54);
  assertEquals([msgs[0].offset, msgs[53].offset], ["100", "153"]);
});

Deno.test("fetch decoder: transactional and control batches, aborted transactions, LogAppendTime", async () => {
  const abortMarker = new Uint8Array([0, 0, 0, 0]);
  const batches: BatchSpec[] = [
    { baseOffset: 0n, attributes: 0x10, producerId: 7n, records: records(3) },
    {
      baseOffset: 3n,
      attributes: 0x30,
      producerId: 7n,
      records: [{ key: abortMarker, value: new Uint8Array(6) }],
    },
    { baseOffset: 4n, attributes: 0x08, maxTimestamp: 1_800_000_000_123n, records: records(2) },
  ];
  const raw = fetchResponse("t", [{
    partition: 0,
    batches,
    abortedTransactions: [{ producerId: 7n, firstOffset: 0n }],
  }]);
  const out = await same(raw);
  const p = out.responses[0].partitions[0];
  assertEquals(p.messages[3].isControlRecord, true);
  assertEquals(p.messages[4].timestamp, "1800000000123");
  // kafkajs's Batch drops the aborted records and the control record, as with its decoder.
  const batch = new Batch("t", "0", p);
  assertEquals(batch.messages.map((m: any) => m.offset), ["4", "5"]);
});

Deno.test("fetch decoder: offsets and timestamps beyond 2^53, negative and large deltas", async () => {
  const batches: BatchSpec[] = [
    { baseOffset: 2n ** 53n - 2n, records: records(4) },
    { baseOffset: 2n ** 62n, records: records(2) },
    { baseOffset: 10n, baseTimestamp: 2n ** 60n, records: records(2) },
    { baseOffset: 20n, baseTimestamp: -1n, records: records(2) },
    {
      baseOffset: 30n,
      records: [{ timestampDelta: -5 }, { timestampDelta: 2 ** 40 }, { timestampDelta: 2 ** 50 }],
    },
    { baseOffset: 40n, records: [{ offsetDelta: 2 ** 30 }, { offsetDelta: 3 }] },
  ];
  const out = await same(fetchResponse("t", [{ partition: 0, batches }]));
  const offsets = out.responses[0].partitions[0].messages.map((m: any) => m.offset);
  assertEquals(offsets.slice(0, 4), [
    "9007199254740990",
    "9007199254740991",
    "9007199254740992",
    "9007199254740993",
  ]);
});

Deno.test("fetch decoder: empty, null and legacy (magic 1) record sets go kafkajs's way", async () => {
  // A v1 message set: offset, size, crc, magic 1, attributes, timestamp, key, value.
  const msg = Buffer.alloc(8 + 4 + 4 + 1 + 1 + 8 + 4 + 4 + 3);
  let p = 0;
  p = msg.writeBigInt64BE(9n, p);
  p = msg.writeInt32BE(msg.length - 12, p);
  p = msg.writeInt32BE(0, p);
  p = msg.writeInt8(1, p);
  p = msg.writeInt8(0, p);
  p = msg.writeBigInt64BE(1_700_000_000_000n, p);
  p = msg.writeInt32BE(-1, p);
  p = msg.writeInt32BE(3, p);
  msg.write("old", p);
  const out = await same(fetchResponse("t", [
    { partition: 0, batches: [], rawRecords: null },
    { partition: 1, batches: [] },
    { partition: 2, batches: [], rawRecords: msg },
    { partition: 3, batches: [{ baseOffset: 0n, records: records(1) }] },
  ]));
  const parts = out.responses[0].partitions;
  assertEquals(parts.map((x: any) => x.messages.length), [0, 0, 1, 1]);
  assertEquals(parts[2].messages[0].value.toString(), "old");
});

/** Random responses: batches of every kind, some record sets cut short (seeded). */
function* randomResponses(rounds: number, seed: number): Generator<Buffer> {
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n; // the high bits: an LCG's low bits repeat quickly
  };
  const blob = (n: number) => Uint8Array.from({ length: n }, () => rnd(256));
  for (let round = 0; round < rounds; round++) {
    const parts: PartitionSpec[] = [];
    for (let p = rnd(4); p >= 0; p--) {
      let offset = BigInt(rnd(1_000_000));
      const batches: BatchSpec[] = [];
      for (let b = rnd(4); b >= 0; b--) {
        const n = 1 + rnd(20);
        batches.push({
          baseOffset: offset,
          attributes: [0, 0, 1, 0x08, 0x10][rnd(5)],
          records: records(n, () => ({
            timestampDelta: rnd(3) === 0 ? rnd(100_000) - 50 : 0,
            key: rnd(2) ? blob(rnd(20)) : null,
            value: rnd(10) ? blob(rnd(300)) : null,
            headers: Array.from(
              { length: rnd(3) },
              () => [["a", "b", "c"][rnd(3)], rnd(4) ? blob(rnd(5)) : null],
            ),
          })),
        });
        offset += BigInt(n + rnd(3));
      }
      parts.push({ partition: p, batches, truncateTo: rnd(3) === 0 ? rnd(2000) : undefined });
    }
    yield fetchResponse(`topic-${round}`, parts);
  }
}

Deno.test("fetch decoder: random responses decode as kafkajs's", async () => {
  for (const raw of randomResponses(60, 20261202)) await same(raw);
});

/** Every record of `runs`, read as a poll would (in takes of `step`). */
function readRuns(runs: RecordRun[], p: Partition, step: number): BrokerValue<KafkaPayload>[] {
  const out: BrokerValue<KafkaPayload>[] = [];
  for (const run of runs) while (!run.done) run.readInto(out, p, step);
  return out;
}

Deno.test("fetch decoder: record runs hold the same records as kafkajs's decoder gives", async () => {
  let partitions = 0;
  let seed = 7;
  for (const raw of randomResponses(60, 20261203)) {
    const plain = await kafkajsDecodeFetchV11(raw);
    const lazy = await decodeFetchV11(raw, true);
    for (const [i, part] of lazy.responses[0].partitions.entries()) {
      const expected = plain.responses[0].partitions[i].messages;
      assert(
        part.messages.every((m: unknown) => m instanceof RecordRun),
        `partition ${part.partition}: ${Deno.inspect(part.messages[0])}`,
      );
      const p = Partition.of(lazy.responses[0].topicName, part.partition);
      seed = (seed * 31 + 7) % 997;
      const got = readRuns(part.messages, p, 1 + (seed % 9));
      assertEquals(
        got.map((v) => ({
          offset: String(v.offset),
          timestamp: String(v.timestamp),
          key: v.payload.key,
          value: v.payload.value,
          headers: v.payload.headers,
        })),
        expected.map((m: any) => ({
          offset: m.offset,
          timestamp: m.timestamp,
          key: m.key,
          value: m.value,
          headers: m.headers,
        })),
      );
      assert(got.every((v) => v.payload.timestamp === v.timestamp && v.partition === p));
      partitions++;
    }
  }
  assert(partitions >= 100, `${partitions} partitions compared`);
});

Deno.test("fetch decoder: kafkajs's Batch over runs: offsets below the fetch, control and empty batches", async () => {
  const batches: BatchSpec[] = [
    { baseOffset: 0n, records: records(5) },
    { baseOffset: 5n, attributes: 0x30, producerId: 3n, records: records(1) }, // a marker
    { baseOffset: 6n, records: records(4) },
    { baseOffset: 10n, count: 0, records: [{ offsetDelta: 2 }] }, // emptied by compaction
  ];
  const raw = fetchResponse("t", [{ partition: 0, batches }]);
  const part = (await decodeFetchV11(raw, true)).responses[0].partitions[0];
  assertEquals(part.messages.map((r: RecordRun) => [r.offset, r.isControlRecord]), [
    ["4", false],
    ["5", true],
    ["9", false],
    ["12", true],
  ]);
  // Fetched from 7: the first run and the marker are dropped, the third kept whole; the
  // empty batch is not handed out but counts for the offset kafkajs continues from.
  const batch = new Batch("t", "7", part);
  assertEquals(batch.messages.map((r: RecordRun) => r.offset), ["9"]);
  assertEquals(batch.lastOffset(), "12");
  const p = Partition.of("t", 0);
  const run = batch.messages[0] as RecordRun;
  run.skipBelow(7, p);
  assertEquals(run.peek(p), 7);
  assertEquals(readRuns([run], p, 2).map((v) => v.offset), [7, 8, 9]);
  assertEquals(run.peek(p), undefined);
});

Deno.test("fetch decoder: a partition with aborted transactions gets kafkajs's records, not runs", async () => {
  const raw = fetchResponse("t", [
    {
      partition: 0,
      batches: [{ baseOffset: 0n, attributes: 0x10, producerId: 7n, records: records(2) }],
      abortedTransactions: [{ producerId: 7n, firstOffset: 0n }],
    },
    { partition: 1, batches: [{ baseOffset: 0n, records: records(2) }] },
  ]);
  const parts = (await decodeFetchV11(raw, true)).responses[0].partitions;
  assert(!(parts[0].messages[0] instanceof RecordRun));
  assertEquals(parts[0].messages.map((m: any) => m.offset), ["0", "1"]);
  assert(parts[1].messages[0] instanceof RecordRun);
});

Deno.test("fetch decoder: a malformed record in a run fails the take with a ConsumerError", async () => {
  const raw = fetchResponse("t", [{
    partition: 0,
    batches: [{ baseOffset: 100n, records: records(3, (i) => ({ value: bytes(`v${i}`) })) }],
  }]);
  // The third record's offset delta (2) becomes 9: beyond the batch's last offset (102).
  // Offset delta 2 (zig-zag 4), a null key (-1), value "v2" (length 2).
  const at = raw.lastIndexOf(Buffer.from([0x04, 0x01, 0x04, 0x76, 0x32]));
  assert(at > 0);
  raw[at] = 18;
  const run = (await decodeFetchV11(raw, true)).responses[0].partitions[0].messages[0];
  const p = Partition.of("t", 0);
  const out: BrokerValue<KafkaPayload>[] = [];
  assertEquals(run.readInto(out, p, 2), 101);
  assertThrows(() => run.readInto(out, p, 2), ConsumerError, "malformed");
  assertEquals(out.map((v) => v.offset), [100, 101], "nothing after the last good record");
});

Deno.test("fetch decoder: kafkajs's consumers use it once the Kafka backend is loaded", async () => {
  await import("../../../backends/kafka/consumer.ts");
  const module = FetchV11Module as { decode: unknown };
  assert(module.decode === decodeFetchV11, "kafkajs's Fetch v11 decode is Sluice's");
  useSluiceFetchDecoder(false);
  try {
    assert(module.decode === kafkajsDecodeFetchV11, "switched back to kafkajs's");
  } finally {
    useSluiceFetchDecoder(true);
  }
  assert(module.decode === decodeFetchV11);
});
