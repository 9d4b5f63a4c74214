/**
 * The @platformatic/kafka backend against a real broker: the consumer contract (pause,
 * resume, seek, commit), the processor end to end with the backend's producer, and
 * incremental rebalancing with three members (one joins, one leaves while messages flow),
 * compared with the eager kafkajs backend in the same test.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import type { Kafka } from "kafkajs";
import type { Consumer } from "../../backends/abstract.ts";
import { ConsumerError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { DlqPolicy, withDlqHeaders } from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import { type BrokerValue, InvalidMessage, type Message, Partition, Topic } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  PlatformaticConsumer,
  type PlatformaticConsumerOptions,
  PlatformaticProducer,
} from "../../backends/platformatic/mod.ts";
import {
  committedOffsets,
  committedToEnd,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  testKafka,
  testProducer,
  unique,
} from "./kafka_helpers.ts";

const decoder = new TextDecoder();

/**
 * Whether the broker runs KIP-848's consumer protocol (Kafka 4.x; the dev broker runs 4.x
 * with KAFKA_VERSION): a member joins a one-partition topic with it.
 */
async function supportsConsumerProtocol(brokers: string): Promise<boolean> {
  const kafka = testKafka(brokers);
  const topic = unique("sluice-plt-probe");
  await createTopic(kafka, topic, 1);
  const c = new PlatformaticConsumer({
    brokers,
    group: unique("probe"),
    ...FAST,
    groupProtocol: "consumer",
  });
  try {
    c.subscribe([topic]);
    await c.poll(0);
    return true;
  } catch {
    return false;
  } finally {
    await c.close().catch(() => {});
    await deleteTopics(kafka, [topic]);
  }
}

kafkaTest(
  "platformatic consumer: pause/resume per partition with half-taken batches skips and repeats nothing; seek and commit",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-contract");
    const group = unique("g");
    const PER = 400;
    await createTopic(kafka, topic, 2);
    const producer = testProducer(kafka);
    await producer.connect();
    for (const partition of [0, 1]) {
      const messages = Array.from(
        { length: PER },
        (_, i) => ({ value: `${partition}:${i}`, partition }),
      );
      await producer.send({ topic, messages, acks: -1 });
    }
    await producer.disconnect();
    const p0 = Partition.of(topic, 0);
    const p1 = Partition.of(topic, 1);
    const consumer = new PlatformaticConsumer({ brokers, group, ...FAST, maxPollMessages: 7 });
    const assigned: string[] = [];
    consumer.subscribe([topic], {
      onAssign: (ps) => {
        for (const [p, o] of ps) assigned.push(`${p}@${o}`);
      },
    });
    const got = new Map<Partition, number[]>([[p0, []], [p1, []]]);
    const take = (batch: BrokerValue<KafkaPayload>[]) => {
      assert(batch.length <= 7, "maxPollMessages bounds a poll");
      for (const v of batch) {
        got.get(v.partition)!.push(v.offset);
        assertEquals(
          decoder.decode(v.payload.value as Uint8Array),
          `${v.partition.index}:${v.offset}`,
        );
        assert(typeof v.payload.timestamp === "number" && v.payload.timestamp === v.timestamp);
      }
    };
    const pollUntil = async (cond: () => boolean, what: string) => {
      const deadline = performance.now() + 60_000;
      while (!cond()) {
        assert(performance.now() < deadline, `timed out waiting for ${what}`);
        take(await consumer.poll(100));
      }
    };
    try {
      await pollUntil(
        () => got.get(p0)!.length >= 20 && got.get(p1)!.length >= 20,
        "both partitions flowing",
      );
      assertEquals(assigned.sort(), [`${p0}@0`, `${p1}@0`]);
      assertThrows(() => consumer.pause([Partition.of(topic, 5)]), ConsumerError, "not assigned");
      consumer.pause([p0]);
      assertEquals(consumer.paused(), [p0]);
      const p0WhenPaused = got.get(p0)!.length;
      await pollUntil(() => got.get(p1)!.length === PER, "partition 1 drained while 0 is paused");
      for (let i = 0; i < 5; i++) take(await consumer.poll(50));
      assertEquals(got.get(p0)!.length, p0WhenPaused, "nothing from a paused partition");
      consumer.resume([p0]);
      await pollUntil(() => got.get(p0)!.length === PER, "partition 0 after resume");
      for (const p of [p0, p1]) {
        assertEquals(got.get(p), Array.from({ length: PER }, (_, i) => i), `${p}: once, in order`);
      }
      assertEquals(consumer.tell(), new Map([[p0, PER], [p1, PER]]));
      assertEquals(consumer.endOffset(p0), PER);
      consumer.stageOffsets(new Map([[p0, PER], [p1, 250]]));
      assertEquals(await consumer.commitOffsets(), new Map([[p0, PER], [p1, 250]]));
      assertEquals(await committedOffsets(kafka, group, topic), new Map([[0, PER], [1, 250]]));
      consumer.stageOffsets(new Map([[Partition.of(topic, 9), 1]]));
      await assertRejects(() => consumer.commitOffsets(), ConsumerError, "not assigned");
      consumer.seek(new Map([[p1, 390]]));
      const again: number[] = [];
      const deadline = performance.now() + 30_000;
      while (again.length < 10) {
        assert(performance.now() < deadline, "re-read after seek");
        for (const v of await consumer.poll(100)) if (v.partition === p1) again.push(v.offset);
      }
      assertEquals(again, [390, 391, 392, 393, 394, 395, 396, 397, 398, 399]);
    } finally {
      await consumer.close();
      await deleteTopics(kafka, [topic]);
    }
  },
);

