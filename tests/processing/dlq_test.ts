/**
 * Dead-letter queue on the in-memory broker: invalid messages are routed aside with their
 * headers, commits pass them only once the DLQ confirmed them, limits and DLQ outages stop
 * the consumer without losing anything, and a restart resumes from the right offset.
 */
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import type { Producer } from "../../backends/abstract.ts";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MESSAGE_REJECTED } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import {
  DLQ_HEADERS,
  DlqDeliveryError,
  DlqLimitExceeded,
  DlqMessageMissing,
  DlqPolicy,
  type DlqPolicyOptions,
  type DlqRecord,
  withDlqHeaders,
} from "../../processing/dlq.ts";
import { StreamProcessor, type StreamProcessorOptions } from "../../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import { BrokerValue, InvalidMessage, type Message, Partition, type Topic } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { DlqRunner } from "../../processing/_dlq_runner.ts";
import { tick, waitFor } from "../_support/helpers.ts";

/** A DLQ producer whose deliveries can be held, failed or hung on demand. */
class TestProducer<P> implements Producer<P> {
  mode: "pass" | "hold" | "fail" | "hang" = "pass";
  attempts = 0;
  readonly held: Array<{
    destination: Topic | Partition;
    payload: P;
    resolve: (v: BrokerValue<P>) => void;
    reject: (e: unknown) => void;
  }> = [];

  constructor(readonly inner: Producer<P>) {}

  produce(destination: Topic | Partition, payload: P): Promise<BrokerValue<P>> {
    this.attempts++;
    switch (this.mode) {
      case "fail":
        return Promise.reject(new Error("DLQ broker unreachable (test outage)"));
      case "hang":
        return new Promise(() => {});
      case "hold":
        return new Promise((resolve, reject) =>
          this.held.push({ destination, payload, resolve, reject })
        );
      default:
        return this.inner.produce(destination, payload);
    }
  }

