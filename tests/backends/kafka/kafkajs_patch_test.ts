// deno-lint-ignore-file no-import-prefix no-explicit-any
/**
 * The kafkajs record-decoding fast paths (backends/kafka/kafkajs_patch.ts) return exactly
 * what kafkajs's own code returns: same values, same decoder positions, same records
 * (no broker needed).
 */
import { assert, assertEquals } from "@std/assert";
import { kafkajsDecodePatched, kafkajsOriginals } from "../../../backends/kafka/kafkajs_patch.ts";
// @ts-ignore: internal kafkajs module without type declarations
import LongModule from "npm:kafkajs@2.2.4/src/utils/long.js";
// @ts-ignore: internal kafkajs module without type declarations
import DecoderModule from "npm:kafkajs@2.2.4/src/protocol/decoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import EncoderModule from "npm:kafkajs@2.2.4/src/protocol/encoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import RecordBatchModule from "npm:kafkajs@2.2.4/src/protocol/recordBatch/v0/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import Record from "npm:kafkajs@2.2.4/src/protocol/recordBatch/record/v0/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import decodeRecordBatch from "npm:kafkajs@2.2.4/src/protocol/recordBatch/v0/decoder.js";

const Long = LongModule as any;
const Decoder = DecoderModule as any;
const Encoder = EncoderModule as any;
const RecordBatch = (RecordBatchModule as any).RecordBatch;

/** Runs `fn` with kafkajs's own functions put back, then restores the fast paths. */
async function unpatched<T>(fn: () => T | Promise<T>): Promise<T> {
  const fast = {
    fromValue: Long.fromValue,
    readVarLong: Decoder.prototype.readVarLong,
    toString: Long.prototype.toString,
  };
  Long.fromValue = function (this: unknown, v: unknown) {
    return kafkajsOriginals.fromValue!(v);
  };
  Decoder.prototype.readVarLong = kafkajsOriginals.readVarLong;
  Long.prototype.toString = function (this: unknown) {
    return kafkajsOriginals.toString!(this);
  };
  try {
    return await fn();
  } finally {
    Long.fromValue = fast.fromValue;
    Decoder.prototype.readVarLong = fast.readVarLong;
    Long.prototype.toString = fast.toString;
  }
}

/** A seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Signed 64-bit values of every magnitude, the edges of the fast path included. */
function samples(): bigint[] {
  const out = [0n, 1n, -1n, 63n, -64n, 64n, 8191n, -8192n, 2n ** 31n, -(2n ** 31n)];
  for (const bits of [41, 47, 48, 49, 52, 53, 54, 62]) {
    out.push(2n ** BigInt(bits) - 1n, 2n ** BigInt(bits), -(2n ** BigInt(bits)));
  }
  out.push(2n ** 63n - 1n, -(2n ** 63n));
  const r = rng(42);
  for (let i = 0; i < 3000; i++) {
    const bits = 1 + Math.floor(r() * 63); // |v| < 2^63: always a signed 64-bit value
    const magnitude = BigInt(Math.floor(r() * 2 ** 31)) * 2n ** 32n +
      BigInt(Math.floor(r() * 2 ** 32));
    const v = magnitude % 2n ** BigInt(bits);
    out.push(r() < 0.5 ? -v : v);
  }
  return out;
}

