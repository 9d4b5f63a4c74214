/**
 * The platformatic producer without a broker: a batch the library refuses at once fails
 * every message of the batch, and nothing escapes as an uncaught error.
 */
import { assertRejects } from "@std/assert";
import { PlatformaticProducer } from "../../../backends/platformatic/producer.ts";
import { ProducerError } from "../../../errors.ts";
import { Partition } from "../../../types.ts";

Deno.test("platformatic producer: a batch that cannot be sent (a header that is no bytes) fails its messages with a ProducerError, not an uncaught error", async () => {
  const producer = new PlatformaticProducer({ brokers: "127.0.0.1:1", logLevel: "nothing" });
  try {
    const p = Partition.of("t", 0);
    const bad = { key: null, value: "v", headers: { n: 5 as unknown as string } };
    const good = { key: null, value: "w" };
    // Both land in one batch, flushed by a macrotask nobody awaits.
    const first = producer.produce(p, bad);
    const second = producer.produce(p, good);
    await assertRejects(() => first, ProducerError, "produce failed");
    await assertRejects(() => second, ProducerError, "produce failed");
  } finally {
    await producer.close();
  }
});
