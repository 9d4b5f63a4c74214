/**
 * A fully backpressured processor sleeps its whole `pausedBackoffMs` between retries, and a
 * rebalance still gets through at once: the consumer's `onGroupEvent` wakes it. A consumer
 * without that method (one of the user's) is let through when the back-off ends, as before.
 * All on a ManualClock: time moves only when the test says so.
 */
import { assert, assertEquals } from "@std/assert";
import type { Consumer } from "../../backends/abstract.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { ManualClock } from "../../clock.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { Gate, tick } from "../_support/helpers.ts";

/** The same consumer, without `onGroupEvent` (as a user's own consumer would be). */
function withoutGroupEvents<T>(consumer: Consumer<T>): Consumer<T> {
  return new Proxy(consumer, {
    get(target, key) {
      if (key === "onGroupEvent") return undefined;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A member of a fully backpressured group: paused, its back-off at its bound. */
async function pausedMember(events: boolean) {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock, sessionTimeoutMs: 0 });
  broker.createTopic("t", 2);
  for (let i = 0; i < 10; i++) broker.produce("t", i);
  const local = broker.getConsumer("g");
  const processor = new StreamProcessor<number>({
    consumer: events ? local : withoutGroupEvents(local),
    topics: ["t"],
    clock,
    handleSignals: false,
    metrics: false,
    pollTimeoutMs: 0,
    pauseAfterMs: 0,
    factory: { createWithPartitions: () => new Gate(false) },
  });
  // Each iteration sleeps its back-off (doubling from 1 ms to pausedBackoffMs): run them to
  // the bound, jumping the clock to each wake.
  for (let i = 0; i < 20; i++) {
    let done = false;
    const iteration = processor.runOnce().then(() => done = true);
    while (!done) await clock.advance(60_000);
    await iteration;
  }
  assert(processor.paused);
  assertEquals(processor.stats.revocations, 0);
  return { clock, broker, processor };
}

/** Lets pending promises and macrotasks run `n` times, the clock standing still. */
async function settle(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

Deno.test("a paused processor sleeps pausedBackoffMs (3 s by default with group events), and a rebalance wakes it at once", async () => {
  const { clock, broker, processor } = await pausedMember(true);
  let done = false;
  const iteration = processor.runOnce().then(() => done = true);
  await settle();
  assertEquals([done, clock.pending], [false, 1], "asleep on its back-off");
  // Nothing happens for 2.9 s: still asleep (the default bound is 3 s).
  await clock.advance(2_900);
  await settle();
  assertEquals(done, false);
  const at = clock.now();
  broker.getConsumer("g").subscribe(["t"]); // a second member: the group rebalances
  await iteration;
  assertEquals(clock.now(), at, "woken without the clock moving");
  assertEquals(processor.stats.revocations, 1, "the revoke ran in the poll right after");
  assertEquals(clock.pending, 0, "no timer left behind");
  processor.signalShutdown();
  await processor.run();
});

Deno.test("a consumer without onGroupEvent: the paused processor lets the rebalance through when its 1 s back-off ends, as before", async () => {
  const { clock, broker, processor } = await pausedMember(false);
  let done = false;
  const iteration = processor.runOnce().then(() => done = true);
  await settle();
  broker.getConsumer("g").subscribe(["t"]);
  await settle();
  assertEquals([done, processor.stats.revocations], [false, 0], "not woken by the rebalance");
  await clock.advance(999);
  await settle();
  assertEquals(done, false);
  await clock.advance(1);
  await iteration;
  assertEquals(processor.stats.revocations, 1);
  processor.signalShutdown();
  await processor.run();
});

Deno.test("a group event while the processor is not waiting ends its next wait at once (none is missed)", async () => {
  const { clock, broker, processor } = await pausedMember(true);
  // The rebalance begins between two waits (here: before the next iteration starts).
  broker.getConsumer("g").subscribe(["t"]);
  const at = clock.now();
  await processor.runOnce();
  assertEquals([clock.now(), processor.stats.revocations], [at, 1]);
  processor.signalShutdown();
  await processor.run();
});

Deno.test("signalShutdown() ends a paused processor's back-off at once", async () => {
  const { clock, processor } = await pausedMember(true);
  let done = false;
  const iteration = processor.runOnce().then(() => done = true);
  await settle();
  assertEquals(done, false, "asleep on its back-off");
  const at = clock.now();
  processor.signalShutdown();
  await iteration;
  assertEquals(clock.now(), at, "woken without the clock moving");
  await processor.run(); // the shutdown: closes, joins, commits
});
