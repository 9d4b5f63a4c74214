/** RoomWait and Backpressure alone, on a ManualClock and a LocalBroker consumer. */
import { assert, assertEquals, assertRejects } from "@std/assert";
import { LocalBroker } from "../../backends/local/mod.ts";
import { ManualClock } from "../../clock.ts";
import { Backpressure, RoomWait } from "../../processing/_backpressure.ts";
import { tick } from "../_support/helpers.ts";

/** Runs `wait` to its end, advancing the clock 1 ms at a time; returns the time it took. */
async function timed(clock: ManualClock, wait: Promise<void>): Promise<number> {
  const start = clock.now();
  let done = false;
  const settled = wait.finally(() => (done = true));
  for (let i = 0; i < 10_000 && !done; i++) {
    await tick();
    if (!done) await clock.advance(1);
  }
  await settled;
  return clock.now() - start;
}

Deno.test("RoomWait: ready ends the wait early, until it won without progress; then the timer alone", async () => {
  const clock = new ManualClock();
  const room = new RoomWait();
  const lying = { ready: Promise.resolve() };
  assertEquals(await timed(clock, room.wait(clock, 50, lying)), 0, "ready trusted");
  assertEquals(await timed(clock, room.wait(clock, 50, lying)), 50, "won, nothing accepted");
  assertEquals(await timed(clock, room.wait(clock, 50, lying)), 0, "the timer won: trusted again");
  room.progressed();
  assertEquals(await timed(clock, room.wait(clock, 50, lying)), 0, "progress: trusted");
  assertEquals(clock.pending, 0, "no timer left behind");
});

Deno.test("RoomWait: without a strategy it is a plain sleep; a rejected ready is rethrown", async () => {
  const clock = new ManualClock();
  const room = new RoomWait();
  assertEquals(await timed(clock, room.wait(clock, 7)), 7);
  const failed = { ready: Promise.reject(new Error("pipeline failed")) };
  await assertRejects(() => room.wait(clock, 50, failed), Error, "pipeline failed");
  assertEquals(clock.pending, 0);
});

function setup() {
  const clock = new ManualClock(1_000);
  const broker = new LocalBroker<number>({ clock });
  broker.createTopic("bp", 2);
  const consumer = broker.getConsumer("g");
  consumer.subscribe(["bp"]);
  const stats = { pauses: 0, resumes: 0, backpressureMs: 0 };
  const bp = new Backpressure(consumer, clock, stats, {
    pauseAfterMs: 100,
    maxBackoffMs: 8,
    pausedBackoffMs: 32,
  });
  return { clock, consumer, stats, bp };
}

Deno.test("Backpressure: an episode starts on the first rejection, pauses after pauseAfterMs, ends with its time and a resume", async () => {
  const { clock, consumer, stats, bp } = setup();
  await consumer.poll(0); // assigned
  assertEquals(bp.since, undefined);
  bp.rejected(clock.now());
  assertEquals(bp.since, 1_000);
  await clock.advance(99);
  bp.rejected(clock.now());
  assert(!bp.paused, "not yet");
  await clock.advance(1);
  bp.rejected(clock.now());
  assert(bp.paused);
  assertEquals(consumer.paused().length, 2);
  assertEquals(stats.pauses, 1);
  await clock.advance(20);
  bp.end();
  assertEquals([bp.since, bp.paused], [undefined, false]);
  assertEquals(consumer.paused(), []);
  assertEquals(stats, { pauses: 1, resumes: 1, backpressureMs: 120 });
  bp.end(); // no episode: nothing more
  assertEquals(stats, { pauses: 1, resumes: 1, backpressureMs: 120 });
});

Deno.test("Backpressure: the backoff doubles from 1 ms up to its bound, a larger one once paused", async () => {
  const { clock, consumer, bp } = setup();
  await consumer.poll(0);
  const never = { ready: new Promise<void>(() => {}) };
  bp.rejected(clock.now());
  const waits: number[] = [];
  for (let i = 0; i < 6; i++) waits.push(await timed(clock, bp.wait(never)));
  assertEquals(waits, [1, 2, 4, 8, 8, 8]);
  await clock.advance(100);
  bp.rejected(clock.now());
  assert(bp.paused);
  waits.length = 0;
  for (let i = 0; i < 4; i++) waits.push(await timed(clock, bp.wait(never)));
  assertEquals(waits, [8, 16, 32, 32]);
  bp.end();
});
