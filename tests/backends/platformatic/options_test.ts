import { assertEquals } from "@std/assert";
import { resolvePlatformaticConsumerOptions } from "../../../backends/platformatic/options.ts";
import { resolveConsumerOptions } from "../../../backends/kafka/config.ts";

Deno.test("platformatic keeps 10 MiB / 1 MiB fetches by default, kafkajs takes 2 MiB / 512 KiB", () => {
  const o = { brokers: "127.0.0.1:9092", group: "g" };
  const p = resolvePlatformaticConsumerOptions(o);
  assertEquals([p.maxBytes, p.maxBytesPerPartition], [10 * 1024 * 1024, 1024 * 1024]);
  const k = resolveConsumerOptions(o);
  assertEquals([k.maxBytes, k.maxBytesPerPartition], [2048 * 1024, 512 * 1024]);
});

Deno.test("platformatic: a maxBytes given alone caps the per-partition default", () => {
  const p = resolvePlatformaticConsumerOptions({
    brokers: "127.0.0.1:9092",
    group: "g",
    maxBytes: 512 * 1024,
  });
  assertEquals([p.maxBytes, p.maxBytesPerPartition], [512 * 1024, 512 * 1024]);
});