/** What `fn` returns, or the message of what it throws. */
function outcome(fn: () => any): { value?: unknown; error?: string } {
  try {
    return { value: fn()?.value };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

Deno.test("kafkajs decode: the fast paths are installed when the backend is imported", () => {
  assert(kafkajsDecodePatched());
  assert(kafkajsOriginals.readVarLong !== Decoder.prototype.readVarLong);
});

Deno.test("kafkajs decode: readVarLong gives kafkajs's value and position for every magnitude", async () => {
  for (const v of samples()) {
    // Each value followed by a marker byte: the position after it must match too.
    const bytes = new Encoder().writeVarLong(Long.fromValue(v.toString())).writeInt8(7).buffer;
    const fast = new Decoder(bytes);
    const got = fast.readVarLong();
    const slow = new Decoder(bytes);
    const want = await unpatched(() => slow.readVarLong());
    assertEquals(got.value, v, `fast path decodes ${v}`);
    assertEquals(want.value, v, `kafkajs decodes ${v}`);
    assertEquals(fast.offset, slow.offset, `position after ${v}`);
    assertEquals(fast.readInt8(), 7);
  }
});

Deno.test("kafkajs decode: truncated varlongs behave as in kafkajs", async () => {
  for (const v of [300n, -(2n ** 40n), 2n ** 50n]) {
    const full = new Encoder().writeVarLong(Long.fromValue(v.toString())).buffer;
    for (let cut = 0; cut < full.length; cut++) {
      const bytes = full.subarray(0, cut);
      const run = (d: any) => {
        try {
          return { value: d.readVarLong().value, offset: d.offset };
        } catch (e) {
          return { error: (e as Error).message };
        }
      };
      const got = run(new Decoder(bytes));
      const want = await unpatched(() => run(new Decoder(bytes)));
      assertEquals(got, want, `${v} cut to ${cut} bytes`);
    }
  }
});

Deno.test("kafkajs decode: Long.fromValue gives kafkajs's value for any sequence of inputs", async () => {
  const r = rng(7);
  const inputs: unknown[] = [
    "0",
    "-1",
    "1795480000000",
    "9223372036854775807",
    "-9223372036854775808",
    "42",
    "NaN",
    7,
    -3.5,
    2 ** 40,
  ];
  for (let i = 0; i < 2000; i++) {
    const x = inputs[Math.floor(r() * inputs.length)];
    const got = outcome(() => Long.fromValue(x));
    const want = await unpatched(() => outcome(() => Long.fromValue(x)));
    assertEquals(got, want, `fromValue(${String(x)}) at step ${i}`);
    if (typeof want.value === "bigint") {
      assertEquals(Long.fromValue(x).add(Long.fromValue(1)).value, want.value + 1n);
    }
  }
});

Deno.test("kafkajs decode: Long#toString gives kafkajs's text for any sequence of values", async () => {
  const r = rng(11);
  const values = samples().slice(0, 40);
  for (let i = 0; i < 3000; i++) {
    // Runs of repeats and alternations, as record timestamps and offsets come.
    const v = values[r() < 0.5 ? i % 3 : Math.floor(r() * values.length)];
    const got = Long.fromValue(v.toString()).toString();
    const want = await unpatched(() => Long.fromValue(v.toString()).toString());
    assertEquals(got, want, `toString of ${v} at step ${i}`);
    assertEquals(got, v.toString());
  }
});

Deno.test("kafkajs decode: whole record batches decode to identical records", async () => {
  const r = rng(99);
  for (const firstTimestamp of [0, 1_795_480_000_000, 2 ** 47, 2 ** 53 - 1]) {
    for (const firstOffset of ["0", "123456789012", "9007199254740000"]) {
      const deltas = [0, 1, -1, 1000, -(2 ** 30), 2 ** 47 - 1, 2 ** 48, -(2 ** 52)];
      const records = Array.from({ length: 40 }, (_, i) =>
        Record({
          offsetDelta: i,
          timestampDelta: i < deltas.length ? deltas[i] : Math.floor(r() * 2 ** (r() * 50)),
          key: i % 3 === 0 ? null : Buffer.from(`key-${i}`),
          value: i % 7 === 0 ? null : Buffer.from(`value-${i}-${"x".repeat(i)}`),
          headers: i % 2 === 0
            ? {}
            : { h: Buffer.from(`h${i}`), multi: [Buffer.from("a"), Buffer.from("b")] },
        }));
      const encoded = await RecordBatch({
        firstOffset: Long.fromValue(firstOffset),
        firstTimestamp,
        maxTimestamp: firstTimestamp,
        lastOffsetDelta: records.length - 1,
        records,
      });
      const got = await decodeRecordBatch(new Decoder(encoded.buffer));
      const want = await unpatched(() => decodeRecordBatch(new Decoder(encoded.buffer)));
      assertEquals(got.records.length, 40);
      assertEquals(got, want, `batch at offset ${firstOffset}, timestamp ${firstTimestamp}`);
      assertEquals(
        got.records.map((x: { offset: string }) => x.offset),
        Array.from({ length: 40 }, (_, i) => (BigInt(firstOffset) + BigInt(i)).toString()),
      );
    }
  }
});
