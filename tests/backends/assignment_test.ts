/**
 * The assignment checks shared by the Kafka consumers (backends/_assignment.ts), without a
 * broker: the same errors, in the same words, from either backend.
 */
import { assertEquals, assertThrows } from "@std/assert";
import { checkAssigned, checkOpen, checkSeekOffsets } from "../../backends/_assignment.ts";
import { KafkaConsumer } from "../../backends/kafka/consumer.ts";
import { PlatformaticConsumer } from "../../backends/platformatic/consumer.ts";
import { ClosedError, ConsumerError } from "../../errors.ts";
import { Partition } from "../../types.ts";

const P0 = Partition.of("t", 0);
const P1 = Partition.of("t", 1);

Deno.test("assignment checks: open, assigned, seek offsets", () => {
  checkOpen(false, "x");
  assertThrows(
    () => checkOpen(true, 'KafkaConsumer of group "g"'),
    ClosedError,
    'KafkaConsumer of group "g" is closed; create a new one',
  );
  checkAssigned([P0], new Set([P0, P1]), "pause", "m-1");
  checkAssigned([P1], new Map([[P1, 3]]).keys(), "pause", "m-1");
  assertThrows(
    () => checkAssigned([P0, P1], [P0], "resume", "m-1"),
    ConsumerError,
    "cannot resume t/1: it is not assigned to m-1 (assigned: t/0)",
  );
  assertThrows(
    () => checkAssigned([P0], [], "seek", ""),
    ConsumerError,
    "cannot seek t/0: it is not assigned to this member (assigned: none)",
  );
  checkSeekOffsets(new Map([[P0, 0], [P1, 7]]));
  for (const bad of [-1, 1.5, NaN]) {
    assertThrows(
      () => checkSeekOffsets(new Map([[P0, bad]])),
      ConsumerError,
      `cannot seek t/0 to ${bad}: offsets are integers >= 0`,
    );
  }
});

Deno.test("assignment checks: both Kafka consumers refuse the same calls in the same words", async () => {
  const options = { brokers: "127.0.0.1:1", group: "g", logLevel: "nothing" as const };
  const consumers = [new KafkaConsumer(options), new PlatformaticConsumer(options)];
  const messages: string[][] = [];
  for (const c of consumers) {
    const seen = [
      assertThrows(() => c.pause([P0]), ConsumerError).message,
      assertThrows(() => c.resume([P0]), ConsumerError).message,
      assertThrows(() => c.seek(new Map([[P0, 1]])), ConsumerError).message,
    ];
    await c.close();
    seen.push(assertThrows(() => c.pause([P0]), ClosedError).message.replace(/^\w+/, "<class>"));
    messages.push(seen);
  }
  assertEquals(messages[0], messages[1]);
  assertEquals(
    messages[0][0],
    "cannot pause t/0: it is not assigned to this member (assigned: none)",
  );
});
