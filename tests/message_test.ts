/** Message: payload replacement keeps offsets, committable and timestamp, and `value` agrees. */
import { assert, assertEquals, assertStrictEquals } from "@std/assert";
import { BrokerValue, Message, Partition, Value } from "../types.ts";

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

Deno.test("a broker value and a value are messages themselves: no wrapper needed", () => {
  const bv = new BrokerValue("a", p, 7, 1_700_000_000_000);
  assert(bv instanceof Message);
  assertStrictEquals(bv.source, bv);
  assertStrictEquals(bv.value, bv);
  assertEquals([bv.payload, bv.timestamp, bv.committable.get(p), bv.filtered], [
    "a",
    1_700_000_000_000,
    8,
    false,
  ]);
  const up = bv.replacePayload("A");
  assert(!(up instanceof BrokerValue), "a replaced payload makes a plain Message");
  assertStrictEquals(up.source, bv);
  assertEquals([up.payload, bv.payload, up.committable.get(p)], ["A", "a", 8]);
  const v = new Value([1], new Map([[p, 3]]), 9);
  assert(v instanceof Message);
  assertStrictEquals(v.source, v);
  assertEquals([v.committable.get(p), v.timestamp, String(v)], [3, 9, `Value(${p}@2)`]);
  // Wrapping still works and gives the same offsets.
  assertStrictEquals(new Message(bv).source, bv);
});

Deno.test("equality of broker values and values compares timestamps and offsets too", () => {
  const same = (a: unknown, b: unknown) => {
    try {
      assertEquals(a, b);
      return true;
    } catch {
      return false;
    }
  };
  assert(same(new BrokerValue("a", p, 1, 5), new BrokerValue("a", p, 1, 5)));
  assert(!same(new BrokerValue("a", p, 1, 5), new BrokerValue("a", p, 1, 6)), "timestamp");
  assert(!same(new BrokerValue("a", p, 1, 5), new BrokerValue("a", p, 2, 5)), "offset");
  assert(!same(new Value(1, new Map([[p, 1]])), new Value(1, new Map([[p, 2]]))), "committable");
});

Deno.test("messages serialise to JSON: a broker value's partition is written as topic/index", () => {
  const bv = new BrokerValue({ n: 1 }, p, 7, 1_700_000_000_000);
  assertEquals(JSON.stringify(bv), `{"payload":{"n":1},"partition":"${p}","offset":7}`);
  // A batch of messages (what BatchStep hands on) serialises too.
  assertEquals(
    JSON.stringify([bv, bv.replacePayload(2)]),
    `[{"payload":{"n":1},"partition":"${p}","offset":7},{"payload":2}]`,
  );
  assertEquals(JSON.stringify(p.topic), `"${p.topic.name}"`);
});

Deno.test("replacePayload builds the same own properties, in the same order, as new Message", () => {
  const bv = new BrokerValue(new Uint8Array(2), p, 5, 1_700_000_000_000);
  const replaced = bv.replacePayload("x");
  const built = new Message(bv);
  assertEquals(Reflect.ownKeys(replaced), Reflect.ownKeys(built));
  assertStrictEquals(Object.getPrototypeOf(replaced), Message.prototype);
  assertStrictEquals(replaced.source, bv);
  assertEquals(
    Reflect.ownKeys(bv).slice(0, 1),
    ["payload"],
    "a broker value's payload comes first",
  );
  assertEquals(Object.keys(new Value(1, new Map([[p, 1]]))), ["payload"]);
});
