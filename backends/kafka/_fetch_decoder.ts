// deno-lint-ignore-file no-import-prefix
/**
 * Sluice's own decoder of Kafka Fetch responses (version 11) for kafkajs 2.2.4 (issue 20).
 *
 * kafkajs decodes every record through a generic `Decoder`: per record it cuts a `Buffer`
 * for the record and wraps it in a new `Decoder`, builds two or three `Long`s (`BigInt`
 * wrappers) for the offset and the timestamp, and folds the headers with an object spread
 * per header; the last batch of a response, cut short by `maxBytes`, is detected by
 * throwing and catching a `KafkaJSPartialMessageError` (with its stack). Its consumer's
 * `Batch` then makes a `Long` from every record's offset text to drop those before the
 * fetch offset. Profiles of Sluice reading 100-byte records put all that at half of the
 * process's CPU (bench/README.md, "Sluice's own record decoder").
 *
 * Two outputs from one reading of the bytes:
 * - **kafkajs's record objects** (`decodeFetchV11(raw)`, what any kafkajs consumer in the
 *   process gets): the same fields in the same order, offsets and timestamps as decimal
 *   strings, keys and values as `Buffer` views of the response, with index arithmetic
 *   instead of a `Decoder` and `Long`s per record;
 * - **record runs** (`decodeFetchV11(raw, true)`, only for the clients of Sluice's
 *   `KafkaConsumer`, marked with {@link decodeIntoRuns}): one {@link RecordRun} per record
 *   batch, which kafkajs's consumer handles as one message and the hand-off queue
 *   (`_batch_queue.ts`) decodes into `BrokerValue`s when `poll()` takes them.
 *
 * Anything outside the fast path is handed to kafkajs's own code: a record set in the
 * legacy message format (magic 0 or 1), an offset or timestamp outside JavaScript's exact
 * integer range (±2^53), a malformed batch. Compressed batches are decompressed with
 * kafkajs's codec registry (so `CompressionCodecs` registrations apply). A partition whose
 * response lists aborted transactions gets kafkajs's record objects (kafkajs's filter of
 * aborted records reads every record).
 *
 * One deliberate difference: a header whose name is also a property of `Object.prototype`
 * (`constructor`, `__proto__`, ...) is read as an own property; kafkajs's fold reads the
 * inherited member and turns the header into `[Object, value]`.
 *
 * Installed on kafkajs's Fetch v11 response module (the version kafkajs uses with every
 * broker since Kafka 2.3) when the Kafka backend is loaded (`kafkajs_patch.ts` imports
 * this module); `tests/backends/kafka/fetch_decoder_test.ts` compares it with kafkajs's
 * decoder.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import { BrokerValue, type Partition } from "../../types.ts";
import { ConsumerError } from "../../errors.ts";
import type { KafkaPayload } from "./payload.ts";
// @ts-ignore: internal kafkajs module without type declarations
import DecoderModule from "npm:kafkajs@2.2.4/src/protocol/decoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import DecodeMessagesModule from "npm:kafkajs@2.2.4/src/protocol/requests/fetch/v4/decodeMessages.js";
// @ts-ignore: internal kafkajs module without type declarations
import RecordBatchDecoderModule from "npm:kafkajs@2.2.4/src/protocol/recordBatch/v0/decoder.js";
// @ts-ignore: internal kafkajs module without type declarations
import CompressionModule from "npm:kafkajs@2.2.4/src/protocol/message/compression/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import BrokerModule from "npm:kafkajs@2.2.4/src/broker/index.js";
// @ts-ignore: internal kafkajs module without type declarations
import FetchV11Module from "npm:kafkajs@2.2.4/src/protocol/requests/fetch/v11/response.js";

// kafkajs ships no types for its internals.
// deno-lint-ignore no-explicit-any
type Any = any;

const KafkaDecoder = DecoderModule as Any;
const kafkajsDecodeMessages = DecodeMessagesModule as (decoder: Any) => Promise<Any[]>;
const kafkajsDecodeBatch = RecordBatchDecoderModule as (decoder: Any) => Promise<Any>;
const lookupCodecByAttributes = (CompressionModule as Any).lookupCodecByAttributes as (
  attributes: number,
) => { decompress(buffer: Buffer): Promise<Buffer> } | null;

/** What kafkajs's decoder gives for a record (the shape `Batch` and the runner read). */
export interface FetchedRecord {
  magicByte: number;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Any>;
  isControlRecord: boolean;
  batchContext: Record<string, Any>;
}

