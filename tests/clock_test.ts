import { assertEquals } from "@std/assert";
import { ManualClock, sleepUnless } from "../clock.ts";

Deno.test("sleepUnless: ends when the clock reaches the deadline if nothing else happens", async () => {
  const clock = new ManualClock();
  let done = false;
  const wait = sleepUnless(clock, 100, new Promise(() => {})).then(() => (done = true));
  await clock.advance(99);
  assertEquals(done, false);
  await clock.advance(1);
  await wait;
  assertEquals([done, clock.pending], [true, 0]);
});

Deno.test("sleepUnless: a settled promise wakes it early, a rejection too, and no sleeper is left", async () => {
  const clock = new ManualClock();
  let wake!: () => void;
  const early = sleepUnless(clock, 1_000, new Promise<void>((r) => (wake = r)));
  assertEquals(clock.pending, 1);
  wake();
  await early;
  assertEquals([clock.now(), clock.pending], [0, 0]);
  await sleepUnless(clock, 1_000, Promise.reject(new Error("ends the wait, not rethrown")));
  assertEquals([clock.now(), clock.pending], [0, 0]);
});

Deno.test("sleepUnless: with nothing to wait for it is a plain sleep on the clock", async () => {
  const clock = new ManualClock();
  let done = false;
  const wait = sleepUnless(clock, 50, undefined).then(() => (done = true));
  await clock.advance(49);
  assertEquals(done, false);
  await clock.advance(1);
  await wait;
  assertEquals(done, true);
});
