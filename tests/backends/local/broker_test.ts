import { assert, assertEquals, assertRejects } from "@std/assert";
import { ManualClock } from "../../../clock.ts";
import { ConsumerError } from "../../../errors.ts";
import { CommitPolicy } from "../../../processing/commit_policy.ts";
import { StreamProcessor } from "../../../processing/processor.ts";
import { CommitOffsets } from "../../../strategies/commit_offsets.ts";
import { RunTask } from "../../../strategies/run_task.ts";
import type { Partition } from "../../../types.ts";
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

Deno.test("LocalBroker and its consumers show no internal members by name: what they call on each other is keyed by private symbols", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(uniqueTopic(), 1);
  const consumer = broker.getConsumer("g");
  consumer.subscribe([topic]);
  await consumer.poll(0);
  const names = (o: object) => {
    const all = new Set<string>(Object.getOwnPropertyNames(o));
    for (const n of Object.getOwnPropertyNames(Object.getPrototypeOf(o))) all.add(n);
    return [...all].filter((n) => n.startsWith("_"));
  };
  assertEquals(names(broker), []);
  assertEquals(names(consumer), []);
  assertEquals(names(broker.getProducer()), []);
  await consumer.close();
});