kafkaTest(
  "platformatic: the processor consumes what the platformatic producer wrote and commits to the end",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-e2e");
    const group = unique("g");
    const N = 3000;
    await createTopic(kafka, topic, 4);
    const producer = new PlatformaticProducer({ brokers, logLevel: "nothing" });
    const sent = await Promise.all(
      Array.from(
        { length: N },
        (_, i) =>
          producer.produce(Topic.of(topic), {
            key: `k${i}`,
            value: String(i),
            headers: { n: String(i) },
          }),
      ),
    );
    await producer.close();
    const seen = new Set<string>();
    for (const s of sent) {
      assert(s.offset >= 0, "the producer reports where each message landed");
      seen.add(`${s.partition.index}@${s.offset}`);
    }
    assertEquals(seen.size, N, "distinct positions");
    const got = new Set<number>();
    const processor = new StreamProcessor<KafkaPayload>({
      consumer: new PlatformaticConsumer({ brokers, group, ...FAST }),
      topics: [topic],
      handleSignals: false,
      commitPolicy: CommitPolicy.IMMEDIATE,
      factory: {
        incremental: true,
        createWithPartitions: (commit) =>
          new RunTask((m: Message<KafkaPayload>) => {
            const v = Number(decoder.decode(m.payload.value as Uint8Array));
            assertEquals(decoder.decode(m.payload.headers!.n as Uint8Array), String(v));
            got.add(v);
            return v;
          }, new CommitOffsets(commit)),
      },
    });
    const running = processor.run();
    try {
      await eventually(() => got.size === N, "every message processed", 60_000);
      await committedToEnd(kafka, group, topic, await endOffsets(kafka, topic), 30_000);
    } finally {
      processor.signalShutdown();
      await running;
      await deleteTopics(kafka, [topic]);
    }
  },
);

type Backend =
  | "kafkajs (eager)"
  | "platformatic classic cooperative-sticky"
  | "platformatic KIP-848";

