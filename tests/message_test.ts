/** Message: payload replacement keeps offsets, committable and timestamp, and `value` agrees. */
import { assert, assertEquals, assertStrictEquals } from "@std/assert";
import { BrokerValue, Message, Partition, Value } from "../mod.ts";

const p = Partition.of("message-test", 3);

Deno.test("replacePayload keeps partition, offset, committable and timestamp of a broker value", () => {
  const bv = new BrokerValue("a", p, 41, 1_700_000_000_000);
  const m = new Message(bv);
  assertStrictEquals(m.value, bv);
  const up = m.replacePayload({ upper: "A" }).replacePayload(7);
  assertEquals(up.payload, 7);
  assertStrictEquals(up.source, bv, "a chain of replacements points at the original value");
  assertEquals(up.committable.get(p), 42);
  assertEquals(up.timestamp, 1_700_000_000_000);
  const v = up.value;
  assert(v instanceof BrokerValue);
  assertEquals([v.payload, v.partition, v.offset, v.timestamp], [7, p, 41, 1_700_000_000_000]);
  assertStrictEquals(up.value, v, "value is built once and then the same object");
  assertEquals(m.payload, "a", "the original message is unchanged");
  assertEquals(String(up), `${p}@41`);
});

Deno.test("replacePayload on a value message keeps its committable; filtered follows the payload", () => {
  const offsets = new Map([[p, 10]]);
  const m = new Message(new Value([1, 2], offsets, 5));
  const out = m.replacePayload(3);
  assert(out.value instanceof Value);
  assertStrictEquals(out.committable, offsets);
  assertEquals([out.payload, out.value.payload, out.timestamp], [3, 3, 5]);
  assert(!out.filtered);
});
