import { assertEquals } from "@std/assert";
import { Waiters } from "../../strategies/_waiters.ts";
import { tick } from "../_support/helpers.ts";

Deno.test("Waiters: wake resolves every wait started before it, and only those", async () => {
  const waiters = new Waiters();
  const woken: string[] = [];
  waiters.wait().then(() => woken.push("a"));
  waiters.wait().then(() => woken.push("b"));
  assertEquals(waiters.size, 2);
  waiters.wake();
  assertEquals(waiters.size, 0);
  waiters.wait().then(() => woken.push("c"));
  await tick();
  assertEquals(woken, ["a", "b"]);
  waiters.wake();
  await tick();
  assertEquals(woken, ["a", "b", "c"]);
});

Deno.test("Waiters: a wait started after a wake waits for the next one", async () => {
  const waiters = new Waiters();
  let again = false;
  const first = waiters.wait();
  waiters.wake();
  await first;
  const second = waiters.wait().then(() => again = true);
  await tick();
  assertEquals(again, false);
  waiters.wake();
  await second;
  assertEquals(again, true);
});

Deno.test("Waiters: wake with nobody waiting is a no-op", () => {
  const waiters = new Waiters();
  waiters.wake();
  assertEquals(waiters.size, 0);
});
