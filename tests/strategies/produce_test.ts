import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import type { Producer } from "../../backends/abstract.ts";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Produce } from "../../strategies/produce.ts";
import {
  BrokerValue,
  FILTERED_PAYLOAD,
  type Message,
  Partition,
  StepError,
  Topic,
} from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  Gate,
  P0,
  pollError,
  tick,
  waitFor,
} from "../_support/helpers.ts";

const OUT = Topic.of("produce-test-out");

/** A producer whose deliveries the test confirms or fails by hand. */
class FakeProducer<T> implements Producer<T> {
  readonly sent: Array<{
    payload: T;
    resolve: () => void;
    reject: (e: unknown) => void;
  }> = [];
  inFlight = 0;
  maxInFlight = 0;
  closed = false;
  /** Throw MessageRejected (local buffer full) while true. */
  full = false;
  #offset = 0;

  produce(destination: Topic | Partition, payload: T): Promise<BrokerValue<T>> {
    if (this.full) return Promise.reject(new MessageRejected("local queue full"));
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const partition = destination instanceof Partition ? destination : Partition.of(destination, 0);
    return new Promise((resolve, reject) => {
      this.sent.push({
        payload,
        resolve: () => {
          this.inFlight--;
          resolve(new BrokerValue(payload, partition, this.#offset++, 0));
        },
        reject: (e) => {
          this.inFlight--;
          reject(e);
        },
      });
    });
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

strategyContract<number>({
  name: "Produce",
  holds: 2,
  make: ({ next, highWaterMark, clock }) => {
    const broker = new LocalBroker<number>();
    broker.createTopic(OUT, 1);
    return new Produce(broker.getProducer(), OUT, next, { highWaterMark, clock, maxInFlight: 2 });
  },
  makeFailing: ({ next, highWaterMark, clock }) =>
    new Produce<number>(
      { produce: () => Promise.reject(new Error("broker down")), close: () => Promise.resolve() },
      OUT,
      next,
      { highWaterMark, clock },
    ),
});

function pipeline(gateOpen = true) {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(gateOpen, new CommitOffsets(recorder.commit));
  return { recorder, gate };
}

async function submitAll<T>(step: ProcessingStrategy<T>, messages: Message<T>[]): Promise<void> {
  for (const m of messages) {
    for (;;) {
      try {
        step.submit(m);
        break;
      } catch (e) {
        assertInstanceOf(e, MessageRejected);
        step.poll();
        await Promise.race([step.ready, tick()]);
      }
    }
  }
}

Deno.test("Produce: every payload lands in the destination topic, in order, then is committed", async () => {
  const broker = new LocalBroker<number>();
  const out = broker.createTopic("produce-e2e-out", 1);
  const { recorder, gate } = pipeline();
  const step = new Produce(broker.getProducer(), out, gate, { maxInFlight: 4 });
  const n = 25;
  await submitAll(step, Array.from({ length: n }, (_, i) => brokerMessage(i * 3, i)));
  await step.join(5000);
  const consumer = broker.getConsumer("produce-e2e-check");
  consumer.subscribe([out]);
  const got: number[] = [];
  while (got.length < n) {
    const batch = await consumer.poll(100);
    got.push(...batch.map((v) => v.payload));
  }
  await consumer.close();
  assertEquals(got, Array.from({ length: n }, (_, i) => i * 3));
  assertEquals(gate.received.map((m) => m.payload), got, "forwarded with the same payload");
  assertEquals(recorder.latest.get(P0), n, "source offsets committed after delivery");
});

Deno.test("Produce: forwards only confirmed deliveries, in input order, whatever the confirmation order", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline();
  const step = new Produce(producer, OUT, gate, { maxInFlight: 4 });
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => producer.sent.length === 4, "four deliveries outstanding");
  producer.sent[3].resolve();
  producer.sent[1].resolve();
  await tick();
  step.poll();
  assertEquals(gate.received.length, 0, "nothing passes the unconfirmed first delivery");
  assertEquals(recorder.latest.size, 0);
  producer.sent[0].resolve();
  await waitFor(() => gate.received.length === 2, "0 and 1 forwarded");
  assertEquals(gate.received.map((m) => m.payload), [0, 1]);
  producer.sent[2].resolve();
  await waitFor(() => gate.received.length === 4, "all forwarded");
  assertEquals(gate.received.map((m) => m.payload), [0, 1, 2, 3]);
  await step.join(1000);
  assertEquals(recorder.latest.get(P0), 4);
});

Deno.test("Produce: in-flight deliveries are bounded by maxInFlight, then submit rejects", async () => {
  const producer = new FakeProducer<number>();
  const { gate } = pipeline();
  const step = new Produce(producer, OUT, gate, { maxInFlight: 3, highWaterMark: 2 });
  let accepted = 0;
  for (let i = 0; i < 20; i++) {
    try {
      step.submit(brokerMessage(i, i));
      accepted++;
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
    }
    await tick();
  }
  assertEquals(producer.inFlight, 3);
  assertLessOrEqual(accepted, 3 + 2, "maxInFlight plus the queue");
  for (const s of producer.sent) s.resolve();
  await waitFor(() => producer.sent.length === accepted, "the queued messages to be sent");
  for (const s of producer.sent) s.resolve();
  await step.join(1000);
  assertEquals(producer.maxInFlight, 3);
  assertEquals(gate.received.length, accepted);
});

Deno.test("Produce: a delivery failure fails the step naming the message; nothing past it is committed", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline();
  const step = new Produce(producer, OUT, gate, { name: "to-archive", maxInFlight: 8 });
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => producer.sent.length === 5, "deliveries outstanding");
  producer.sent[0].resolve();
  producer.sent[1].resolve();
  producer.sent[3].resolve();
  producer.sent[2].reject(new Error("NOT_ENOUGH_REPLICAS"));
  const error = await pollError(step, "poll to throw");
  assertInstanceOf(error, StepError);
  assertEquals(error.step, "to-archive");
  assertEquals(error.messageRef, `${P0}@2`);
  assertStringIncludes(error.message, "NOT_ENOUGH_REPLICAS");
  assertEquals(gate.received.map((m) => m.payload), [0, 1], "confirmed work before it went on");
  await step.join(100).catch(() => {});
  assertEquals(recorder.latest.get(P0), 2, "never past the failed delivery");
});

