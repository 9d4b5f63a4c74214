import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../../clock.ts";
import { type BrokerValue, Partition, type Topic } from "../../../types.ts";
import { PartitionLog, ReadArena } from "../../../backends/local/_partition_log.ts";
import { LocalBroker } from "../../../backends/local/mod.ts";

function uniqueTopic() {
  return `t-${crypto.randomUUID()}`;
}

const P = Partition.of("partition-log", 0);

/** The `count` messages of `log` from offset `from`, read into a fresh array. */
function readAll<T>(log: PartitionLog<T>, from: number, count: number): BrokerValue<T>[] {
  const out = new Array<BrokerValue<T>>(count);
  assertEquals(log.read(P, from, count, out, 0), count);
  return out;
}

Deno.test("PartitionLog: append returns consecutive offsets; read writes BrokerValues from `at` on", () => {
  const log = new PartitionLog<string>(new ReadArena());
  assertEquals(log.length, 0);
  // Past the packed arrays' initial capacity (16), so they grow.
  for (let i = 0; i < 40; i++) assertEquals(log.append(`m${i}`, 1000 + i), i);
  assertEquals(log.length, 40);
  const out = new Array<BrokerValue<string>>(5);
  assertEquals(log.read(P, 20, 3, out, 2), 5, "returns the index after the last one written");
  assertEquals([0 in out, 1 in out], [false, false], "nothing before `at` is touched");
  assertEquals(
    out.slice(2).map((v) => [v.payload, v.partition, v.offset, v.timestamp]),
    [["m20", P, 20, 1020], ["m21", P, 21, 1021], ["m22", P, 22, 1022]],
  );
});

Deno.test("PartitionLog: bytes are copied on append and on every read", () => {
  const log = new PartitionLog<Uint8Array>(new ReadArena());
  const buffer = new Uint8Array([1, 2, 3, 4]);
  log.append(buffer.subarray(0, 2), 0);
  log.append(buffer.subarray(2), 0);
  buffer.fill(9); // the producer reuses its buffer
  const first = readAll(log, 0, 2);
  assertEquals(first.map((v) => Array.from(v.payload)), [[1, 2], [3, 4]]);
  for (const v of first) {
    assert(Object.getPrototypeOf(v.payload) === Uint8Array.prototype, "a plain Uint8Array");
    v.payload.fill(0); // a reader changes what it got
  }
  const second = readAll(log, 0, 2);
  assertEquals(second.map((v) => Array.from(v.payload)), [[1, 2], [3, 4]], "the log is unchanged");
  assert(second[0].payload.buffer === second[1].payload.buffer, "one copy per read, one view each");
});

Deno.test("ReadArena: successive copies take successive regions of one buffer, then a new one; a large copy gets its own", () => {
  const arena = new ReadArena();
  const kib = new Uint8Array(1024).fill(1);
  assertEquals(arena.copy(kib), 0);
  const shared = arena.buffer;
  assertEquals(shared.byteLength, 64 * 1024);
  assertEquals(arena.copy(kib), 1024, "the next free region, not a reused one");
  assertEquals(arena.buffer, shared);
  for (let i = 2; i < 64; i++) arena.copy(kib); // fills the 64 KiB
  assertEquals(arena.copy(kib), 0, "a full arena starts a new buffer");
  assert(arena.buffer !== shared, "and never writes over the old one");
  assertEquals(new Uint8Array(shared)[0], 1, "the old one still holds what was read");
  const next = arena.buffer;
  const large = new Uint8Array(16 * 1024 + 1).fill(7);
  assertEquals(arena.copy(large), 0);
  assertEquals(arena.buffer.byteLength, large.length, "more than a quarter: a buffer of its own");
  assertEquals(arena.copy(kib), 1024, "and the shared buffer carries on where it was");
  assertEquals(arena.buffer, next);
});

Deno.test("PartitionLog: from the first payload that is not a plain Uint8Array, payloads are kept as given", () => {
  class Bytes extends Uint8Array {}
  const log = new PartitionLog<Uint8Array | { n: number }>(new ReadArena());
  log.append(new Uint8Array([1]), 0);
  const sub = new Bytes([2]);
  log.append(sub, 0);
  const object = { n: 3 };
  log.append(object, 0);
  const plain = new Uint8Array([4]);
  log.append(plain, 0);
  plain[0] = 0;
  const got = readAll(log, 0, 4).map((v) => v.payload);
  assertEquals(Array.from(got[0] as Uint8Array), [1], "bytes stored before are kept");
  assert(
    got[1] === sub,
    "a Uint8Array subclass (such as Node's Buffer) is kept as the object given",
  );
  assert(got[2] === object);
  assertEquals(Array.from(got[3] as Uint8Array), [4], "plain bytes are still copied on append");
});

