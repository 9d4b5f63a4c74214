import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ManualClock } from "../../../clock.ts";
import { ConsumerError } from "../../../errors.ts";
import { LocalBroker } from "../../../backends/local/mod.ts";

function uniqueTopic() {
  return `t-${crypto.randomUUID()}`;
}

Deno.test("pause, resume, seek and commit validate the assignment", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(uniqueTopic(), 2);
  const other = broker.createTopic(uniqueTopic(), 1);
  const c = broker.getConsumer("g");
  c.subscribe([topic]);
  await c.poll(0);
  const [p0, p1] = broker.partitions(topic);
  const foreign = broker.partitions(other)[0];
  assertThrows(() => c.pause([foreign]), ConsumerError, "not assigned");
  broker.produce(p0, 1);
  broker.produce(p1, 2);
  c.pause([p0]);
  assertEquals((await c.poll(0)).map((m) => m.payload), [2], "paused partitions yield nothing");
  c.resume([p0]);
  assertEquals((await c.poll(0)).map((m) => m.payload), [1]);
  assertThrows(() => c.seek(new Map([[p0, 99]])), ConsumerError, "within 0..1");
  c.seek(new Map([[p0, 0]]));
  assertEquals((await c.poll(0)).map((m) => m.offset), [0], "seek rewinds the working offset");
  c.stageOffsets(new Map([[foreign, 1]]));
  await assertRejects(() => c.commitOffsets(), ConsumerError, "not assigned");
  await c.close();
});

Deno.test("poll(timeoutMs) waits on the broker's clock until a message arrives or the time is up, leaving no sleeper behind", async () => {
  const clock = new ManualClock();
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic(uniqueTopic(), 1);
  const c = broker.getConsumer("g");
  c.subscribe([topic]);
  assertEquals(await c.poll(0), [], "joins the group; nothing to read yet");
  // A produce wakes a waiting poll before its time is up.
  const woken = c.poll(1000);
  while (clock.pending === 0) await Promise.resolve();
  broker.produce(topic, 1);
  assertEquals((await woken).map((m) => m.payload), [1]);
  assertEquals([clock.now(), clock.pending], [0, 0], "woken at once; its sleep cancelled");
  // Nothing arrives: the poll returns empty once the clock has moved by its timeout.
  const empty = c.poll(1000);
  while (clock.pending === 0) await Promise.resolve();
  await clock.advance(999);
  assertEquals(clock.pending, 1, "still waiting");
  await clock.advance(1);
  assertEquals(await empty, []);
  assertEquals(clock.pending, 0);
  await c.close();
});
