/**
 * The platformatic consumer's handling of the library's background failures, without a
 * broker: the library's client is kept (its `consume()` replaced by a stream that never
 * joins), and its events are raised by hand, as the library raises them.
 */
import { assert, assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { EventEmitter } from "node:events";
import { Consumer as PltConsumer } from "@platformatic/kafka";
import { PlatformaticConsumer } from "../../../backends/platformatic/consumer.ts";
import { ConsumerError } from "../../../errors.ts";
import { Partition } from "../../../types.ts";

/** A consumer subscribed without a broker, with the library client and stream it made. */
async function offline(): Promise<{
  consumer: PlatformaticConsumer;
  client: EventEmitter;
  stream: EventEmitter;
  restore: () => void;
}> {
  const stream = Object.assign(new EventEmitter(), { close: () => Promise.resolve() });
  const original = PltConsumer.prototype.consume;
  let client: EventEmitter | undefined;
  PltConsumer.prototype.consume = function (this: PltConsumer) {
    client = this as unknown as EventEmitter;
    return Promise.resolve(stream) as never;
  } as typeof original;
  const restore = () => PltConsumer.prototype.consume = original;
  try {
    const consumer = new PlatformaticConsumer({
      brokers: "127.0.0.1:1",
      group: "g",
      logLevel: "nothing",
    });
    consumer.subscribe(["t"]);
    assertEquals(await consumer.poll(0), []);
    return { consumer, client: client!, stream, restore };
  } catch (e) {
    restore();
    throw e;
  }
}

Deno.test("platformatic consumer: a failed background rejoin (the library's `error` event) surfaces from poll() as a ConsumerError, not as an uncaught error", async () => {
  const { consumer, client, restore } = await offline();
  try {
    // The library emits this when the rejoin after a heartbeat's REBALANCE_IN_PROGRESS fails;
    // an `error` event without a listener throws (an uncaught error in a callback).
    const cause = new Error("joinGroup failed 3 times.");
    client.emit("error", cause);
    const e = await assertRejects(() => consumer.poll(0), ConsumerError, "joinGroup failed");
    assertEquals(e.cause, cause);
  } finally {
    await consumer.close();
    restore();
  }
});

Deno.test("platformatic consumer: a rejoin cut short by close() ('Client closed while retrying joinGroup') is dropped and counted", async () => {
  const { consumer, client, restore } = await offline();
  try {
    const closing = consumer.close();
    client.emit("error", new Error("Client closed while retrying joinGroup."));
    await closing;
    client.emit("error", new Error("Connection pool is closed."));
    assertEquals(consumer.stats.backgroundErrors, 2);
  } finally {
    restore();
  }
});

Deno.test("platformatic consumer: the membership stream's failure (its offset refresh) is dropped, not uncaught", async () => {
  const { consumer, stream, restore } = await offline();
  try {
    stream.emit("error", new Error("Client is closed."));
    assertEquals(consumer.stats.backgroundErrors, 1);
    assertInstanceOf(await consumer.poll(0), Array, "the consumer goes on");
    assert(!consumer.closed);
  } finally {
    await consumer.close();
    restore();
  }
});

Deno.test("platformatic consumer: no OffsetCommit is sent while this member's JoinGroup or SyncGroup is unanswered (it would carry the old generation: ILLEGAL_GENERATION, and the library drops every partition)", async () => {
  // The library's getApi, answering with an API that holds its requests until told.
  const held: ((error: unknown, response: unknown) => void)[] = [];
  let getApi: symbol | undefined;
  for (let p: object | null = PltConsumer.prototype; p !== null; p = Object.getPrototypeOf(p)) {
    getApi ??= Object.getOwnPropertySymbols(p).find((s) =>
      s.description === "plt.kafka.base.getApi"
    );
  }
  const proto = PltConsumer.prototype as unknown as Record<symbol, unknown>;
  const own = Object.getOwnPropertyDescriptor(proto, getApi!);
  proto[getApi!] = (_name: string, callback: (e: unknown, api: unknown) => void) =>
    callback(null, (...args: unknown[]) => held.push(args.pop() as never));
  const { consumer, client, restore } = await offline();
  const library = client as unknown as Record<string, unknown> & Record<symbol, unknown>;
  try {
    const p0 = Partition.of("t", 0);
    library.assignments = [{ topic: "t", partitions: [0] }];
    library.listCommittedOffsets = () => Promise.resolve(new Map([["t", [5n]]]));
    const commits: unknown[] = [];
    library.commit = (o: unknown) => {
      commits.push(o);
      return Promise.resolve();
    };
    for (let i = 0; i < 100 && !consumer.tell().has(p0); i++) await consumer.poll(1);
    assertEquals(consumer.tell(), new Map([[p0, 5]]));
    // The library sends a JoinGroup (through Sluice's hook); the broker holds it.
    (library[getApi!] as (n: string, cb: (e: unknown, api: unknown) => void) => void)(
      "JoinGroup",
      (_e, api) => (api as (...args: unknown[]) => void)("connection", "g", () => {}),
    );
    assertEquals(held.length, 1);
    consumer.stageOffsets(new Map([[p0, 6]]));
    assertEquals(await consumer.commitOffsets(), new Map(), "nothing committed meanwhile");
    assertEquals(commits.length, 0, "no OffsetCommit sent");
    held[0](null, {}); // answered
    consumer.stageOffsets(new Map([[p0, 6]]));
    assertEquals(await consumer.commitOffsets(), new Map([[p0, 6]]));
    assertEquals(commits.length, 1);
  } finally {
    await consumer.close();
    restore();
    if (own === undefined) delete proto[getApi!];
    else Object.defineProperty(proto, getApi!, own);
  }
});