interface ScenarioResult {
  /**
   * Longest pause (ms) in the processing of partitions that did not move, while both
   * rebalances ran: the longest a message the broker had acknowledged waited while its
   * partition processed nothing (a producer slowed down by a loaded machine is no pause).
   */
  stableGapMs: number;
  stablePartitions: number;
  /**
   * Longest delay (ms) of a 10 ms timer of this process meanwhile: how long the whole
   * process stood still (a loaded machine), which no backend can be blamed for.
   */
  loopStallMs: number;
  segmentsMax: number;
  /** Per partition, its owners in time order from just before c joined (for failure messages). */
  owners: string;
}

/**
 * Three members: A and B run; once they share the partitions C joins, then, once the three
 * share them, B leaves, while a producer writes to every partition every 20 ms. Checks at-least-once, commits to the end, and ownership; returns
 * the longest processing gap of partitions that stayed with their member.
 */
async function scenario(
  brokers: string,
  backend: Backend,
  slow = false,
): Promise<ScenarioResult> {
  const kafka = testKafka(brokers);
  const topic = unique("sluice-plt-coop");
  const group = unique("g");
  const P = 6;
  await createTopic(kafka, topic, P);
  const events = new Map<number, { t: number; member: string; value: string }[]>(
    Array.from({ length: P }, (_, i) => [i, []]),
  );
  const processed = new Set<string>();
  const make = (name: string): Consumer<KafkaPayload> => {
    const common = { brokers, group, clientId: name, ...FAST };
    if (backend === "kafkajs (eager)") return new KafkaConsumer(common);
    const o: PlatformaticConsumerOptions = backend === "platformatic KIP-848"
      ? { ...common, groupProtocol: "consumer" }
      : { ...common, assignor: "cooperative-sticky" };
    return new PlatformaticConsumer(o);
  };
  const members = new Map<
    string,
    { processor: StreamProcessor<KafkaPayload>; running: Promise<void> }
  >();
  const start = (name: string) => {
    const processor = new StreamProcessor<KafkaPayload>({
      consumer: make(name),
      topics: [topic],
      handleSignals: false,
      commitPolicy: new CommitPolicy({ intervalMs: 500 }),
      factory: {
        incremental: true,
        createWithPartitions: (commit) => {
          const work = (m: Message<KafkaPayload>) => {
            const v = decoder.decode(m.payload.value as Uint8Array);
            events.get(Number(v.split(":")[0]))!.push({
              t: performance.now(),
              member: name,
              value: v,
            });
            processed.add(v);
            return null;
          };
          // Slow: 2 ms a message, 4 at a time, 16 queued: the processor carries messages
          // under backpressure (and pauses) while partitions are revoked.
          return slow
            ? new RunTaskAsync(
              async (m: Message<KafkaPayload>) => {
                await new Promise((r) => setTimeout(r, 2));
                return work(m);
              },
              new CommitOffsets(commit),
              { concurrency: 4, highWaterMark: 16 },
            )
            : new RunTask(work, new CommitOffsets(commit));
        },
      },
    });
    members.set(name, { processor, running: processor.run() });
  };
  const stop = async (name: string) => {
    const m = members.get(name)!;
    m.processor.signalShutdown();
    await m.running;
    members.delete(name);
  };
  // The producer: every partition gets a message every 20 ms.
  const producer = testProducer(kafka);
  await producer.connect();
  let producing = true;
  const produced: string[] = [];
  /** When the broker acknowledged each value. */
  const acked = new Map<string, number>();
  let seq = 0;
  const writing = (async () => {
    while (producing) {
      const messages = Array.from({ length: P }, (_, partition) => {
        const value = `${partition}:${seq}`;
        produced.push(value);
        return { value, partition };
      });
      seq++;
      await producer.send({ topic, messages, acks: -1 });
      const now = performance.now();
      for (const m of messages) acked.set(m.value, now);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  let loopStallMs = 0;
  let tick = performance.now();
  let measuringStalls = false;
  const ticker = setInterval(() => {
    const now = performance.now();
    if (measuringStalls) loopStallMs = Math.max(loopStallMs, now - tick - 10);
    tick = now;
  }, 10);
  /**
   * Whether `names` share the partitions evenly: each partition was processed in the last
   * 500 ms, last by one of them, and each has P / names.length. Under KIP-848 a member
   * learns its assignment only from its next heartbeat (every 5 s, the broker's
   * `group.consumer.heartbeat.interval.ms`), so one member may still hold all six well after
   * every partition flows, and a partition given up waits for its new owner's heartbeat.
   */
  const balanced = (names: string[]) => {
    const now = performance.now();
    const count = new Map(names.map((n) => [n, 0]));
    for (const list of events.values()) {
      const last = list.at(-1);
      if (last === undefined || now - last.t > 500 || !count.has(last.member)) return false;
      count.set(last.member, count.get(last.member)! + 1);
    }
    return [...count.values()].every((n) => n === P / names.length);
  };
  const shares = () =>
    `last member per partition: ${[...events.values()].map((l) => l.at(-1)?.member ?? "-")}`;
  try {
    start("a");
    start("b");
    await eventually(
      () => balanced(["a", "b"]),
      "a and b share the partitions",
      90_000,
      50,
      shares,
    );
    const settledAt = performance.now();
    await eventually(() => performance.now() - settledAt > 2000, "steady state", 5000);
    const t0 = performance.now();
    measuringStalls = true;
    start("c");
    // The first rebalance completes (c processes its two partitions) before b leaves: the
    // second one then moves only b's partitions.
    await eventually(
      () => balanced(["a", "b", "c"]),
      "a, b and c share the partitions",
      90_000,
      50,
      shares,
    );
    await stop("b");
    const tLeave = performance.now();
    await eventually(() => performance.now() - tLeave > 3000, "after b left", 5000);
    const t1 = performance.now();
    measuringStalls = false;
    producing = false;
    await writing;
    await producer.disconnect();
    await eventually(
      () => produced.every((v) => processed.has(v)),
      "every message processed at least once",
      60_000,
      100,
      () => `${produced.filter((v) => !processed.has(v)).length} missing`,
    );
    await committedToEnd(kafka, group, topic, await endOffsets(kafka, topic), 30_000);
    // Ownership: per partition, runs of one member in time order; a partition processed by
    // two members at once would show interleaved runs (A B A ...).
    let segmentsMax = 0;
    const owners: string[] = [];
    let stableGapMs = 0;
    let stablePartitions = 0;
    for (const list of events.values()) {
      const window = list.filter((e) => e.t >= t0 - 500);
      const runs: string[] = [];
      for (let i = 0; i < window.length; i++) {
        if (i === 0 || window[i].member !== window[i - 1].member) runs.push(window[i].member);
      }
      const segments = runs.length;
      segmentsMax = Math.max(segmentsMax, segments);
      owners.push(runs.join(">"));
      if (segments === 1) {
        stablePartitions++;
        const inside = window.filter((e) => e.t <= t1);
        for (let i = 1; i < inside.length; i++) {
          const waitingSince = Math.max(inside[i - 1].t, acked.get(inside[i].value) ?? 0);
          stableGapMs = Math.max(stableGapMs, inside[i].t - waitingSince);
        }
      }
    }
    return { stableGapMs, stablePartitions, loopStallMs, segmentsMax, owners: owners.join(" ") };
  } finally {
    clearInterval(ticker);
    producing = false;
    await writing.catch(() => {});
    for (const name of [...members.keys()]) await stop(name);
    await deleteTopics(kafka, [topic]);
  }
}

kafkaTest(
  "platformatic: three members, one joins and one leaves while messages flow: partitions that do not move are not paused (compared with eager kafkajs)",
  async (brokers) => {
    const results = new Map<Backend, ScenarioResult>();
    const backends: Backend[] = ["kafkajs (eager)", "platformatic classic cooperative-sticky"];
    if (await supportsConsumerProtocol(brokers)) backends.push("platformatic KIP-848");
    else console.warn("platformatic test: the broker has no KIP-848 protocol (Kafka < 4): skipped");
    for (const b of backends) {
      const r = await scenario(brokers, b);
      results.set(b, r);
      console.log(
        `rebalance scenario, ${b}: longest gap of partitions that did not move ` +
          `${r.stableGapMs.toFixed(0)} ms (${r.stablePartitions} such partitions; the process ` +
          `stood still at most ${r.loopStallMs.toFixed(0)} ms), at most ${r.segmentsMax} owner ` +
          `runs per partition (${r.owners})`,
      );
      assert(r.segmentsMax <= 3, `${b}: no partition processed by two members at once`);
    }
    // Bounds, not a race against eager kafkajs: under eager rebalancing the member that
    // rejoins last can pause for only one JoinGroup/SyncGroup round trip (seen: 58 ms), so
    // "less than eager" is noise; a pause of a partition that does not move is what matters.
    const bound: Record<string, number> = {
      // 4-58 ms over 36 runs on Kafka 4.4.0. Before the scenario waited for each rebalance to
      // complete, c could join while one member still held all six (a member learns its
      // KIP-848 assignment from its next heartbeat, 5 s apart), and a partition that a gave
      // up for b came back to a once b had left, 5 s later: counted as kept, "paused" 5 s.
      "platformatic KIP-848": 1000,
      // ~500 ms before fetches had connections of their own (a fetch waited behind the
      // JoinGroup the broker holds on the same connection); ~30 ms since.
      "platformatic classic cooperative-sticky": 1000,
    };
    for (const [b, r] of results) {
      if (b === "kafkajs (eager)") continue;
      assert(
        r.stablePartitions > 0,
        `${b}: some partitions stayed with their member (owners per partition: ${r.owners})`,
      );
      // A pause the process's own standstill explains (a loaded machine) is not counted.
      assert(
        r.stableGapMs - r.loopStallMs < bound[b],
        `${b}: partitions that did not move paused ${r.stableGapMs.toFixed(0)} ms, ` +
          `${r.loopStallMs.toFixed(0)} ms of which the process stood still ` +
          `(bound ${bound[b]} ms; eager kafkajs: ${
            results.get("kafkajs (eager)")!.stableGapMs.toFixed(0)
          } ms)`,
      );
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "platformatic: revokes while kept partitions' messages are carried under backpressure: every message processed, commits reach the end offsets",
  async (brokers) => {
    const r = await scenario(brokers, "platformatic classic cooperative-sticky", true);
    console.log(
      `backpressured rebalance scenario: longest gap of partitions that did not move ` +
        `${r.stableGapMs.toFixed(0)} ms, at most ${r.segmentsMax} owner runs per partition`,
    );
    assert(r.segmentsMax <= 3, "no partition processed by two members at once");
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "platformatic: invalid messages go to the DLQ through the platformatic producer; commits reach the end only once delivered",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-dlq-src");
    const dlqTopic = unique("sluice-plt-dlq");
    const group = unique("g");
    await createTopic(kafka, topic, 1);
    await createTopic(kafka, dlqTopic, 1);
    const values = ["0", "1", "bad-2", "3", "4", "5", "bad-6", "7", "8", "9"];
    const producer = testProducer(kafka);
    await producer.connect();
    await producer.send({ topic, messages: values.map((value) => ({ value })), acks: -1 });
    await producer.disconnect();
    const dlqProducer = new PlatformaticProducer({ brokers, logLevel: "nothing" });
    const processed: string[] = [];
    const processor = new StreamProcessor<KafkaPayload>({
      consumer: new PlatformaticConsumer({ brokers, group, ...FAST }),
      topics: [topic],
      commitPolicy: CommitPolicy.IMMEDIATE,
      handleSignals: false,
      dlqPolicy: new DlqPolicy<KafkaPayload, KafkaPayload>({
        producer: dlqProducer,
        topic: dlqTopic,
        build: withDlqHeaders,
      }),
      factory: {
        incremental: true,
        createWithPartitions: (commit) =>
          new RunTask((m: Message<KafkaPayload>) => {
            const v = decoder.decode(m.payload.value as Uint8Array);
            if (v.startsWith("bad")) {
              throw InvalidMessage.fromValue(
                m.value as BrokerValue<KafkaPayload>,
                `value ${v} is not a number`,
                "parse",
              );
            }
            processed.push(v);
            return v;
          }, new CommitOffsets(commit)),
      },
    });
    const running = processor.run();
    const reader = new PlatformaticConsumer({ brokers, group: unique("reader"), ...FAST });
    try {
      await committedToEnd(kafka, group, topic, new Map([[0, values.length]]), 30_000);
      assertEquals(processed, values.filter((v) => !v.startsWith("bad")));
      assertEquals(processor.stats.deadLettered, 2);
      reader.subscribe([dlqTopic]);
      const dead: string[] = [];
      const deadline = performance.now() + 30_000;
      while (dead.length < 2) {
        assert(performance.now() < deadline, "two DLQ entries");
        for (const v of await reader.poll(100)) {
          dead.push(decoder.decode(v.payload.value as Uint8Array));
        }
      }
      assertEquals(dead.sort(), ["bad-2", "bad-6"]);
    } finally {
      processor.signalShutdown();
      await running;
      await reader.close();
      await dlqProducer.close();
      await deleteTopics(kafka, [topic, dlqTopic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

/**
 * Writes "x" to every partition of `topic` (it has `partitions`) every `everyMs` until the
 * returned function is called (it resolves once the producer has stopped).
 */
async function produceSteadily(
  kafka: Kafka,
  topic: string,
  partitions: number,
  everyMs: number,
): Promise<() => Promise<void>> {
  const producer = testProducer(kafka);
  await producer.connect();
  let producing = true;
  const writing = (async () => {
    while (producing) {
      const messages = Array.from({ length: partitions }, (_, partition) => ({
        value: "x",
        partition,
      }));
      await producer.send({ topic, messages, acks: -1 });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return async () => {
    producing = false;
    await writing.catch(() => {});
    await producer.disconnect();
  };
}

kafkaTest(
  "platformatic: kept partitions go on being fetched while the broker holds this member's JoinGroup for longer than the library's metadata age (another member is slow to give partitions back)",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-held-join");
    const group = unique("g");
    const P = 6; // 3 + 3, then 2 + 2 + 2: a and b each give one back
    await createTopic(kafka, topic, P);
    const o: PlatformaticConsumerOptions = {
      brokers,
      group,
      ...FAST,
      assignor: "cooperative-sticky",
      // The broker holds a JoinGroup until every member has rejoined, at most this long:
      // longer than the library's default metadata age (5 s).
      rebalanceTimeoutMs: 20_000,
    };
    const stopProducing = await produceSteadily(kafka, topic, P, 50);
    const a = new PlatformaticConsumer({ ...o, clientId: "a" });
    const b = new PlatformaticConsumer({ ...o, clientId: "b" });
    const c = new PlatformaticConsumer({ ...o, clientId: "c" });
    let polling = true;
    const pollC = async () => {
      while (polling && !c.closed) await c.poll(100);
    };
    let cLoop: Promise<void> | undefined;
    try {
      a.subscribe([topic]);
      const deadline = () => performance.now() + 60_000;
      let until = deadline();
      while (a.tell().size < P) {
        assert(performance.now() < until, "a owns every partition");
        await a.poll(100);
      }
      b.subscribe([topic]);
      until = deadline();
      while (a.tell().size !== P / 2 || b.tell().size !== P / 2) {
        assert(performance.now() < until, "a and b share the partitions");
        await Promise.all([a.poll(100), b.poll(100)]);
      }
      // b stops polling: when c joins, b's revoke (and so its next JoinGroup) waits, and the
      // broker holds a's JoinGroup meanwhile.
      const revokes = a.stats.revokes;
      c.subscribe([topic]);
      cLoop = pollC();
      until = deadline();
      while (a.stats.revokes === revokes || !b.rebalancePending()) {
        assert(performance.now() < until, "a gave a partition back; b is asked to");
        await a.poll(100);
      }
      const kept = new Set(a.tell().keys());
      assert(kept.size > 0, "a kept partitions");
      const last = new Map<Partition, number>();
      let gap = 0;
      const start = performance.now();
      for (const p of kept) last.set(p, start);
      while (performance.now() - start < 12_000 && b.rebalancePending()) {
        for (const v of await a.poll(100)) {
          if (!kept.has(v.partition)) continue;
          const now = performance.now();
          gap = Math.max(gap, now - last.get(v.partition)!);
          last.set(v.partition, now);
        }
      }
      const now = performance.now();
      for (const t of last.values()) gap = Math.max(gap, now - t);
      console.log(
        `held JoinGroup: kept partitions' longest pause ${gap.toFixed(0)} ms over ` +
          `${(now - start).toFixed(0)} ms`,
      );
      assert(gap < 1500, `a's kept partitions paused ${gap.toFixed(0)} ms while its join was held`);
    } finally {
      polling = false;
      await stopProducing();
      await Promise.all([a.close(), b.close()]);
      await cLoop?.catch(() => {});
      await c.close();
      await deleteTopics(kafka, [topic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "platformatic KIP-848: a member that owned every partition keeps half of them flowing while a second member joins and takes the rest",
  async (brokers) => {
    if (!(await supportsConsumerProtocol(brokers))) {
      console.warn("platformatic test: the broker has no KIP-848 protocol (Kafka < 4): skipped");
      return;
    }
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-kip848-join");
    const group = unique("g");
    const P = 6;
    await createTopic(kafka, topic, P);
    const o: PlatformaticConsumerOptions = { brokers, group, ...FAST, groupProtocol: "consumer" };
    const stopProducing = await produceSteadily(kafka, topic, P, 20);
    const a = new PlatformaticConsumer({ ...o, clientId: "a" });
    const b = new PlatformaticConsumer({ ...o, clientId: "b" });
    try {
      a.subscribe([topic]);
      let until = performance.now() + 60_000;
      while (a.tell().size < P) {
        assert(performance.now() < until, "a owns every partition");
        await a.poll(100);
      }
      // b joins: the broker moves three partitions to b once a has given them up (a learns
      // that from its next heartbeat, b from its own after that: up to two heartbeat
      // intervals), while a's other three go on flowing.
      const seen = new Map<Partition, number[]>();
      const start = performance.now();
      let bPolls: Promise<unknown> = Promise.resolve();
      b.subscribe([topic]);
      until = performance.now() + 60_000;
      let sharedAt: number | undefined;
      while (sharedAt === undefined || performance.now() - sharedAt < 1000) {
        assert(performance.now() < until, "a and b share the partitions");
        bPolls = bPolls.then(() => b.poll(0));
        for (const v of await a.poll(100)) {
          const times = seen.get(v.partition) ?? [];
          times.push(performance.now());
          seen.set(v.partition, times);
        }
        await bPolls;
        const shared = a.tell().size === P / 2 && b.tell().size === P / 2;
        if (shared && sharedAt === undefined) sharedAt = performance.now();
        if (!shared) sharedAt = undefined;
      }
      // Only the partitions a kept: the ones it gave up stopped at its revoke.
      const kept = [...a.tell().keys()];
      const end = performance.now();
      let gap = 0;
      for (const p of kept) {
        const times = [start, ...seen.get(p) ?? [], end];
        for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
      }
      console.log(
        `KIP-848 join: a kept ${kept.length} partitions, their longest pause ${
          gap.toFixed(0)
        } ms ` +
          `over ${(end - start).toFixed(0)} ms`,
      );
      assert(gap < 1000, `a's kept partitions paused ${gap.toFixed(0)} ms while b joined`);
    } finally {
      await stopProducing();
      await Promise.all([a.close(), b.close()]);
      await deleteTopics(kafka, [topic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);
