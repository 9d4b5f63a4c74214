/**
 * Decode: payloads that fail to decode become `InvalidMessage`s (dead-lettered by the
 * processor's DLQ), codecs, and the strategy contract.
 */
import { assertEquals, assertInstanceOf, assertStringIncludes, assertThrows } from "@std/assert";
import type { Producer } from "../../backends/abstract.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { DLQ_HEADERS, DlqPolicy, type DlqRecord } from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Decode, JSON_CODEC } from "../../strategies/decode.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { Message, Partition, StepError, Value } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import { pollError, tick } from "../_support/helpers.ts";

/** A source topic holding `payloads`, and a dead-letter topic, on a manual clock. */
function setup(payloads: string[]) {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<string>({ clock });
  const topic = broker.createTopic(`decode-src-${crypto.randomUUID()}`, 1);
  for (const p of payloads) broker.produce(topic, p);
  const dlqBroker = new LocalBroker<DlqRecord<string>>({ clock });
  const dlqTopic = dlqBroker.createTopic(`decode-dlq-${crypto.randomUUID()}`, 1);
  // The dead letters, as the DLQ producer confirmed them.
  const deadLetters: DlqRecord<string>[] = [];
  const inner = dlqBroker.getProducer();
  const producer: Producer<DlqRecord<string>> = {
    produce: (destination, payload) =>
      inner.produce(destination, payload).then((sent) => {
        deadLetters.push(sent.payload);
        return sent;
      }),
    close: () => inner.close(),
  };
  return { clock, broker, topic, dlqTopic, producer, deadLetters };
}

type Env = ReturnType<typeof setup>;

function makeProcessor(env: Env, build: (commit: Commit) => ProcessingStrategy<string>) {
  return new StreamProcessor<string>({
    consumer: env.broker.getConsumer("g", { maxPollMessages: 5 }),
    topics: [env.topic],
    factory: { createWithPartitions: (commit) => build(commit) },
    commitPolicy: CommitPolicy.IMMEDIATE,
    dlqPolicy: new DlqPolicy<string>({
      producer: env.producer,
      topic: env.dlqTopic,
    }),
    pollTimeoutMs: 0,
    handleSignals: false,
    clock: env.clock,
  });
}

function committed(env: Env): number | undefined {
  return env.broker.committed("g").get(env.broker.partitions(env.topic)[0]);
}

Deno.test("Decode: payloads that fail to decode become InvalidMessage and are dead-lettered", async () => {
  const env = setup(['{"n":1}', "{not json", '{"n":2}', "", '{"n":3}']);
  const sums: number[] = [];
  const p = makeProcessor(env, (commit) =>
    new Decode(
      (raw: string) => JSON_CODEC.decode(raw) as { n: number },
      new RunTask((m) => sums.push(m.payload.n), new CommitOffsets(commit)),
    ));
  for (let i = 0; i < 5_000 && committed(env) !== 5; i++) {
    await p.runOnce();
    await tick();
  }
  assertEquals(committed(env), 5, "everything committed");
  assertEquals(sums, [1, 2, 3]);
  const dlq = env.deadLetters;
  assertEquals(dlq.map((r) => r.value), ["{not json", ""]);
  assertStringIncludes(dlq[0].headers[DLQ_HEADERS.reason], "decode failed");
  assertEquals(dlq[0].headers[DLQ_HEADERS.step], "decode");
});

Deno.test("Decode: works with a codec object and UTF-8 bytes; bad UTF-8 is invalid", () => {
  assertEquals(JSON_CODEC.decode(new TextEncoder().encode('{"a":[1]}')), { a: [1] });
  assertThrows(() => JSON_CODEC.decode(new Uint8Array([0xff, 0xfe])));
  assertThrows(
    () => new Decode(42 as never, new CommitOffsets(() => {})),
    ConfigurationError,
    "codec",
  );
});

strategyContract<number>({
  name: "Decode",
  make: ({ next, highWaterMark, clock }) =>
    new Decode((raw: number) => raw * 2, next, { highWaterMark, clock }),
});

Deno.test("Decode: a batched value that fails to decode fails the step (it cannot be dead-lettered)", async () => {
  const p0 = Partition.of(`decode-${crypto.randomUUID()}`, 0);
  const step = new Decode(
    (raw: string) => JSON_CODEC.decode(raw),
    new CommitOffsets(() => {}),
    { name: "decode-batch" },
  );
  step.submit(new Message(new Value("{oops", new Map([[p0, 3]]))));
  const error = await pollError(step, "the failure");
  assertInstanceOf(error, StepError);
  assertStringIncludes((error as StepError).message, "decode-batch");
  step.terminate();
});
