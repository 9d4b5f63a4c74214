// The batch packing of RunTaskInWorkers, as pure functions: no workers here.
import { assert, assertEquals, assertInstanceOf, assertStrictEquals } from "@std/assert";
import {
  alignUp,
  cloneable,
  copyArray,
  PACK_MAX_ARRAY_LENGTH,
  PACK_MIN_SOURCE_BYTES,
  packViews,
  VIEW_CLASSES,
} from "../../../strategies/workers/_pack.ts";

/** A buffer big enough to be packed from, its bytes 0, 1, 2... (mod 256). */
function bigBuffer(bytes = PACK_MIN_SOURCE_BYTES): ArrayBuffer {
  const buffer = new ArrayBuffer(bytes);
  const u8 = new Uint8Array(buffer);
  for (let i = 0; i < u8.length; i++) u8[i] = i & 0xff;
  return buffer;
}

function bytesOf(view: ArrayBufferView): number[] {
  return [...new Uint8Array(view.buffer, view.byteOffset, view.byteLength)];
}

Deno.test("pack: cloneable tells structured-cloneable values from the others", () => {
  assert(cloneable({ a: [1, "x", new Uint8Array(2)], m: new Map([[1, 2]]) }));
  assert(!cloneable(() => 1));
  assert(!cloneable({ f: () => 1 }));
});

Deno.test("pack: nothing to pack gives undefined and leaves the payloads alone", () => {
  const small = new Uint8Array(new ArrayBuffer(PACK_MIN_SOURCE_BYTES - 1), 1, 10);
  const whole = new Uint8Array(bigBuffer());
  const shared = new Uint8Array(new SharedArrayBuffer(PACK_MIN_SOURCE_BYTES), 1, 10);
  const payloads: unknown[] = ["a", 1, null, { x: small }, whole, shared, [small]];
  const before = [...payloads];
  assertStrictEquals(packViews(payloads), undefined);
  for (let i = 0; i < payloads.length; i++) assertStrictEquals(payloads[i], before[i]);
});

Deno.test("pack: partial views of a big buffer are copied into one buffer, same kind and bytes", () => {
  const source = bigBuffer();
  const a = new Uint8Array(source, 3, 5);
  const b = new Float64Array(source, 16, 2);
  const c = new DataView(source, 100, 3);
  const payloads: unknown[] = [a, "text", b, c];
  const buffer = packViews(payloads);
  assert(buffer !== undefined);
  // a at 0 (5 bytes), b aligned to 8 (16 bytes), c at 24 (3 bytes).
  assertEquals(buffer.byteLength, 27);
  assertEquals(payloads[1], "text");
  for (
    const [i, original, Kind] of [[0, a, Uint8Array], [2, b, Float64Array], [
      3,
      c,
      DataView,
    ]] as const
  ) {
    const sent = payloads[i] as ArrayBufferView;
    assertInstanceOf(sent, Kind);
    assertStrictEquals(sent.buffer, buffer);
    assertEquals(bytesOf(sent), bytesOf(original));
  }
  assertEquals((payloads[2] as Float64Array).byteOffset, 8);
  assertEquals((payloads[3] as DataView).byteOffset, 24);
});

Deno.test("pack: a typed-array subclass arrives as its built-in class, as a clone makes it", () => {
  class Bytes extends Uint8Array {}
  const view = new Bytes(bigBuffer(), 7, 4);
  const payloads: unknown[] = [view];
  packViews(payloads);
  assertStrictEquals(Object.getPrototypeOf(payloads[0]), Uint8Array.prototype);
  assertEquals(bytesOf(payloads[0] as Uint8Array), [7, 8, 9, 10]);
});

Deno.test("pack: a view met twice gets one copy", () => {
  const view = new Uint8Array(bigBuffer(), 1, 4);
  const payloads: unknown[] = [view, { v: view }];
  const buffer = packViews(payloads)!;
  assertEquals(buffer.byteLength, 4);
  assertStrictEquals((payloads[1] as { v: Uint8Array }).v, payloads[0]);
});