/** Thrown inside a batch to hand it to kafkajs's decoder (never escapes this module). */
const FALL_BACK = Symbol("fall back");

const TWO_32 = 4294967296;
/** The smallest record batch kafkajs will try to read (its `RECORD_BATCH_OVERHEAD`). */
const MIN_BATCH = 49;

/** The read position shared by the small readers below (one decode runs at a time). */
let at = 0;

/** A zig-zag varint (Kafka's int32 varint, at most 5 bytes). */
function varint(buf: Buffer): number {
  let b = buf[at++];
  let raw = b & 0x7f;
  if (b >= 0x80) {
    b = buf[at++];
    raw |= (b & 0x7f) << 7;
    if (b >= 0x80) {
      b = buf[at++];
      raw |= (b & 0x7f) << 14;
      if (b >= 0x80) {
        b = buf[at++];
        raw |= (b & 0x7f) << 21;
        if (b >= 0x80) {
          b = buf[at++];
          if (b > 0x0f) throw FALL_BACK;
          raw |= b << 28;
        }
      }
    }
  }
  if (b === undefined) throw FALL_BACK;
  return (raw >>> 1) ^ -(raw & 1);
}

/**
 * A zig-zag varlong of up to 10 bytes as a `Number`: exact when |value| < 2^52, else the
 * nearest (a run's record times are `Number`s, as a `BrokerValue`'s are; kafkajs reads any
 * long).
 */
function varlong(buf: Buffer): number {
  const negative = (buf[at] & 1) === 1;
  let raw = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = buf[at++];
    if (b === undefined) throw FALL_BACK;
    raw += (b & 0x7f) * scale;
    if (b < 0x80) return negative ? -(raw + 1) / 2 : raw / 2;
    scale *= 128;
  }
  throw FALL_BACK;
}

/** A signed 64-bit integer as a `Number` when exact, else `undefined`. */
function int64(buf: Buffer, p: number): number | undefined {
  const hi = buf.readInt32BE(p);
  if (hi >= 0x200000 || hi < -0x200000) return undefined;
  return hi * TWO_32 + buf.readUInt32BE(p + 4);
}

/** A signed 64-bit integer as decimal text (what kafkajs's `Long#toString` gives). */
function int64Text(buf: Buffer, p: number): string {
  const n = int64(buf, p);
  return n === undefined ? buf.readBigInt64BE(p).toString() : String(n);
}

/** Bytes of a varint length (-1 → null) as a view of `buf`, checked against `end`. */
function bytes(buf: Buffer, end: number): Buffer | null {
  const length = varint(buf);
  if (length === -1) return null;
  const start = at;
  at += length;
  if (length < -1 || at > end) throw FALL_BACK;
  return buf.slice(start, at);
}

