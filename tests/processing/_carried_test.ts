/** CarriedMessages alone: submission as far as the pipeline takes them, drops, first offsets. */
import { assertEquals, assertStrictEquals } from "@std/assert";
import { MESSAGE_REJECTED } from "../../errors.ts";
import { CarriedMessages } from "../../processing/_carried.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { BrokerValue, InvalidMessage, type Message, Partition } from "../../types.ts";

const P0 = Partition.of("carried", 0);
const P1 = Partition.of("carried", 1);

function values(p: Partition, from: number, to: number): BrokerValue<number>[] {
  return Array.from({ length: to - from }, (_, k) => new BrokerValue(from + k, p, from + k, 0));
}

/** A pipeline taking `room` messages, then rejecting (or failing with `error`). */
function pipeline(room: number, options: { many?: boolean; error?: unknown } = {}) {
  const taken: number[] = [];
  const submit = (m: Message<number>) => {
    if (taken.length >= room) throw options.error ?? MESSAGE_REJECTED;
    taken.push(m.payload);
  };
  const strategy = {
    submit,
    poll() {},
    close() {},
    join: () => Promise.resolve(),
    terminate() {},
    ready: Promise.resolve(),
    ...(options.many
      ? {
        submitMany(messages: readonly Message<number>[], from: number): number {
          let i = from;
          for (; i < messages.length && taken.length < room; i++) taken.push(messages[i].payload);
          return i;
        },
      }
      : {}),
  } as ProcessingStrategy<number>;
  return { strategy, taken };
}

for (const many of [false, true]) {
  Deno.test(`CarriedMessages: submitTo hands over as much as the pipeline takes (${many ? "submitMany" : "submit"})`, () => {
    const carried = new CarriedMessages<number>();
    assertEquals([carried.empty, carried.count], [true, 0]);
    carried.carry(values(P0, 0, 5));
    const { strategy, taken } = pipeline(3, { many });
    assertStrictEquals(carried.submitTo(strategy), MESSAGE_REJECTED);
    assertEquals(taken, [0, 1, 2]);
    assertEquals(carried.count, 2);
    const rest = pipeline(10, { many });
    assertEquals(carried.submitTo(rest.strategy), undefined);
    assertEquals(rest.taken, [3, 4]);
    assertEquals([carried.empty, carried.count], [true, 0]);
  });
}

Deno.test("CarriedMessages: another error stops the submission and is returned, the message stays carried", () => {
  const carried = new CarriedMessages<number>();
  carried.carry(values(P0, 0, 3));
  const invalid = new InvalidMessage(P0, 1, "bad");
  assertStrictEquals(carried.submitTo(pipeline(1, { error: invalid }).strategy), invalid);
  assertEquals(carried.count, 2);
  carried.dropInvalid(new InvalidMessage(P0, 2, "not the first carried one"));
  assertEquals(carried.count, 2);
  carried.dropInvalid(invalid);
  assertEquals(carried.count, 1);
  carried.dropInvalid(new InvalidMessage(P0, 2, "the last one"));
  assertEquals([carried.empty, carried.count], [true, 0]);
});

Deno.test("CarriedMessages: append queues behind what is left; firstOffsets and drop work per partition", () => {
  const carried = new CarriedMessages<number>();
  carried.append(values(P0, 0, 3));
  carried.submitTo(pipeline(1).strategy); // 0 taken
  carried.append([...values(P1, 7, 9), ...values(P0, 3, 4)]);
  assertEquals(carried.count, 5);
  assertEquals(carried.firstOffsets(), new Map([[P0, 1], [P1, 7]]));
  carried.drop(new Set([P0]));
  assertEquals(carried.firstOffsets(), new Map([[P1, 7]]));
  carried.drop(new Map([[P1, 0]]));
  assertEquals([carried.empty, carried.count], [true, 0]);
  assertEquals(carried.firstOffsets(), new Map());
});