Deno.test("pack: views inside plain containers are packed in shallow copies; the sender's objects are untouched", () => {
  const source = bigBuffer();
  const value = new Uint8Array(source, 10, 2);
  const header = new Uint8Array(source, 20, 3);
  const headers = { h: [header, "s"] };
  const payload = { key: null, value, headers, n: 5 };
  const payloads: unknown[] = [payload];
  const buffer = packViews(payloads)!;
  assertEquals(buffer.byteLength, 5);
  const sent = payloads[0] as typeof payload;
  assert(sent !== payload && sent.headers !== headers && sent.headers.h !== headers.h);
  assertEquals(Object.keys(sent), ["key", "value", "headers", "n"]);
  assertEquals(sent.n, 5);
  assertEquals(bytesOf(sent.value), [10, 11]);
  assertEquals(bytesOf(sent.headers.h[0] as Uint8Array), [20, 21, 22]);
  assertEquals(sent.headers.h[1], "s");
  assertStrictEquals(payload.value, value);
  assertStrictEquals(headers.h[0], header);
});

Deno.test("pack: a container referred to twice is copied once", () => {
  const inner = { v: new Uint8Array(bigBuffer(), 0, 2) };
  const payloads: unknown[] = [{ a: inner, b: inner }];
  packViews(payloads);
  const sent = payloads[0] as { a: object; b: object };
  assert(sent.a !== inner);
  assertStrictEquals(sent.a, sent.b);
});

Deno.test("pack: class instances, deeper containers and huge arrays are sent as they are", () => {
  const source = bigBuffer();
  class Holder {
    v = new Uint8Array(source, 0, 2);
  }
  const deep = { a: { b: { c: { d: new Uint8Array(source, 0, 2) } } } };
  const huge: unknown[] = [];
  huge[PACK_MAX_ARRAY_LENGTH] = new Uint8Array(source, 0, 2);
  const payloads: unknown[] = [new Holder(), deep, huge];
  const before = [...payloads];
  assertStrictEquals(packViews(payloads), undefined);
  for (let i = 0; i < payloads.length; i++) assertStrictEquals(payloads[i], before[i]);
});

Deno.test("pack: a reference back to a container already copied goes to its copy", () => {
  const cyclic: Record<string, unknown> = { v: new Uint8Array(bigBuffer(), 5, 2) };
  cyclic.self = cyclic;
  const payloads: unknown[] = [cyclic];
  packViews(payloads);
  const sent = payloads[0] as Record<string, unknown>;
  assert(sent !== cyclic);
  assertStrictEquals(sent.self, sent);
  assertEquals(bytesOf(sent.v as Uint8Array), [5, 6]);
});

Deno.test("pack: a reference back to a container not copied yet packs only the top-level views", () => {
  const source = bigBuffer();
  const top = new Uint8Array(source, 0, 3);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  cyclic.v = new Uint8Array(source, 5, 2);
  const payloads: unknown[] = [cyclic, top];
  const buffer = packViews(payloads)!;
  assertEquals(buffer.byteLength, 3);
  assertStrictEquals(payloads[0], cyclic);
  assertEquals(bytesOf(payloads[1] as Uint8Array), [0, 1, 2]);
});

Deno.test("pack: copyArray keeps length, holes and named properties", () => {
  const array: unknown[] & { tag?: string } = [1, , 3];
  array.length = 5;
  array.tag = "t";
  const copy = copyArray(array) as unknown[] & { tag?: string };
  assert(copy !== array);
  assertEquals(copy.length, 5);
  assert(!(1 in copy) && !(4 in copy));
  assertEquals([copy[0], copy[2], copy.tag], [1, 3, "t"]);
  assertEquals(Object.keys(copy), ["0", "2", "tag"]);
});

Deno.test("pack: alignUp rounds to the element size (1 for DataView)", () => {
  assertEquals(alignUp(5, Float64Array), 8);
  assertEquals(alignUp(8, Float64Array), 8);
  assertEquals(alignUp(3, Int16Array), 4);
  assertEquals(alignUp(5, Uint8Array), 5);
  assertEquals(alignUp(5, DataView), 5);
});

Deno.test("pack: VIEW_CLASSES knows every built-in typed array class by name", () => {
  for (
    const name of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Float64Array", "BigUint64Array"]
  ) {
    assertEquals(VIEW_CLASSES.get(name)?.name, name);
  }
});