Deno.test("Produce: join waits for outstanding deliveries", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline();
  const step = new Produce(producer, OUT, gate);
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => producer.sent.length === 3, "deliveries outstanding");
  let joined = false;
  const joining = step.join(5000).then(() => joined = true);
  await tick();
  assertEquals(joined, false);
  for (const s of producer.sent) s.resolve();
  await joining;
  assertEquals(recorder.latest.get(P0), 3);
});

Deno.test("Produce: a join timeout commits only confirmed deliveries", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline();
  const clock = new ManualClock();
  const step = new Produce(producer, OUT, gate, { clock });
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => producer.sent.length === 3, "deliveries outstanding");
  producer.sent[0].resolve();
  const joining = step.join(200);
  await clock.advance(250);
  await joining;
  assertEquals(recorder.latest.get(P0), 1);
  producer.sent[1].resolve();
  producer.sent[2].resolve();
  await tick();
  assertEquals(recorder.latest.get(P0), 1, "late confirmations change nothing");
});

Deno.test("Produce: the next step rejecting holds confirmed messages without producing them again", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline(false);
  const step = new Produce(producer, OUT, gate, { maxInFlight: 4 });
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => producer.sent.length === 4, "sent");
  for (const s of producer.sent) s.resolve();
  for (let i = 0; i < 5; i++) {
    step.poll();
    await tick();
  }
  assertEquals(recorder.latest.size, 0);
  gate.setOpen(true);
  await step.join(1000);
  assertEquals(producer.sent.length, 4, "produced once each");
  assertEquals(recorder.latest.get(P0), 4);
});

Deno.test("Produce: a full producer buffer (MessageRejected) is retried on poll, in order", async () => {
  const producer = new FakeProducer<number>();
  producer.full = true;
  const { gate } = pipeline();
  const step = new Produce(producer, OUT, gate, { maxInFlight: 4 });
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  await tick();
  step.poll();
  await tick();
  assertEquals(producer.sent.length, 0);
  producer.full = false;
  step.poll();
  await waitFor(() => producer.sent.length === 2, "both sent once the buffer has room");
  assertEquals(producer.sent.map((s) => s.payload), [0, 1]);
  for (const s of producer.sent) s.resolve();
  await step.join(1000);
  assertEquals(gate.received.map((m) => m.payload), [0, 1]);
});

Deno.test("Produce: filtered messages are not produced but their offsets are committed", async () => {
  const producer = new FakeProducer<number>();
  const { recorder, gate } = pipeline();
  const step = new Produce(producer, OUT, gate);
  step.submit(brokerMessage(FILTERED_PAYLOAD as unknown as number, 0));
  step.submit(brokerMessage(FILTERED_PAYLOAD as unknown as number, 1));
  await step.join(1000);
  assertEquals(producer.sent.length, 0);
  assertEquals(recorder.latest.get(P0), 2);
});

Deno.test("Produce: bad arguments are configuration errors", () => {
  const next = new Gate<number>();
  const producer = new FakeProducer<number>();
  assertThrows(
    () => new Produce(undefined as unknown as Producer<number>, OUT, next),
    ConfigurationError,
    "Producer",
  );
  assertThrows(() => new Produce(producer, "", next), ConfigurationError, "topic name");
  assertThrows(
    () => new Produce(producer, OUT, next, { maxInFlight: 0 }),
    ConfigurationError,
    "maxInFlight",
  );
  assert(new Produce(producer, "by-name", next).destination === Topic.of("by-name"));
});
