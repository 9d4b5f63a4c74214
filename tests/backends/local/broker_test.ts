import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ManualClock } from "../../../clock.ts";
import { ConsumerError } from "../../../errors.ts";
import { CommitPolicy } from "../../../processing/commit_policy.ts";
import { StreamProcessor } from "../../../processing/processor.ts";
import { CommitOffsets } from "../../../strategies/commit_offsets.ts";
import { RunTask } from "../../../strategies/run_task.ts";
import type { BrokerValue, Partition, Topic } from "../../../types.ts";
import { LocalBroker } from "../../../backends/local/mod.ts";
import { waitFor } from "../../_support/helpers.ts";

function uniqueTopic() {
  return `t-${crypto.randomUUID()}`;
}

Deno.test("LocalBroker keeps committed offsets per group", async () => {
  const broker = new LocalBroker<string>();
  const topic = broker.createTopic(uniqueTopic(), 1);
  for (let i = 0; i < 5; i++) broker.produce(topic, `m${i}`);
  const a = broker.getConsumer("a");
  const b = broker.getConsumer("b");
  a.subscribe([topic]);
  b.subscribe([topic]);
  const fromA = await a.poll(0);
  const fromB = await b.poll(0);
  assertEquals(fromA.length, 5, "each group reads the whole topic");
  assertEquals(fromB.length, 5);
  a.stageOffsets(new Map([[fromA[2].partition, 3]]));
  await a.commitOffsets();
  b.stageOffsets(new Map([[fromB[4].partition, 5]]));
  await b.commitOffsets();
  assertEquals([...broker.committed("a").values()], [3]);
  assertEquals([...broker.committed("b").values()], [5]);
  await a.close();
  // A new member of group "a" starts from a's commit, not b's.
  const a2 = broker.getConsumer("a");
  a2.subscribe([topic]);
  const again = await a2.poll(0);
  assertEquals(again.map((m) => m.offset), [3, 4]);
  await a2.close();
  await b.close();
});

Deno.test("two consumers of one group split the partitions, disjoint and complete", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(uniqueTopic(), 4);
  const a = broker.getConsumer("g");
  const b = broker.getConsumer("g");
  a.subscribe([topic]);
  b.subscribe([topic]);
  for (let i = 0; i < 3; i++) {
    await a.poll(0);
    await b.poll(0);
  }
  const pa = a.assignment.map(String);
  const pb = b.assignment.map(String);
  assertEquals(pa.length, 2);
  assertEquals(pb.length, 2);
  assertEquals(new Set([...pa, ...pb]).size, 4, "together they cover every partition once");
  await a.close();
  for (let i = 0; i < 2; i++) await b.poll(0);
  assertEquals(b.assignment.length, 4, "the remaining member takes everything after a leaves");
  await b.close();
});

Deno.test("pause, resume, seek and commit validate the assignment", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(uniqueTopic(), 2);
  const other = broker.createTopic(uniqueTopic(), 1);
  const c = broker.getConsumer("g");
  c.subscribe([topic]);
  await c.poll(0);
  const [p0, p1] = broker.partitions(topic);
  const foreign = broker.partitions(other)[0];
  assertThrows(() => c.pause([foreign]), ConsumerError, "not assigned");
  broker.produce(p0, 1);
  broker.produce(p1, 2);
  c.pause([p0]);
  assertEquals((await c.poll(0)).map((m) => m.payload), [2], "paused partitions yield nothing");
  c.resume([p0]);
  assertEquals((await c.poll(0)).map((m) => m.payload), [1]);
  assertThrows(() => c.seek(new Map([[p0, 99]])), ConsumerError, "within 0..1");
  c.seek(new Map([[p0, 0]]));
  assertEquals((await c.poll(0)).map((m) => m.offset), [0], "seek rewinds the working offset");
  c.stageOffsets(new Map([[foreign, 1]]));
  await assertRejects(() => c.commitOffsets(), ConsumerError, "not assigned");
  await c.close();
});

Deno.test("a member that stops polling loses its partitions after the session timeout", async () => {
  const clock = new ManualClock();
  const broker = new LocalBroker<number>({ clock, sessionTimeoutMs: 1000 });
  const topic = broker.createTopic(uniqueTopic(), 2);
  const a = broker.getConsumer("g");
  const b = broker.getConsumer("g");
  a.subscribe([topic]);
  b.subscribe([topic]);
  for (let i = 0; i < 3; i++) {
    await a.poll(0);
    await b.poll(0);
  }
  assertEquals(a.assignment.length, 1);
  await clock.advance(1500); // a never polls again
  for (let i = 0; i < 3; i++) await b.poll(0);
  assertEquals(b.assignment.length, 2, "b took over a's partition");
  await assertRejects(() => a.poll(0), ConsumerError, "session timeout");
  await b.close();
});

Deno.test("a third member joins and one leaves while messages flow: every message processed, commits never go back", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(uniqueTopic(), 6);
  const seen = new Set<string>();
  const make = () =>
    new StreamProcessor<number>({
      consumer: broker.getConsumer("flow"),
      topics: [topic],
      commitPolicy: new CommitPolicy({ intervalMs: 20 }),
      pollTimeoutMs: 5,
      pauseAfterMs: 50,
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) =>
          new RunTask((m) => {
            seen.add(String(m));
            return m.payload;
          }, new CommitOffsets(commit)),
      },
    });
  let produced = 0;
  const produce = (n: number) => {
    for (let i = 0; i < n; i++) broker.produce(topic, produced++);
  };
  const history = new Map<Partition, number>();
  let wentBack = false;
  const sample = () => {
    for (const [p, o] of broker.committed("flow")) {
      if ((history.get(p) ?? -1) > o) wentBack = true;
      history.set(p, o);
    }
  };
  const a = make();
  const b = make();
  const runA = a.run();
  const runB = b.run();
  produce(300);
  await waitFor(() => (sample(), seen.size >= 150), "a and b consuming");
  const c = make();
  const runC = c.run();
  produce(300);
  await waitFor(() => (sample(), c.stats.assignments > 0 && seen.size >= 400), "c joined");
  a.signalShutdown();
  await runA;
  produce(300);
  const allCommitted = () => {
    sample();
    const committed = broker.committed("flow");
    return broker.partitions(topic).every((p) => committed.get(p) === broker.endOffset(p));
  };
  await waitFor(allCommitted, "every partition committed to its end", 10_000);
  b.signalShutdown();
  c.signalShutdown();
  await Promise.all([runB, runC]);
  assertEquals(seen.size, produced, "every message was processed at least once");
  assert(!wentBack, "committed offsets never moved backwards");
  assert(b.stats.revocations >= 1 && c.stats.assignments >= 1, "rebalances happened");
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
