import { assertStringIncludes, assertThrows } from "@std/assert";
import { ClosedError, ConfigurationError, UnknownTopicError } from "../errors.ts";
import { CommitPolicy } from "../processing/commit_policy.ts";
import { StreamProcessor } from "../processing/processor.ts";
import { CommitOffsets } from "../strategies/commit_offsets.ts";
import { RunTask } from "../strategies/run_task.ts";
import { Partition, Topic } from "../types.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import { brokerMessage } from "./_support/helpers.ts";

const noop = () => {};

Deno.test("negative or zero sizes are rejected with a ConfigurationError naming the option", () => {
  let e = assertThrows(() => new CommitOffsets(noop, { highWaterMark: -1 }), ConfigurationError);
  assertStringIncludes(e.message, "highWaterMark");
  assertStringIncludes(e.message, "-1");
  e = assertThrows(() => new CommitOffsets(noop, { highWaterMark: 2.5 }), ConfigurationError);
  assertStringIncludes(e.message, "positive integer");
  e = assertThrows(() => new CommitOffsets(noop, { chunkSize: 0 }), ConfigurationError);
  assertStringIncludes(e.message, "chunkSize");
  // A byte-sized queue accepts a fractional bound but not a negative one.
  new CommitOffsets(noop, { highWaterMark: 1.5, size: () => 1 });
  assertThrows(
    () => new CommitOffsets(noop, { highWaterMark: -5, size: () => 1 }),
    ConfigurationError,
  );
  // A size() without a bound in the same unit would silently read the default as bytes.
  e = assertThrows(() => new CommitOffsets(noop, { size: () => 1 }), ConfigurationError);
  assertStringIncludes(e.message, "explicit highWaterMark");
});

Deno.test("zero partitions, empty names and negative indexes are rejected", () => {
  const broker = new LocalBroker<string>();
  const e = assertThrows(() => broker.createTopic("x-zero", 0), ConfigurationError);
  assertStringIncludes(e.message, "partitions must be a positive integer");
  assertThrows(() => Topic.of(""), ConfigurationError, "non-empty");
  assertThrows(() => Partition.of("x", -1), ConfigurationError, "index");
  broker.createTopic("x-dup", 1);
  assertThrows(() => broker.createTopic("x-dup", 1), ConfigurationError, "already exists");
});

Deno.test("an unknown topic gets an UnknownTopicError that says how to create it", () => {
  const broker = new LocalBroker<string>();
  const consumer = broker.getConsumer("g");
  const e = assertThrows(() => consumer.subscribe(["missing-topic"]), UnknownTopicError);
  assertStringIncludes(e.message, 'topic "missing-topic" does not exist');
  assertStringIncludes(e.message, "createTopic");
  assertThrows(() => broker.produce("missing-topic", "x"), UnknownTopicError);
  assertThrows(
    () =>
      new StreamProcessor({
        consumer: broker.getConsumer("g2"),
        topics: ["missing-topic"],
        factory: { createWithPartitions: (c) => new CommitOffsets(c) },
      }),
    UnknownTopicError,
  );
});

Deno.test("submit after close gets a ClosedError", () => {
  const step = new RunTask((m) => m.payload, new CommitOffsets(noop));
  step.close();
  const e = assertThrows(() => step.submit(brokerMessage(1, 0)), ClosedError);
  assertStringIncludes(e.message, "submit() was called after close()");
});

Deno.test("processor and commit-policy options are validated", () => {
  const broker = new LocalBroker<string>();
  broker.createTopic("opts-topic", 1);
  assertThrows(() => new CommitPolicy({}), ConfigurationError, "intervalMs and/or messages");
  assertThrows(() => new CommitPolicy({ messages: 0 }), ConfigurationError, "positive integer");
  const base = {
    consumer: broker.getConsumer("g"),
    factory: { createWithPartitions: (c: never) => new CommitOffsets(c) },
  };
  assertThrows(
    () => new StreamProcessor({ ...base, topics: [] }),
    ConfigurationError,
    "at least one topic",
  );
  assertThrows(
    () => new StreamProcessor({ ...base, topics: ["opts-topic"], joinTimeoutMs: -1 }),
    ConfigurationError,
    "joinTimeoutMs",
  );
  assertThrows(
    () => new StreamProcessor({ ...base, topics: ["opts-topic"], factory: {} as never }),
    ConfigurationError,
    "createWithPartitions",
  );
});