  release(): void {
    for (const h of this.held.splice(0)) {
      this.inner.produce(h.destination, h.payload).then(h.resolve, h.reject);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(payloads: string[], partitions = 1) {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<string>({ clock });
  const topic = broker.createTopic(`dlq-src-${crypto.randomUUID()}`, partitions);
  for (const p of payloads) broker.produce(topic, p);
  const dlqBroker = new LocalBroker<DlqRecord<string>>({ clock });
  const dlqTopic = dlqBroker.createTopic(`dlq-${crypto.randomUUID()}`, 1);
  const producer = new TestProducer(dlqBroker.getProducer());
  return { clock, broker, topic, dlqBroker, dlqTopic, producer };
}

type Env = ReturnType<typeof setup>;

/** Rejects every payload starting with "bad" as invalid; records the others. */
function rejectBad(processed: string[]) {
  return (commit: Commit): ProcessingStrategy<string> =>
    new RunTask(
      (m: Message<string>) => {
        if (m.payload.startsWith("bad")) {
          throw InvalidMessage.fromValue(m.value as BrokerValue<string>, `rejected ${m.payload}`);
        }
        processed.push(m.payload);
        return m.payload;
      },
      new CommitOffsets(commit),
      { name: "validate" },
    );
}

function makeProcessor(
  env: Env,
  build: (commit: Commit) => ProcessingStrategy<string>,
  dlq: Partial<DlqPolicyOptions<string, DlqRecord<string>>> = {},
  extra: Partial<StreamProcessorOptions<string>> = {},
) {
  return new StreamProcessor<string>({
    consumer: env.broker.getConsumer("g", { maxPollMessages: 5 }),
    topics: [env.topic],
    factory: { createWithPartitions: (commit) => build(commit) },
    commitPolicy: CommitPolicy.IMMEDIATE,
    dlqPolicy: new DlqPolicy<string>({ producer: env.producer, topic: env.dlqTopic, ...dlq }),
    pollTimeoutMs: 0,
    handleSignals: false,
    clock: env.clock,
    ...extra,
  });
}

async function runUntil(p: StreamProcessor<string>, cond: () => boolean, what: string) {
  for (let i = 0; i < 5_000 && !cond(); i++) {
    await p.runOnce();
    await tick();
  }
  assert(cond(), `condition not reached: ${what}`);
}

/** Everything in the DLQ topic, in order. */
async function dlqContents(env: Env): Promise<DlqRecord<string>[]> {
  const c = env.dlqBroker.getConsumer(`reader-${crypto.randomUUID()}`);
  c.subscribe([env.dlqTopic]);
  const out = (await c.poll(0)).map((v) => v.payload);
  await c.close();
  return out;
}

function committed(env: Env, index = 0): number | undefined {
  return env.broker.committed("g").get(env.broker.partitions(env.topic)[index]);
}

Deno.test("invalid messages land in the DLQ topic with their raw payload and headers", async () => {
  const env = setup(["a", "bad-1", "b", "c", "bad-2", "d"]);
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed));
  await runUntil(p, () => committed(env) === 6, "everything committed");
  assertEquals(processed, ["a", "b", "c", "d"]);
  const dlq = await dlqContents(env);
  assertEquals(dlq.map((r) => r.value), ["bad-1", "bad-2"]);
  const source = env.broker.partitions(env.topic)[0];
  assertEquals(dlq[0].headers, {
    [DLQ_HEADERS.topic]: env.topic.name,
    [DLQ_HEADERS.partition]: "0",
    [DLQ_HEADERS.offset]: "1",
    [DLQ_HEADERS.timestamp]: String(env.broker.clock.now()),
    [DLQ_HEADERS.reason]: "rejected bad-1",
    [DLQ_HEADERS.step]: "validate",
  });
  assertEquals(dlq[1].headers[DLQ_HEADERS.offset], "4");
  assertEquals(dlq[0].timestamp, env.broker.clock.now());
  assertEquals(p.stats.invalidMessages, 2);
  assertEquals(p.stats.deadLettered, 2);
  assertEquals(p.stats.dlqDropped, 0);
  assert(source !== undefined);
});

Deno.test("commits move past an invalid message only once its DLQ delivery is confirmed", async () => {
  const env = setup(["a", "b", "bad", "c", "d", "e"]);
  env.producer.mode = "hold";
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed));
  await runUntil(p, () => processed.length === 5 && env.producer.held.length === 1, "held");
  for (let i = 0; i < 5; i++) await p.runOnce();
  assertEquals(committed(env), 2, "stops at the invalid message while its delivery is pending");
  env.producer.release();
  await waitFor(() => committed(env) === 6, "commit past the message after confirmation");
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("limit maxConsecutiveInvalid stops the consumer and commits nothing past the culprit", async () => {
  const env = setup(["a", "bad-1", "bad-2", "bad-3", "b", "c"]);
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed), { limit: { maxConsecutiveInvalid: 2 } });
  const err = await assertRejects(() => p.run(), DlqLimitExceeded);
  assertEquals(err.limit, "maxConsecutiveInvalid");
  assertEquals(err.offset, 3);
  assertStringIncludes(err.message, "maxConsecutiveInvalid");
  assertStringIncludes(err.message, "3 invalid messages in a row");
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad-1", "bad-2"]);
  assertEquals(committed(env), 3, "the first two were dead-lettered, the third was not");
  assertEquals(processed.includes("b"), false);
});

Deno.test("limit maxInvalidRatio stops the consumer once the ratio is exceeded", async () => {
  const payloads = Array.from({ length: 60 }, (_, i) => i % 5 === 4 ? `bad-${i}` : `ok-${i}`);
  const env = setup(payloads);
  const p = makeProcessor(env, rejectBad([]), {
    limit: { maxInvalidRatio: 0.1, minMessagesForRatio: 20 },
  });
  const err = await assertRejects(() => p.run(), DlqLimitExceeded);
  assertEquals(err.limit, "maxInvalidRatio");
  assertStringIncludes(err.message, "maxInvalidRatio 0.1");
  // 20% invalid: the first invalid once 20 messages were seen (offset 19) crosses the limit.
  assertEquals(err.offset, 19);
  assertEquals(committed(env), 19);
  assertEquals((await dlqContents(env)).length, 3);
});

Deno.test("limits below the threshold dead-letter everything and keep going", async () => {
  const payloads = Array.from({ length: 200 }, (_, i) => i % 25 === 7 ? `bad-${i}` : `ok-${i}`);
  const env = setup(payloads);
  const p = makeProcessor(env, rejectBad([]), {
    limit: { maxInvalidRatio: 0.05, maxConsecutiveInvalid: 1 },
  });
  await runUntil(p, () => committed(env) === 200, "everything committed");
  assertEquals((await dlqContents(env)).length, 8);
});

