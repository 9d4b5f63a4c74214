/** Fetch-size defaults of the Kafka consumer options (backends/kafka/config.ts), without a broker. */
import { assertEquals, assertThrows } from "@std/assert";
import { resolveConsumerOptions } from "../../../backends/kafka/config.ts";

const KiB = 1024;
const base = { brokers: "127.0.0.1:9092", group: "g" };
const fetchSizes = (o: Record<string, unknown>) => {
  const r = resolveConsumerOptions({ ...base, ...o });
  return [r.maxBytes, r.maxBytesPerPartition];
};

Deno.test("kafka config: fetches default to 512 KiB responses of at most 256 KiB per partition", () => {
  assertEquals(fetchSizes({}), [512 * KiB, 256 * KiB]);
});

Deno.test("kafka config: either fetch size given alone raises or caps the other's default", () => {
  assertEquals(fetchSizes({ maxBytesPerPartition: 1024 * KiB }), [1024 * KiB, 1024 * KiB]);
  assertEquals(fetchSizes({ maxBytesPerPartition: 64 * KiB }), [512 * KiB, 64 * KiB]);
  assertEquals(fetchSizes({ maxBytes: 128 * KiB }), [128 * KiB, 128 * KiB]);
  assertEquals(fetchSizes({ maxBytes: 10240 * KiB }), [10240 * KiB, 256 * KiB]);
  assertEquals(
    fetchSizes({ maxBytes: 10240 * KiB, maxBytesPerPartition: 1024 * KiB }),
    [10240 * KiB, 1024 * KiB],
  );
  assertThrows(() => fetchSizes({ maxBytes: 1000, maxBytesPerPartition: 2000 }));
  assertThrows(() => fetchSizes({ maxBytesPerPartition: -1 }));
});
