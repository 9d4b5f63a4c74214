/**
 * Writes Kafka Fetch v11 response bodies (what follows the correlation id) for decoder tests
 * and benchmarks: record batches (magic 2) with any offsets, timestamps, attributes, keys,
 * values and headers, optionally gzip-compressed, cut short where a test asks.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";

/** One record to write. */
export interface RecordSpec {
  offsetDelta?: number;
  timestampDelta?: number;
  key?: Uint8Array | null;
  value?: Uint8Array | null;
  /** Header name (null writes a null name) and value (null writes a null value). */
  headers?: [string | null, Uint8Array | null][];
  attributes?: number;
}

/** One record batch to write. */
export interface BatchSpec {
  baseOffset: bigint;
  baseTimestamp?: bigint;
  maxTimestamp?: bigint;
  /** Batch attributes: 0x08 LogAppendTime, 0x10 transactional, 0x20 control; 1 = gzip. */
  attributes?: number;
  producerId?: bigint;
  records: RecordSpec[];
  /** Overrides the record count written in the header. */
  count?: number;
}

/** One partition of the response. */
export interface PartitionSpec {
  partition: number;
  batches: BatchSpec[];
  highWatermark?: bigint;
  abortedTransactions?: { producerId: bigint; firstOffset: bigint }[] | null;
  /** Cut the record set to this many bytes (as a broker's `maxBytes` does). */
  truncateTo?: number;
  /** A record set given as raw bytes instead of batches (legacy formats). */
  rawRecords?: Uint8Array | null;
}

class Writer {
  parts: number[] = [];
  int8(v: number) {
    this.parts.push(v & 0xff);
  }
  int16(v: number) {
    this.parts.push((v >> 8) & 0xff, v & 0xff);
  }
  int32(v: number) {
    this.parts.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }
  int64(v: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.parts.push(...b);
  }
  /** Zig-zag varint of any size (written as a varlong). */
  varlong(v: bigint | number) {
    let z = BigInt.asUintN(64, (BigInt(v) << 1n) ^ (BigInt(v) >> 63n));
    while (z >= 0x80n) {
      this.parts.push(Number(z & 0x7fn) | 0x80);
      z >>= 7n;
    }
    this.parts.push(Number(z));
  }
  bytes(b: Uint8Array | null) {
    if (b === null) this.varlong(-1);
    else {
      this.varlong(b.length);
      this.parts.push(...b);
    }
  }
  raw(b: Uint8Array) {
    for (const x of b) this.parts.push(x);
  }
  buffer(): Buffer {
    return Buffer.from(this.parts);
  }
}

function recordBytes(r: RecordSpec, i: number): Buffer {
  const w = new Writer();
  w.int8(r.attributes ?? 0);
  w.varlong(r.timestampDelta ?? 0);
  w.varlong(r.offsetDelta ?? i);
  w.bytes(r.key === undefined ? null : r.key);
  w.bytes(r.value === undefined ? new Uint8Array([i & 0xff]) : r.value);
  const headers = r.headers ?? [];
  w.varlong(headers.length);
  for (const [k, v] of headers) {
    w.bytes(k === null ? null : new TextEncoder().encode(k));
    w.bytes(v);
  }
  const body = w.buffer();
  const out = new Writer();
  out.varlong(body.length);
  out.raw(body);
  return out.buffer();
}

/** The bytes of one record batch. */
export function batchBytes(b: BatchSpec): Buffer {
  const recs = Buffer.concat(b.records.map(recordBytes));
  const attributes = b.attributes ?? 0;
  const body = (attributes & 0x07) === 1 ? gzipSync(recs) : recs;
  const w = new Writer();
  w.int32(0); // partition leader epoch
  w.int8(2); // magic
  w.int32(0); // crc (not checked by kafkajs)
  w.int16(attributes);
  const lastDelta = b.records.reduce((m, r, i) => Math.max(m, r.offsetDelta ?? i), 0);
  w.int32(lastDelta);
  w.int64(b.baseTimestamp ?? 1_700_000_000_000n);
  w.int64(b.maxTimestamp ?? b.baseTimestamp ?? 1_700_000_000_000n);
  w.int64(b.producerId ?? -1n);
  w.int16(-1);
  w.int32(-1);
  w.int32(b.count ?? b.records.length);
  w.raw(body);
  const rest = w.buffer();
  const head = new Writer();
  head.int64(b.baseOffset);
  head.int32(rest.length);
  return Buffer.concat([head.buffer(), rest]);
}

/** A Fetch v11 response body for one topic. */
export function fetchResponse(topic: string, partitions: PartitionSpec[]): Buffer {
  const w = new Writer();
  w.int32(0); // throttle time
  w.int16(0); // error code
  w.int32(7); // session id
  w.int32(1);
  const name = new TextEncoder().encode(topic);
  w.int16(name.length);
  w.raw(name);
  w.int32(partitions.length);
  for (const p of partitions) {
    w.int32(p.partition);
    w.int16(0);
    w.int64(p.highWatermark ?? 1000n);
    w.int64(p.highWatermark ?? 1000n);
    w.int64(0n);
    const aborted = p.abortedTransactions;
    if (aborted === null) w.int32(-1);
    else {
      w.int32(aborted?.length ?? 0);
      for (const a of aborted ?? []) {
        w.int64(a.producerId);
        w.int64(a.firstOffset);
      }
    }
    w.int32(-1); // preferred read replica
    let set: Uint8Array | null = p.rawRecords !== undefined
      ? p.rawRecords
      : Buffer.concat(p.batches.map(batchBytes));
    if (set !== null && p.truncateTo !== undefined) set = set.subarray(0, p.truncateTo);
    if (set === null) w.int32(-1);
    else {
      w.int32(set.length);
      w.raw(set);
    }
  }
  return w.buffer();
}