Deno.test("DLQ outage stops the consumer without losing anything; a restart resumes and delivers all", async () => {
  const payloads = ["a", "b", "bad-1", "c", "d", "bad-2", "e"];
  const env = setup(payloads);
  env.producer.mode = "fail";
  const processed: string[] = [];
  const p1 = makeProcessor(env, rejectBad(processed));
  const err = await assertRejects(() => p1.run(), DlqDeliveryError);
  assertEquals(err.offset, 2);
  assertStringIncludes(err.message, "DLQ broker unreachable");
  assertStringIncludes(err.message, "committed nothing at or past offset 2");
  assertEquals(committed(env), 2, "nothing committed past the message that went nowhere");
  assertEquals((await dlqContents(env)).length, 0);

  // The outage is over: a new processor in the same group resumes from offset 2.
  env.producer.mode = "pass";
  const processed2: string[] = [];
  const p2 = makeProcessor(env, rejectBad(processed2));
  await runUntil(p2, () => committed(env) === 7, "everything committed after restart");
  assertEquals(processed2[0], "c", "resumed right after... the invalid message, re-read first");
  assertEquals(processed2, ["c", "d", "e"]);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad-1", "bad-2"]);
  // Every valid payload was processed at least once across both runs.
  const all = new Set([...processed, ...processed2]);
  for (const x of payloads.filter((x) => !x.startsWith("bad"))) assert(all.has(x), x);
});

Deno.test("a DLQ delivery that is never confirmed times out and stops the consumer", async () => {
  const env = setup(["a", "bad", "b"]);
  env.producer.mode = "hang";
  const p = makeProcessor(env, rejectBad([]), { deliveryTimeoutMs: 5_000 });
  await runUntil(p, () => env.producer.attempts === 1, "delivery attempted");
  await p.runOnce();
  assertEquals(committed(env), 1);
  await env.clock.advance(5_000);
  const err = await assertRejects(() => p.runOnce(), DlqDeliveryError);
  assertStringIncludes(err.message, "not confirmed within 5000 ms");
  assertEquals(committed(env), 1);
});

Deno.test("drop-and-count: failed deliveries are dropped, counted, and processing goes on", async () => {
  const env = setup(["a", "bad-1", "b", "bad-2", "c"]);
  env.producer.mode = "fail";
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed), { onDeliveryFailure: "drop-and-count" });
  await runUntil(p, () => committed(env) === 5, "everything committed");
  assertEquals(processed, ["a", "b", "c"]);
  assertEquals(p.stats.dlqDropped, 2);
  assertEquals(p.stats.deadLettered, 0);
});

