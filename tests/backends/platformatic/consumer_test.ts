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
