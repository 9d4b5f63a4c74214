/**
 * The stuck detector: a hung loop reported once with what it was doing, and its options.
 */
import type { MeterProvider } from "@opentelemetry/sdk-metrics";
import { assert, assertEquals, assertThrows } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError } from "../../errors.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { waitFor } from "../_support/helpers.ts";
import { meterProvider } from "../_support/metrics.ts";

Deno.test("stuck detector: a hung consumer poll is reported once, with what the loop was doing", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("stuck", 1);
  const consumer = broker.getConsumer("g");
  let release: (() => void) | undefined;
  const realPoll = consumer.poll.bind(consumer);
  let polls = 0;
  consumer.poll = (_timeoutMs?: number) => {
    if (++polls === 3) {
      return new Promise<void>((r) => release = r).then(() => realPoll(0));
    }
    return realPoll(0);
  };
  const { provider, snapshot } = meterProvider();
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
  try {
    const processor = new StreamProcessor<string>({
      consumer,
      topics: ["stuck"],
      clock,
      meterProvider: provider,
      stuckTimeoutMs: 500,
      handleSignals: false,
      factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
    });
    const running = processor.run();
    await waitFor(() => release !== undefined, "the third poll to hang");
    await clock.advance(400);
    assertEquals(warnings, [], "not stuck yet");
    await clock.advance(2000);
    assertEquals(warnings.length, 1, "reported once per stuck episode");
    assert(warnings[0].includes("polling the consumer"), warnings[0]);
    assert(warnings[0].includes("has not advanced for"), warnings[0]);
    const s = await snapshot();
    assertEquals(s.value("sluice.consumer.stuck_episodes"), 1);
    release!();
    processor.signalShutdown();
    await running;
    assertEquals((await snapshot()).value("sluice.consumer.stuck_episodes"), 1);
  } finally {
    console.warn = warn;
  }
});

Deno.test("bad metrics options are typed errors that say what to pass", () => {
  const broker = new LocalBroker<string>();
  broker.createTopic("opts", 1);
  const base = {
    consumer: broker.getConsumer("g"),
    topics: ["opts"],
    handleSignals: false,
    factory: { createWithPartitions: (commit: Commit) => new CommitOffsets(commit) },
  };
  for (const stuckTimeoutMs of [0, -5, NaN, Infinity]) {
    const e = assertThrows(
      () => new StreamProcessor<string>({ ...base, stuckTimeoutMs }),
      ConfigurationError,
    );
    assert(e.message.includes("stuckTimeoutMs"), e.message);
  }
  const e = assertThrows(
    () =>
      new StreamProcessor<string>({
        ...base,
        meterProvider: {} as unknown as MeterProvider,
      }),
    ConfigurationError,
  );
  assert(e.message.includes("MeterProvider"), e.message);
});