Deno.test("shutdown waits for pending DLQ deliveries before the final commit", async () => {
  const env = setup(["a", "bad", "b"]);
  env.producer.mode = "hold";
  const p = makeProcessor(env, rejectBad([]), {}, { commitPolicy: CommitPolicy.ONCE_PER_SECOND });
  const running = p.run();
  await waitFor(() => env.producer.held.length === 1, "delivery in flight");
  p.signalShutdown();
  for (let i = 0; i < 5; i++) await tick();
  assert((committed(env) ?? 0) <= 1, "not past the message whose delivery is pending");
  env.producer.release();
  await running;
  assertEquals(committed(env), 3);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("shutdown with a failing DLQ rejects and commits nothing past the message", async () => {
  const env = setup(["a", "b", "bad", "c"]);
  env.producer.mode = "hold";
  const p = makeProcessor(env, rejectBad([]), {}, { commitPolicy: CommitPolicy.ONCE_PER_SECOND });
  const running = p.run();
  await waitFor(() => env.producer.held.length === 1, "delivery in flight");
  p.signalShutdown();
  for (const h of env.producer.held.splice(0)) h.reject(new Error("leader not available"));
  await assertRejects(() => running, DlqDeliveryError, "leader not available");
  assertEquals(committed(env), 2);
});

Deno.test("run({ untilCaughtUp: true }) with a DLQ delivery in flight ends only once it landed, committed past it", async () => {
  const env = setup(["a", "bad", "b", "c"]);
  env.producer.mode = "hold";
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed));
  let ended = false;
  const running = p.run({ untilCaughtUp: true }).finally(() => (ended = true));
  await waitFor(() => env.producer.held.length === 1, "delivery in flight");
  await waitFor(() => processed.length === 3, "the valid messages processed");
  for (let i = 0; i < 10; i++) await tick();
  assertEquals(ended, false, "caught up, but the invalid message went nowhere yet");
  assertEquals(committed(env), 1, "nothing committed past the message in flight");
  env.producer.release();
  await running;
  assertEquals(committed(env), 4);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("in-flight DLQ deliveries are bounded: the processor waits at maxInFlight", async () => {
  const env = setup(Array.from({ length: 10 }, (_, i) => `bad-${i}`));
  env.producer.mode = "hold";
  const p = makeProcessor(env, rejectBad([]), { maxInFlight: 3 });
  const running = p.run();
  await waitFor(() => env.producer.held.length === 3, "three deliveries in flight");
  for (let i = 0; i < 10; i++) await tick();
  assertEquals(env.producer.held.length, 3, "no fourth delivery while three are pending");
  env.producer.mode = "pass";
  env.producer.release();
  await waitFor(() => committed(env) === 10, "all dead-lettered and committed");
  p.signalShutdown();
  await running;
  assertEquals((await dlqContents(env)).length, 10);
});

Deno.test("raw-message buffer: pruned as commits advance (no eviction while the pipeline keeps up)", async () => {
  const payloads = Array.from({ length: 100 }, (_, i) => i === 97 ? "bad" : `ok-${i}`);
  const env = setup(payloads);
  // Polls of 5 messages and a buffer of 6: without pruning, messages would be evicted.
  const p = makeProcessor(env, rejectBad([]), { maxBufferedPerPartition: 6 });
  await runUntil(p, () => committed(env) === 100, "everything committed");
  assertEquals(p.stats.dlqBufferEvicted, 0);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("raw-message buffer: an evicted message cannot be dead-lettered → explicit stop", async () => {
  const env = setup(["bad", "a", "b", "c", "d"]);
  // A step that holds everything until the 5th message, then reports the 1st invalid.
  const held: Message<string>[] = [];
  const factory = (commit: Commit): ProcessingStrategy<string> => {
    const next = new CommitOffsets<string>(commit);
    let invalid: InvalidMessage | undefined;
    return {
      submit(m) {
        held.push(m);
        if (held.length === 5) {
          invalid = InvalidMessage.fromValue(held[0].value as BrokerValue<string>);
        }
      },
      poll() {
        if (invalid) {
          const e = invalid;
          invalid = undefined;
          throw e;
        }
        next.poll();
      },
      close: () => next.close(),
      join: (t) => next.join(t),
      terminate: () => next.terminate(),
      get ready() {
        return next.ready;
      },
    };
  };
  const p = makeProcessor(env, factory, { maxBufferedPerPartition: 3 });
  const err = await assertRejects(() => p.run(), DlqMessageMissing);
  assertStringIncludes(err.message, "evicted");
  assertStringIncludes(err.message, "maxBufferedPerPartition");
  assertEquals(p.stats.dlqBufferEvicted, 2);
  assertEquals(committed(env), undefined, "nothing committed");

  // With drop-and-count the same situation is counted and processing goes on.
  const env2 = setup(["bad", "a", "b", "c", "d"]);
  held.length = 0;
  const p2 = makeProcessor(env2, factory, {
    maxBufferedPerPartition: 3,
    onDeliveryFailure: "drop-and-count",
  });
  await runUntil(p2, () => p2.stats.dlqDropped === 1, "dropped and counted");
  assertEquals((await dlqContents(env2)).length, 0);
});

Deno.test("an invalid report for a message never polled is an explicit error", async () => {
  const env = setup(["a"]);
  const p = makeProcessor(env, (commit) => {
    const next = new CommitOffsets<string>(commit);
    let once = true;
    return {
      submit: (m) => next.submit(m),
      poll() {
        if (once) {
          once = false;
          throw new InvalidMessage(env.broker.partitions(env.topic)[0], 999, "phantom");
        }
        next.poll();
      },
      close: () => next.close(),
      join: (t) => next.join(t),
      terminate: () => next.terminate(),
      get ready() {
        return next.ready;
      },
    };
  });
  const err = await assertRejects(() => p.run(), DlqMessageMissing);
  assertStringIncludes(err.message, "never polled");
});

/**
 * A strategy for the paused-consumer cases: rejects while `full`, throws InvalidMessage
 * from `submit` for payloads starting with "bad", and can report an invalid message from
 * `poll`.
 */
class Scripted implements ProcessingStrategy<string> {
  /** Rejects once this many messages were accepted (starts full after "a", "b"). */
  capacity = 2;
  full = false;
  fromPoll: InvalidMessage | undefined;
  readonly accepted: string[] = [];
  #open: () => void = () => {};
  #ready: Promise<void> = Promise.resolve();
  constructor(readonly commit: Commit) {}
  setFull(full: boolean): void {
    if (!full) this.capacity = Infinity;
    this.full = full;
    if (full) this.#ready = new Promise((r) => this.#open = r);
    else this.#open();
  }
  get ready(): Promise<void> {
    return this.#ready;
  }
  submit(m: Message<string>): void {
    if (!this.full && this.accepted.length >= this.capacity) this.setFull(true);
    if (this.full) throw MESSAGE_REJECTED;
    if (m.payload.startsWith("bad")) {
      throw InvalidMessage.fromValue(m.value as BrokerValue<string>, "bad", "scripted");
    }
    this.accepted.push(m.payload);
    // "late" messages await a verdict: not committed until a later message covers them.
    if (!m.payload.startsWith("late")) this.commit(m.committable);
  }
  poll(): void {
    const e = this.fromPoll;
    this.fromPoll = undefined;
    if (e) throw e;
  }
  close(): void {}
  join(): Promise<void> {
    return Promise.resolve();
  }
  terminate(): void {}
}

function pausedScenario(payloads = ["a", "b", "bad", "c", "d"]) {
  const env = setup(payloads, 1);
  let strategy!: Scripted;
  const consumer = env.broker.getConsumer("g", { maxPollMessages: 2 });
  const p = new StreamProcessor<string>({
    consumer,
    topics: [env.topic],
    factory: { createWithPartitions: (commit) => (strategy = new Scripted(commit)) },
    commitPolicy: CommitPolicy.IMMEDIATE,
    dlqPolicy: new DlqPolicy<string>({ producer: env.producer, topic: env.dlqTopic }),
    pauseAfterMs: 100,
    pollTimeoutMs: 0,
    handleSignals: false,
    clock: env.clock,
  });
  return { env, p, consumer, strategy: () => strategy };
}

Deno.test("paused consumer: an invalid carried message is dropped, dead-lettered, and partitions resume", async () => {
  const { env, p, consumer, strategy } = pausedScenario();
  const running = p.run();
  await waitFor(() => strategy() !== undefined && strategy().accepted.length === 2, "a, b");
  await waitFor(() => p.backpressured, "backpressure on the carried [bad, c]");
  for (let i = 0; i < 10 && !p.paused; i++) await env.clock.advance(50);
  assert(p.paused, "paused");
  assertEquals(consumer.paused().length, 1);
  strategy().setFull(false); // accepts again; "bad" is the carried message and is invalid
  for (let i = 0; i < 20 && p.paused; i++) await env.clock.advance(50);
  await waitFor(() => committed(env) === 5, "everything committed");
  assertEquals(p.paused, false);
  assertEquals(consumer.paused().length, 0, "partitions resumed");
  assertEquals(strategy().accepted, ["a", "b", "c", "d"], "only the invalid message was dropped");
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
  p.signalShutdown();
  await running;
});

Deno.test("paused consumer: an invalid message reported by poll keeps the carried message", async () => {
  const { env, p, consumer, strategy } = pausedScenario(["a", "late", "bad", "c", "d"]);
  const running = p.run();
  await waitFor(() => strategy() !== undefined && strategy().accepted.length === 2, "a, late");
  await waitFor(() => p.backpressured, "backpressure on the carried [bad, c]");
  for (let i = 0; i < 10 && !p.paused; i++) await env.clock.advance(50);
  assert(p.paused, "paused");
  // The pipeline reports "late" (accepted earlier) invalid while "bad", "c" are carried.
  const src = env.broker.partitions(env.topic)[0];
  strategy().fromPoll = new InvalidMessage(src, 1, "late verdict", "scripted");
  for (let i = 0; i < 20 && strategy().fromPoll !== undefined; i++) await env.clock.advance(50);
  assertEquals(strategy().fromPoll, undefined, "reported");
  assert(p.paused, "still paused: the carried messages are not accepted yet");
  assertEquals(p.carriedCount, 2, "the carried messages were kept");
  strategy().setFull(false);
  for (let i = 0; i < 20 && p.paused; i++) await env.clock.advance(50);
  await waitFor(() => committed(env) === 5, "everything committed");
  assertEquals(consumer.paused().length, 0, "partitions resumed");
  assertEquals(strategy().accepted, ["a", "late", "c", "d"]);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["late", "bad"]);
  p.signalShutdown();
  await running;
});

Deno.test("invalid messages reported during join (revoke/shutdown) are dead-lettered before the final commit", async () => {
  const env = setup(["a", "bad", "b"]);
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed), {}, {
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
  });
  // Poll once (messages submitted), then shut down at once: the invalid one surfaces in join.
  await p.runOnce();
  p.signalShutdown();
  await p.run();
  assertEquals(committed(env), 3);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("two partitions: an invalid message blocks only its own partition's commits", async () => {
  const env = setup([], 2);
  const [p0, p1] = env.broker.partitions(env.topic);
  for (const x of ["a0", "bad0", "b0"]) env.broker.produce(p0, x);
  for (const x of ["a1", "b1", "c1"]) env.broker.produce(p1, x);
  env.producer.mode = "hold";
  const p = makeProcessor(env, rejectBad([]));
  await runUntil(p, () => committed(env, 1) === 3, "partition 1 fully committed");
  assertEquals(committed(env, 0), 1, "partition 0 waits for the DLQ");
  env.producer.release();
  await waitFor(() => committed(env, 0) === 3, "partition 0 committed after delivery");
});

Deno.test("withDlqHeaders merges the standard headers into payloads that carry headers", () => {
  const src = new BrokerValue(
    { key: "k", value: "v", headers: { trace: "t1" } as Record<string, string> },
    Partition.of("with-headers", 0),
    5,
    42,
  );
  const out = withDlqHeaders(src, {
    partition: src.partition,
    offset: 5,
    timestamp: 42,
    reason: "r",
    step: "s",
    headers: { [DLQ_HEADERS.reason]: "r" },
  });
  assertEquals(out, { key: "k", value: "v", headers: { trace: "t1", [DLQ_HEADERS.reason]: "r" } });
});

Deno.test("DlqPolicy validates its options with clear errors", () => {
  const { producer, dlqTopic } = setup([]);
  const bad: Array<[Partial<DlqPolicyOptions<string, DlqRecord<string>>>, string]> = [
    [{ producer: undefined }, "producer"],
    [{ limit: { maxConsecutiveInvalid: 0 } }, "maxConsecutiveInvalid"],
    [{ limit: { maxInvalidRatio: 1.5 } }, "maxInvalidRatio"],
    [{ maxBufferedPerPartition: -1 }, "maxBufferedPerPartition"],
    [{ maxInFlight: 0.5 }, "maxInFlight"],
    [{ deliveryTimeoutMs: 0 }, "deliveryTimeoutMs"],
    [{ build: "x" as never }, "build"],
    [{ topic: 5 as never }, "topic"],
    [{ onDeliveryFailure: "ignore" as never }, "onDeliveryFailure"],
  ];
  for (const [opts, what] of bad) {
    assertThrows(
      () => new DlqPolicy<string>({ producer, topic: dlqTopic, ...opts } as never),
      ConfigurationError,
      what,
    );
  }
  const env = setup([]);
  assertThrows(
    () =>
      new StreamProcessor<string>({
        consumer: env.broker.getConsumer("g"),
        topics: [env.topic],
        factory: { createWithPartitions: (c) => new CommitOffsets(c) },
        dlqPolicy: { producer } as never,
        handleSignals: false,
      }),
    ConfigurationError,
    "DlqPolicy",
  );
  assertInstanceOf(new DlqPolicy<string>({ producer, topic: dlqTopic }), DlqPolicy);
});

Deno.test("revoke waits for pending DLQ deliveries, then commits past them before handing over", async () => {
  const env = setup(["a", "bad", "b", "c"]);
  env.producer.mode = "hold";
  const processed: string[] = [];
  const p1 = makeProcessor(env, rejectBad(processed), {}, {
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
  });
  await runUntil(p1, () => env.producer.held.length === 1 && processed.length === 3, "held");
  // A second member joins: p1 must revoke (close, join, wait for the DLQ, commit).
  const processed2: string[] = [];
  const p2 = makeProcessor(env, rejectBad(processed2));
  const revoking = p1.runOnce();
  await p2.runOnce();
  for (let i = 0; i < 5; i++) await tick();
  assert((committed(env) ?? 0) <= 1, "nothing committed past the pending delivery");
  env.producer.mode = "pass";
  env.producer.release();
  await revoking;
  assertEquals(p1.stats.revocations, 1);
  assertEquals(committed(env), 4, "the revoke committed past the dead-lettered message");
  for (let i = 0; i < 5; i++) {
    await p1.runOnce();
    await p2.runOnce();
  }
  assertEquals(processed2, [], "the new owner re-reads nothing");
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad"]);
});

Deno.test("raw-message buffer: re-delivered offsets replace the stale tail; lookups still work", () => {
  const part = Partition.of(`rewind-${crypto.randomUUID()}`, 0);
  const stats = { deadLettered: 0, dlqDropped: 0, dlqBufferEvicted: 0 };
  const dlqBroker = new LocalBroker<DlqRecord<string>>();
  const topic = dlqBroker.createTopic(`dlq-${crypto.randomUUID()}`, 1);
  const resolved: number[] = [];
  const runner = new DlqRunner<string>(
    new DlqPolicy<string>({ producer: dlqBroker.getProducer(), topic }),
    { clock: new ManualClock(0), stats, resolved: (_p, o) => resolved.push(o) },
  );
  const values = (from: number, to: number, tag: string) =>
    Array.from(
      { length: to - from },
      (_, k) => new BrokerValue(`${tag}${from + k}`, part, from + k, 0),
    );
  runner.record(values(0, 5, "old"));
  runner.record(values(3, 8, "new")); // the consumer went back to offset 3
  assertEquals(runner.buffered(part), 8);
  runner.handle(new InvalidMessage(part, 4, "x"));
  runner.handle(new InvalidMessage(part, 1, "y"));
  runner.prune(new Map([[part, 6]]));
  assertEquals(runner.buffered(part), 2);
  assertThrows(() => runner.handle(new InvalidMessage(part, 4, "twice")), DlqMessageMissing);
});

Deno.test("the DLQ works the same with metrics enabled (steps wrapped by the meter)", async () => {
  const env = setup(["a", "bad-1", "b", "bad-2", "c"]);
  const processed: string[] = [];
  const p = makeProcessor(env, rejectBad(processed), {}, { meterProvider: new MeterProvider() });
  await runUntil(p, () => committed(env) === 5, "everything committed");
  assertEquals(processed, ["a", "b", "c"]);
  assertEquals((await dlqContents(env)).map((r) => r.value), ["bad-1", "bad-2"]);
  p.signalShutdown();
  await p.run();
});

// Decode is a strategy like any other: it obeys the strategy contract.
// Regression: an InvalidMessage surfacing from `next.join()` inside `StreamStep.join` must
// not leave the downstream step undrained when the processor retries `join()`.
Deno.test({
  name: "invalid message from a downstream async step during join: the downstream is drained",
  fn: async () => {
    const env = setup(["a", "b", "bad", "c", "d"]);
    const seen: string[] = [];
    const p = makeProcessor(
      env,
      (commit) =>
        new RunTask(
          (m: Message<string>) => m.payload,
          new RunTaskAsync(
            async (m: Message<string>) => {
              await tick();
              if (m.payload === "bad") {
                throw InvalidMessage.fromValue(m.value as BrokerValue<string>, "bad");
              }
              seen.push(m.payload);
              return m.payload;
            },
            new CommitOffsets(commit),
            { name: "second", concurrency: 1 },
          ),
          { name: "first" },
        ),
      {},
      { clock: undefined },
    );
    await p.runOnce();
    p.signalShutdown();
    await p.run();
    assertEquals(seen, ["a", "b", "c", "d"]);
    assertEquals(committed(env), 5);
  },
});