Deno.test("the log keeps payload, offset and timestamp of every message across growth, polls and seeks", async () => {
  const clock = new ManualClock(1_700_000_000_000.5);
  const broker = new LocalBroker<{ n: number } | undefined>({ clock });
  const topic = broker.createTopic(uniqueTopic(), 3);
  const produced = [];
  // Well past the log's initial capacity (16) on every partition, with explicit, clock
  // and fractional timestamps, round-robin and partition destinations, and an undefined payload.
  for (let i = 0; i < 200; i++) {
    const payload = i === 7 ? undefined : { n: i };
    const v = i % 5 === 0
      ? broker.produce(broker.partitions(topic)[i % 3], payload, { timestamp: i + 0.25 })
      : broker.produce(topic, payload);
    produced.push(v);
    await clock.advance(1);
  }
  const key = (v: { partition: Partition; offset: number }) => `${v.partition}@${v.offset}`;
  for (const p of broker.partitions(topic)) {
    const own = produced.filter((v) => v.partition === p);
    assertEquals(own.map((v) => v.offset), own.map((_, i) => i), `${p}: offsets are 0, 1, 2, …`);
    assertEquals(broker.endOffset(p), own.length);
  }
  const byKey = new Map(produced.map((v) => [key(v), v]));
  const check = (polled: BrokerValue<{ n: number } | undefined>[]) => {
    for (const v of polled) {
      const p = byKey.get(key(v));
      assert(p, `${key(v)} was produced`);
      assertEquals(v.payload, p.payload, key(v));
      assert(v.payload === p.payload, `${key(v)}: the payload object itself is handed out`);
      assertEquals(v.timestamp, p.timestamp, key(v));
      assertEquals(v.nextOffset, p.offset + 1);
      assertEquals(v.committable.get(v.partition), p.offset + 1);
    }
  };
  const consumer = broker.getConsumer("g", { maxPollMessages: 37 });
  consumer.subscribe([topic]);
  const seen = [];
  for (;;) {
    const batch = await consumer.poll(0);
    if (batch.length === 0) break;
    assert(batch.length <= 37);
    check(batch);
    seen.push(...batch.map(key));
  }
  assertEquals(seen.length, 200);
  assertEquals(new Set(seen).size, 200, "every message exactly once");
  // Seek back: the same messages again, read from the log once more.
  const p1 = broker.partitions(topic)[1];
  consumer.seek(new Map([[p1, 60]]));
  const again = await consumer.poll(0);
  assertEquals(again.map((v) => v.offset), [60, 61, 62, 63, 64, 65]);
  check(again);
  await consumer.close();
});

/** Every message of `topic` that `group` can poll, in (partition, offset) order. */
async function drain<T>(broker: LocalBroker<T>, topic: Topic, group: string, max = 29) {
  const consumer = broker.getConsumer(group, { maxPollMessages: max });
  consumer.subscribe([topic]);
  const all: BrokerValue<T>[] = [];
  for (;;) {
    const batch = await consumer.poll(0);
    if (batch.length === 0) break;
    all.push(...batch);
  }
  await consumer.close();
  return all.sort((a, b) => a.partition.index - b.partition.index || a.offset - b.offset);
}

Deno.test("byte payloads are stored as copies: the producer may reuse its buffer, and a reader that changes its bytes changes no other read", async () => {
  const broker = new LocalBroker<Uint8Array>();
  const topic = broker.createTopic(uniqueTopic(), 2);
  // Sizes around every storage boundary: empty, tiny, past the first 4 KiB segment, past a
  // quarter of the largest segment (stored alone), and enough messages to fill several segments.
  const sizes = [0, 1, 100, 4095, 4097, 5000, 300_000, 3, 262_145, 262_144];
  for (let i = 0; i < 400; i++) sizes.push((i * 7919) % 9000);
  const expected = new Map<string, number[]>();
  const reused = new Uint8Array(300_000);
  for (let i = 0; i < sizes.length; i++) {
    const bytes = reused.subarray(0, sizes[i]);
    for (let b = 0; b < bytes.length; b++) bytes[b] = (i * 31 + b) & 255;
    const v = broker.produce(topic, bytes);
    expected.set(`${v.partition.index}@${v.offset}`, Array.from(bytes));
    reused.fill(0xee); // the producer reuses its buffer at once
  }
  const check = (all: BrokerValue<Uint8Array>[], what: string) => {
    assertEquals(all.length, sizes.length, `${what}: every message`);
    for (const v of all) {
      const key = `${v.partition.index}@${v.offset}`;
      assert(Object.getPrototypeOf(v.payload) === Uint8Array.prototype, `${key} is a Uint8Array`);
      const want = expected.get(key)!;
      assertEquals(v.payload.length, want.length, `${what}: length of ${key}`);
      const at = v.payload.findIndex((b, i) => b !== want[i]);
      assertEquals(at, -1, `${what}: bytes of ${key} differ from what was produced at index ${at}`);
    }
  };
  const first = await drain(broker, topic, "first");
  check(first, "first read");
  for (const v of first) v.payload.fill(0x55); // a reader changes what it got, in place
  check(
    await drain(broker, topic, "second", 1000),
    "another group, after the first changed its copies",
  );
  check(await drain(broker, topic, "third", 1), "one message per poll");
});

Deno.test("a partition that stored bytes keeps them when other kinds of payload follow", async () => {
  const broker = new LocalBroker<Uint8Array | string>();
  const topic = broker.createTopic(uniqueTopic(), 1);
  const produced: (Uint8Array | string)[] = [];
  const buffer = new Uint8Array(50);
  for (let i = 0; i < 120; i++) {
    buffer.fill(i);
    const payload = i === 70 ? "text" : buffer.subarray(0, i % 50);
    produced.push(typeof payload === "string" ? payload : payload.slice());
    broker.produce(topic, payload);
  }
  buffer.fill(0xff);
  const got = await drain(broker, topic, "g");
  assertEquals(got.map((v) => v.offset), produced.map((_, i) => i));
  for (const [i, v] of got.entries()) {
    assertEquals(
      typeof v.payload === "string" ? v.payload : Array.from(v.payload),
      typeof produced[i] === "string" ? produced[i] : Array.from(produced[i]),
      `offset ${i}`,
    );
  }
});
