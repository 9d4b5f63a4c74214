import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import type { Consumer } from "../../backends/abstract.ts";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError } from "../../errors.ts";
import { consumerReadable } from "../../processing/consumer_readable.ts";
import { type BrokerValue, Message, Partition, Topic, Value } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { tick, waitFor } from "../_support/helpers.ts";

let topicSeq = 0;
function setup(partitions = 1, messages = 10) {
  const broker = new LocalBroker<string>();
  const topic = broker.createTopic(`readable-${topicSeq++}`, partitions);
  for (let i = 0; i < messages; i++) broker.produce(Partition.of(topic, i % partitions), `m${i}`);
  return { broker, topic, p: (i: number) => Partition.of(topic, i) };
}

/** Counts polls of the wrapped consumer. */
function counting<T>(consumer: Consumer<T>): Consumer<T> & { polls: number } {
  const c = consumer as Consumer<T> & { polls: number };
  c.polls = 0;
  const poll = consumer.poll.bind(consumer);
  c.poll = (timeoutMs?: number): Promise<BrokerValue<T>[]> => {
    c.polls++;
    return poll(timeoutMs);
  };
  return c;
}

Deno.test("consumerReadable: for await reads every message in order; break commits the acknowledged ones and closes", async () => {
  const { broker, topic, p } = setup(1, 10);
  const consumer = broker.getConsumer("g");
  const handle = consumerReadable(consumer, { topics: [topic], pollTimeoutMs: 5 });
  const seen: string[] = [];
  for await (const m of handle.readable) {
    seen.push(m.payload);
    if (seen.length <= 6) handle.ack(m);
    if (seen.length === 8) break;
  }
  assertEquals(seen, ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
  assertEquals(broker.committed("g").get(p(0)), 6, "committed up to the first unacknowledged");
  assert(consumer.closed, "breaking out of the loop closed the consumer");
  assertEquals(broker.members("g").length, 0, "the consumer left the group");
});

Deno.test("consumerReadable: commits never pass an unacknowledged message of a partition", async () => {
  const { broker, topic, p } = setup(2, 12);
  const h = consumerReadable(broker.getConsumer("g"), { topics: [topic], pollTimeoutMs: 5 });
  const reader = h.readable.getReader();
  const got: Message<string>[] = [];
  while (got.length < 12) {
    const r = await reader.read();
    got.push(r.value!);
  }
  const byP = (i: number) => got.filter((m) => (m.value as BrokerValue<string>).partition === p(i));
  const p0 = byP(0);
  const p1 = byP(1);
  h.ack([p0[0], p0[1], p0[3], p0[4]]); // offset 2 of partition 0 not acknowledged
  h.ack(p1);
  let committed = await h.commit();
  assertEquals(committed.get(p(0)), 2);
  assertEquals(committed.get(p(1)), 6);
  h.ack(p0[2]);
  committed = await h.commit();
  assertEquals(committed.get(p(0)), 5, "the gap filled: commit jumps over what was acknowledged");
  assertEquals(broker.committed("g").get(p(0)), 5);
  // A Value acknowledges everything delivered below its committable.
  h.ack(new Message(new Value("batch", new Map([[p(0), 6]]))));
  await h.commit();
  assertEquals(broker.committed("g").get(p(0)), 6);
  reader.releaseLock();
  await h.close();
});

Deno.test("consumerReadable: pull-based, the consumer is polled only while the stream wants more", async () => {
  const { broker, topic } = setup(1, 100);
  const consumer = counting(broker.getConsumer("g", { maxPollMessages: 5 }));
  const h = consumerReadable(consumer, { topics: [topic], highWaterMark: 5, pollTimeoutMs: 5 });
  await waitFor(() => consumer.polls >= 1 && h.readable.locked === false, "the first fetch");
  await waitFor(() => [...consumer.tell().values()][0] === 5, "five messages fetched");
  for (let i = 0; i < 5; i++) await tick();
  assertEquals(consumer.polls, 1, "no fetch while the stream is full");
  assertEquals([...consumer.tell().values()][0], 5);
  const reader = h.readable.getReader();
  await reader.read(); // one slot frees up: one more fetch
  await waitFor(() => [...consumer.tell().values()][0] === 10, "a second fetch");
  for (let i = 0; i < 5; i++) await tick();
  assertEquals(consumer.polls, 2);
  reader.releaseLock();
  await h.close();
});

Deno.test("consumerReadable: highWaterMark 0 fetches only when the reader asks", async () => {
  const { broker, topic } = setup(1, 10);
  const consumer = counting(broker.getConsumer("g", { maxPollMessages: 3 }));
  const h = consumerReadable(consumer, { topics: [topic], highWaterMark: 0, pollTimeoutMs: 5 });
  for (let i = 0; i < 5; i++) await tick();
  assertEquals(consumer.polls, 0);
  const reader = h.readable.getReader();
  assertEquals((await reader.read()).value?.payload, "m0");
  assertEquals(consumer.polls, 1);
  reader.releaseLock();
  await h.close();
});

Deno.test("consumerReadable: on revoke, acknowledged offsets are committed before the partitions are released", async () => {
  const { broker, topic, p } = setup(2, 10);
  const snapshots: Array<Map<Partition, number>> = [];
  const h = consumerReadable(broker.getConsumer("g"), {
    topics: [topic],
    pollTimeoutMs: 5,
    commitIntervalMs: 60_000,
    onRevoke: () => {
      snapshots.push(broker.committed("g"));
    },
  });
  const reader = h.readable.getReader();
  const got: Message<string>[] = [];
  while (got.length < 10) got.push((await reader.read()).value!);
  const p0 = got.filter((m) => (m.value as BrokerValue<string>).partition === p(0));
  h.ack(p0.slice(0, 3));
  assertEquals(broker.committed("g").size, 0, "nothing committed yet (long commit interval)");
  // A second member joins: the first one's next poll revokes everything.
  const other = broker.getConsumer("g");
  other.subscribe([topic]);
  const pending = reader.read(); // keeps the stream fetching, so the rebalance runs
  await waitFor(() => snapshots.length === 1, "the revoke");
  assertEquals(snapshots[0].get(p(0)), 3, "acknowledged offsets committed inside onRevoke");
  assertEquals(snapshots[0].get(p(1)), undefined, "nothing acknowledged, nothing committed");
  await other.poll(0); // completes the rebalance: partition 0 back to us, 1 to `other`
  const again = (await pending).value!;
  assertEquals(String(again), `${p(0)}@3`, "partition 0 is read again from the committed offset");
  // Acknowledgements of the revoked partition's old messages are ignored.
  const p1 = got.filter((m) => (m.value as BrokerValue<string>).partition === p(1));
  h.ack(p1);
  h.ack(again);
  await h.commit();
  const after = broker.committed("g");
  assertEquals(after.get(p(0)), 4);
  assertEquals(after.get(p(1)), undefined, "no commit for a partition we no longer own");
  reader.releaseLock();
  await h.close();
  await other.close();
});

Deno.test("consumerReadable: pipeThrough keeps messages; acknowledging the result commits the source", async () => {
  const { broker, topic, p } = setup(1, 5);
  const h = consumerReadable(broker.getConsumer("g"), { topics: [topic], pollTimeoutMs: 5 });
  const upper = h.readable.pipeThrough(
    new TransformStream<Message<string>, Message<string>>({
      transform(m, c) {
        c.enqueue(m.replacePayload(m.payload.toUpperCase()));
      },
    }),
  );
  const out: string[] = [];
  for await (const m of upper) {
    out.push(m.payload);
    h.ack(m);
    if (out.length === 5) break; // cancels through the pipe: commits and closes
  }
  assertEquals(out, ["M0", "M1", "M2", "M3", "M4"]);
  await waitFor(() => broker.committed("g").get(p(0)) === 5, "the final commit");
});

Deno.test("consumerReadable: a consumer failure errors the stream", async () => {
  const { broker, topic } = setup(1, 0);
  const consumer = broker.getConsumer("g");
  consumer.poll = () => Promise.reject(new Error("broker unreachable"));
  const h = consumerReadable(consumer, { topics: [topic] });
  await assertRejects(
    async () => {
      for await (const _ of h.readable) { /* nothing */ }
    },
    Error,
    "broker unreachable",
  );
  await h.close();
});

Deno.test("consumerReadable: bad options are configuration errors", () => {
  const { broker, topic } = setup(1, 0);
  assertThrows(
    () => consumerReadable(broker.getConsumer("g"), { topics: [] }),
    ConfigurationError,
    "at least one topic",
  );
  assertThrows(
    () => consumerReadable(broker.getConsumer("g"), { topics: [topic], highWaterMark: -1 }),
    ConfigurationError,
    "highWaterMark",
  );
  assertThrows(
    () => consumerReadable(undefined as unknown as Consumer<string>, { topics: [Topic.of("x")] }),
    ConfigurationError,
  );
});

Deno.test("consumerReadable: a full stream keeps the consumer in its group with paused keep-alive polls", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock, sessionTimeoutMs: 3000 });
  const topic = broker.createTopic(`readable-${topicSeq++}`, 1);
  for (let i = 0; i < 50; i++) broker.produce(topic, `m${i}`);
  const consumer = counting(broker.getConsumer("g", { maxPollMessages: 5 }));
  const h = consumerReadable(consumer, {
    topics: [topic],
    highWaterMark: 5,
    pollTimeoutMs: 0,
    keepAliveMs: 1000,
    commitIntervalMs: 1000,
    clock,
  });
  const reader = h.readable.getReader();
  const first = (await reader.read()).value!;
  h.ack(first);
  await waitFor(() => [...consumer.tell().values()][0] === 10, "the stream to fill");
  const fetched = [...consumer.tell().values()][0];
  // The reader is busy for 10 s, far beyond the 3 s session timeout.
  for (let t = 0; t < 10; t++) await clock.advance(1000);
  assert(consumer.polls >= 3 + 8, `keep-alive polls happened (${consumer.polls})`);
  assertEquals([...consumer.tell().values()][0], fetched, "nothing fetched while full");
  assertEquals(consumer.paused().length, 1, "partitions paused while the reader is busy");
  assertEquals(broker.committed("g").get(Partition.of(topic, 0)), 1, "acks committed meanwhile");
  assertEquals(broker.members("g").length, 1, "still a member of the group");
  const rest: string[] = [];
  while (rest.length < 49) rest.push((await reader.read()).value!.payload);
  assertEquals(rest[48], "m49", "reading resumes the partitions and fetches the rest");
  reader.releaseLock();
  await h.close();
});