function headers(buf: Buffer, end: number): Record<string, Any> {
  const out: Record<string, Any> = {};
  const count = varint(buf);
  for (let i = 0; i < count; i++) {
    const keyLength = varint(buf);
    let key: string;
    if (keyLength === -1) key = "null";
    else {
      if (keyLength < -1 || at + keyLength > end) throw FALL_BACK;
      key = buf.toString("utf8", at, at + keyLength);
      at += keyLength;
    }
    const value = bytes(buf, end);
    const prev = Object.hasOwn(out, key) ? out[key] : undefined;
    const next = prev === undefined
      ? value
      : Array.isArray(prev)
      ? [...prev, value]
      : [prev, value];
    if (key === "__proto__") {
      Object.defineProperty(out, key, {
        value: next,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } else out[key] = next;
  }
  return out;
}

/** A record batch's header, as far as its records need it. */
interface BatchHead {
  /** kafkajs's batch context: the same fields in the same order. */
  context: Record<string, Any>;
  baseOffset: number;
  /** The batch's last offset (base + last offset delta): records may end before it. */
  lastOffset: number;
  baseTimestamp: number;
  /** `maxTimestamp` when the batch carries LogAppendTime (its records' time), else undefined. */
  appendTime: number | undefined;
  magicByte: number;
  isControl: boolean;
  /** The record count the header gives. */
  count: number;
  codec: { decompress(buffer: Buffer): Promise<Buffer> } | null;
  /** Where the records start in `buf` (still compressed when `codec` is set). */
  recordsAt: number;
}

/**
 * Reads the header of the batch at `buf[p]` that ends at `batchEnd`. Throws FALL_BACK for
 * what kafkajs must decode: offsets or timestamps beyond ±2^53, a header cut short, a
 * batch that is not in the record-batch format.
 */
function batchHead(buf: Buffer, p: number, batchEnd: number): BatchHead {
  const baseOffset = int64(buf, p);
  const q = p + 12;
  if (batchEnd - q < MIN_BATCH || baseOffset === undefined) throw FALL_BACK;
  const partitionLeaderEpoch = buf.readInt32BE(q);
  const magicByte = buf.readInt8(q + 4);
  if (magicByte !== 2) throw FALL_BACK; // a legacy batch among record batches
  const attributes = buf.readInt16BE(q + 9);
  const lastOffsetDelta = buf.readInt32BE(q + 11);
  const baseTimestamp = int64(buf, q + 15);
  const maxTimestamp = int64(buf, q + 23);
  const lastOffset = baseOffset + lastOffsetDelta;
  if (
    baseTimestamp === undefined || maxTimestamp === undefined || !Number.isSafeInteger(lastOffset)
  ) {
    throw FALL_BACK;
  }
  const isControlBatch = (attributes & 0x20) !== 0;
  const timestampType = (attributes & 0x08) !== 0 ? 1 : 0;
  return {
    context: {
      firstOffset: String(baseOffset),
      firstTimestamp: String(baseTimestamp),
      partitionLeaderEpoch,
      inTransaction: (attributes & 0x10) !== 0,
      isControlBatch,
      lastOffsetDelta,
      producerId: int64Text(buf, q + 31),
      producerEpoch: buf.readInt16BE(q + 39),
      firstSequence: buf.readInt32BE(q + 41),
      maxTimestamp: String(maxTimestamp),
      timestampType,
      magicByte,
    },
    baseOffset,
    lastOffset,
    baseTimestamp,
    appendTime: timestampType === 1 ? maxTimestamp : undefined,
    magicByte,
    isControl: isControlBatch,
    count: buf.readInt32BE(q + 45),
    codec: lookupCodecByAttributes(attributes),
    recordsAt: q + 49,
  };
}

/** Decodes `count` records from `buf[start, end)` into kafkajs's record objects in `out`. */
function records(
  buf: Buffer,
  start: number,
  end: number,
  head: BatchHead,
  out: FetchedRecord[],
): void {
  const { context, baseOffset, baseTimestamp, appendTime, magicByte, isControl, count } = head;
  const appendText = appendTime === undefined ? undefined : String(appendTime);
  let lastDelta = NaN;
  let lastText = "";
  at = start;
  for (let i = 0; i < count; i++) {
    const length = varint(buf);
    const recordEnd = at + length;
    if (length < 0 || recordEnd > end) throw FALL_BACK;
    const attributes = (buf[at++] << 24) >> 24;
    const timestampDelta = varlong(buf);
    // kafkajs's text must be exact: larger deltas go its way.
    if (Math.abs(timestampDelta) >= 2 ** 48) throw FALL_BACK;
    let timestamp: string;
    if (appendText !== undefined) timestamp = appendText;
    else if (timestampDelta === lastDelta) timestamp = lastText;
    else {
      const t = baseTimestamp + timestampDelta;
      if (!Number.isSafeInteger(t)) throw FALL_BACK;
      timestamp = lastText = String(t);
      lastDelta = timestampDelta;
    }
    const o = baseOffset + varint(buf);
    if (!Number.isSafeInteger(o)) throw FALL_BACK;
    const key = bytes(buf, recordEnd);
    const value = bytes(buf, recordEnd);
    const h = headers(buf, recordEnd);
    if (at > recordEnd) throw FALL_BACK;
    out.push({
      magicByte,
      attributes,
      timestamp,
      offset: String(o),
      key,
      value,
      headers: h,
      isControlRecord: isControl,
      batchContext: context,
    });
    at = recordEnd;
  }
}

/** The records of a batch as kafkajs decodes them (`head` read from `buf[p, batchEnd)`). */
async function batchRecords(
  buf: Buffer,
  batchEnd: number,
  head: BatchHead,
  out: FetchedRecord[],
): Promise<void> {
  const { count, codec, recordsAt } = head;
  if (count <= 0) {
    // No records (kafkajs reads none for -1 or 0, or any count <= 0 when compressed).
    if (count >= -1 || codec) return;
    throw FALL_BACK;
  }
  if (!codec) return records(buf, recordsAt, batchEnd, head, out);
  const plain = await codec.decompress(buf.slice(recordsAt, batchEnd));
  records(plain, 0, plain.length, head, out);
}

/**
 * The record batches of one partition's record set, `buf[start, end)`, each handed to
 * `each` with its bounds; stops at a batch cut short by `maxBytes` (as kafkajs does).
 */
async function eachBatch(
  buf: Buffer,
  start: number,
  end: number,
  each: (p: number, batchEnd: number) => Promise<void>,
): Promise<void> {
  let p = start;
  while (end - p >= MIN_BATCH) {
    const length = buf.readInt32BE(p + 8);
    const batchEnd = p + 12 + length;
    if (length < 0 || batchEnd > end) return;
    await each(p, batchEnd);
    p = batchEnd;
  }
}

/** Reads the record batches of one partition's record set, `buf[start, end)`, into `out`. */
function recordSet(buf: Buffer, start: number, end: number, out: FetchedRecord[]) {
  return eachBatch(buf, start, end, async (p, batchEnd) => {
    const mark = out.length;
    try {
      await batchRecords(buf, batchEnd, batchHead(buf, p, batchEnd), out);
    } catch (e) {
      if (e !== FALL_BACK) throw e;
      out.length = mark;
      // kafkajs's decoder for this batch (it cannot be cut short: its end was checked).
      const decoded = await kafkajsDecodeBatch(new KafkaDecoder(buf.slice(p, end)));
      for (const r of decoded.records) out.push(r);
    }
  });
}

/**
 * The record set of one partition, read from a kafkajs `Decoder` (kafkajs's
 * `decodeMessages`): kafkajs's record objects, or with `runs` one {@link RecordRun} per
 * record batch (the records decoded when taken). Runs are not made for a partition with
 * aborted transactions (kafkajs's filter of aborted records reads every record) nor for
 * one that must go kafkajs's way.
 */
async function messages(decoder: Any, runs: boolean): Promise<FetchedRecord[] | RecordRun[]> {
  const buf: Buffer = decoder.buffer;
  const p: number = decoder.offset;
  if (buf.length - p < 4) return kafkajsDecodeMessages(decoder);
  const size = buf.readInt32BE(p);
  // Empty, unreadable, too short to carry a magic byte, or the legacy format: kafkajs's way.
  if (size < 17 || buf.length - p - 4 < size || buf[p + 4 + 16] !== 2) {
    return kafkajsDecodeMessages(decoder);
  }
  decoder.offset = p + 4 + size;
  const start = p + 4;
  const end = start + size;
  if (runs) {
    try {
      return await recordRuns(buf, start, end);
    } catch (e) {
      if (e !== FALL_BACK) throw e;
    }
  }
  const out: FetchedRecord[] = [];
  await recordSet(buf, start, end, out);
  return out;
}

/** One run per record batch of `buf[start, end)`; throws FALL_BACK for kafkajs's cases. */
async function recordRuns(buf: Buffer, start: number, end: number): Promise<RecordRun[]> {
  const out: RecordRun[] = [];
  await eachBatch(buf, start, end, async (p, batchEnd) => {
    const head = batchHead(buf, p, batchEnd);
    if (head.count < -1 && !head.codec) throw FALL_BACK;
    if (head.count > 0 && head.codec) {
      const plain = await head.codec.decompress(buf.slice(head.recordsAt, batchEnd));
      out.push(new RecordRun(plain, 0, plain.length, head));
    } else out.push(new RecordRun(buf, head.recordsAt, batchEnd, head));
  });
  return out;
}

/**
 * Decodes a Fetch v11 response body (what follows the correlation id) into what kafkajs's
 * `fetch/v11/response.js` `decode` returns; with `runs`, partitions carry {@link RecordRun}s
 * where they can (see `messages`).
 */
export async function decodeFetchV11(raw: Buffer, runs = false): Promise<Any> {
  const d = new KafkaDecoder(raw);
  const clientSideThrottleTime = d.readInt32();
  const errorCode = d.readInt16();
  const sessionId = d.readInt32();
  const topics = d.readInt32();
  const responses = [];
  for (let t = 0; t < topics; t++) {
    const topicName = d.readString();
    const count = d.readInt32();
    const partitions = [];
    for (let i = 0; i < count; i++) {
      const partition = d.readInt32();
      const partitionError = d.readInt16();
      const highWatermark = d.readInt64().toString();
      const lastStableOffset = d.readInt64().toString();
      const lastStartOffset = d.readInt64().toString();
      const abortedTransactions = d.readArray((a: Any) => ({
        producerId: a.readInt64().toString(),
        firstOffset: a.readInt64().toString(),
      }));
      const preferredReadReplica = d.readInt32();
      const plain = !runs || abortedTransactions.length > 0;
      partitions.push({
        partition,
        errorCode: partitionError,
        highWatermark,
        lastStableOffset,
        lastStartOffset,
        abortedTransactions,
        preferredReadReplica,
        messages: await messages(d, !plain),
      });
    }
    responses.push({ topicName, partitions });
  }
  // kafkajs reports throttleTime 0 and leaves the broker's figure in clientSideThrottleTime.
  return { throttleTime: 0, clientSideThrottleTime, errorCode, sessionId, responses };
}

/** @internal Counts of what the decoder made (for tests). */
export const fetchDecoderStats: { runs: number } = { runs: 0 };

/**
 * The records of one record batch, for Sluice's own consumers: kafkajs's consumer sees it
 * as one message whose offset is the batch's last offset (so its `Batch` filters, its
 * `lastOffset()` and the offset resolved after a batch work per batch instead of per
 * record), and the hand-off queue (`_batch_queue.ts`) decodes its records straight into
 * `BrokerValue`s when `poll()` takes them: no kafkajs record object, no offset or timestamp
 * text, nothing decoded before it is needed. A batch without records (left by compaction)
 * is a run marked as a control record: kafkajs skips it but counts its offsets.
 */
export class RecordRun {
  /** The batch's last offset as decimal text (what kafkajs's `Batch` and runner read). */
  readonly offset: string;
  /** True for a transaction-marker batch, or one without records: kafkajs drops it. */
  readonly isControlRecord: boolean;
  /** kafkajs's batch context (read by its aborted-transaction filter). */
  readonly batchContext: Record<string, Any>;
  /** The batch's last offset. */
  readonly lastOffset: number;
  readonly #buf: Buffer;
  readonly #end: number;
  readonly #baseOffset: number;
  readonly #baseTimestamp: number;
  readonly #appendTime: number | undefined;
  /** Where the next record starts, and how many are left. */
  #pos: number;
  #left: number;
  /** The next record's offset once its head is read (else -1), its time and field bounds. */
  #nextOffset = -1;
  #nextTime = 0;
  #nextFields = 0;
  #nextEnd = 0;

  /** A run of the `head.count` records in `buf[start, end)`. */
  constructor(buf: Buffer, start: number, end: number, head: BatchHead) {
    fetchDecoderStats.runs++;
    this.offset = String(head.lastOffset);
    this.lastOffset = head.lastOffset;
    this.isControlRecord = head.isControl || head.count <= 0;
    this.batchContext = head.context;
    this.#buf = buf;
    this.#end = end;
    this.#baseOffset = head.baseOffset;
    this.#baseTimestamp = head.baseTimestamp;
    this.#appendTime = head.appendTime;
    this.#pos = start;
    this.#left = Math.max(0, head.count);
  }

  /** True when every record has been read or skipped. */
  get done(): boolean {
    return this.#left === 0;
  }

  /** The offset of the next record (undefined when done). */
  peek(partition: Partition): number | undefined {
    if (this.#left === 0) return undefined;
    if (this.#nextOffset < 0) this.#head(partition);
    return this.#nextOffset;
  }

  /** Skips the records before `offset`. */
  skipBelow(offset: number, partition: Partition): void {
    while (this.#left > 0 && this.peek(partition)! < offset) {
      this.#pos = this.#nextEnd;
      this.#left--;
      this.#nextOffset = -1;
    }
  }

  /**
   * Decodes up to `max` records into `out` as `BrokerValue`s of `partition`; returns the
   * offset of the last one, or -1 when none was left.
   */
  readInto(out: BrokerValue<KafkaPayload>[], partition: Partition, max: number): number {
    const buf = this.#buf;
    let last = -1;
    try {
      for (let n = 0; n < max && this.#left > 0; n++) {
        if (this.#nextOffset < 0) this.#head(partition);
        const end = this.#nextEnd;
        at = this.#nextFields;
        const key = bytes(buf, end);
        const value = bytes(buf, end);
        const h = headers(buf, end);
        if (at > end) throw FALL_BACK;
        const timestamp = this.#nextTime;
        last = this.#nextOffset;
        out.push(
          new BrokerValue<KafkaPayload>(
            { key, value, headers: h, timestamp },
            partition,
            last,
            timestamp,
          ),
        );
        this.#pos = end;
        this.#left--;
        this.#nextOffset = -1;
      }
    } catch (e) {
      throw e === FALL_BACK ? this.#corrupt(partition) : e;
    }
    return last;
  }

  /** Reads the next record's length, offset and time. */
  #head(partition: Partition): void {
    const buf = this.#buf;
    try {
      at = this.#pos;
      const length = varint(buf);
      const end = at + length;
      if (length < 0 || end > this.#end) throw FALL_BACK;
      at++; // attributes (unused by Kafka so far)
      const timestampDelta = varlong(buf);
      const offset = this.#baseOffset + varint(buf);
      if (offset < this.#baseOffset || offset > this.lastOffset) throw FALL_BACK;
      this.#nextOffset = offset;
      this.#nextTime = this.#appendTime ?? this.#baseTimestamp + timestampDelta;
      this.#nextFields = at;
      this.#nextEnd = end;
    } catch (e) {
      throw e === FALL_BACK ? this.#corrupt(partition) : e;
    }
  }

  #corrupt(partition: Partition): ConsumerError {
    return new ConsumerError(
      `${partition}: the record batch ending at offset ${this.lastOffset} is malformed (a ` +
        "record runs past the batch, or its offset is outside it); nothing after the last " +
        "record handed out was handed out or committed. Check the producer and the broker's " +
        "log for that partition",
    );
  }
}

const fetchV11 = FetchV11Module as {
  decode: (raw: Buffer) => Promise<Any>;
  parse: (data: Any) => Promise<Any>;
};
/** kafkajs's own Fetch v11 decode (for the tests and the benchmark's comparison). */
export const kafkajsDecodeFetchV11: (raw: Buffer) => Promise<Any> = fetchV11.decode;

/** Fetch v11 as Sluice's consumers receive it: record runs. */
const fetchV11Runs = {
  decode: (raw: Buffer): Promise<Any> => decodeFetchV11(raw, true),
  parse: (data: Any): Promise<Any> => fetchV11.parse(data),
};

let sluiceDecoder = true;
/** The socket factories of the kafkajs clients whose fetches are decoded into runs. */
const runClients = new WeakSet<object>();

/**
 * Marks the kafkajs client built with `socketFactory` (a function of its own) as one whose
 * consumers receive {@link RecordRun}s: only Sluice's `KafkaConsumer` reads them.
 */
export function decodeIntoRuns<F extends object>(socketFactory: F): F {
  runClients.add(socketFactory);
  return socketFactory;
}

const Broker = BrokerModule as Any;
const brokerFetch = Broker.prototype.fetch;
// A broker of a marked client builds its Fetch request with the runs decoder. kafkajs's
// `Broker#fetch` looks the request up and builds it before its first await, so the lookup
// is swapped for that synchronous part only.
Broker.prototype.fetch = function (this: Any, args: Any): Promise<Any> {
  if (!sluiceDecoder || !runClients.has(this.connectionPool?.socketFactory)) {
    return brokerFetch.call(this, args);
  }
  const lookup = this.lookupRequest;
  this.lookupRequest = (apiKey: number, definition: Any) => {
    const build = lookup(apiKey, definition);
    return (...a: Any[]) => {
      const request = build(...a);
      return request.response === fetchV11 ? { ...request, response: fetchV11Runs } : request;
    };
  };
  try {
    return brokerFetch.call(this, args);
  } finally {
    this.lookupRequest = lookup;
  }
};

/**
 * Chooses which decoder kafkajs's consumers use for Fetch v11 responses in this process:
 * Sluice's (`true`, the default once the Kafka backend is loaded; record runs for Sluice's
 * own consumers) or kafkajs's own (`false`, for comparisons).
 */
export function useSluiceFetchDecoder(on: boolean): void {
  sluiceDecoder = on;
  fetchV11.decode = on ? decodeFetchV11 : kafkajsDecodeFetchV11;
}

useSluiceFetchDecoder(true);
