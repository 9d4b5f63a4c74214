/**
 * A partition's byte storage for the `LocalBroker`, as Arroyo's
 * `backends/local/storages/memory.py` is for its local broker: {@link PartitionLog} (one
 * partition's messages, offset = index) and the {@link ReadArena} that reads copy bytes into.
 * Private to the local backend.
 *
 * @module
 */
import { BrokerValue, type Partition } from "../../types.ts";

/** The first segment of a partition's byte storage; each next one is twice as large, up to the cap. */
const FIRST_SEGMENT_BYTES = 4096;
/** The largest shared segment; a payload larger than a quarter of it gets a segment of its own. */
const MAX_SEGMENT_BYTES = 1 << 20;

/** Size of the buffers that reads copy bytes into; a larger read gets a buffer of its own. */
const READ_ARENA_BYTES = 1 << 16;

/**
 * Where reads copy the bytes they return: successive reads take successive, never reused
 * regions of a 64 KiB buffer, so no two reads share bytes, without allocating an
 * `ArrayBuffer` (which costs far more than a view) for every poll.
 */
export class ReadArena {
  /** The buffer the last {@link ReadArena.copy} wrote into. */
  buffer: ArrayBuffer = new ArrayBuffer(0);
  #bytes = new Uint8Array(0);
  #used = 0;

  /** Copies `bytes` into fresh space; returns where they start in {@link ReadArena.buffer}. */
  copy(bytes: Uint8Array): number {
    const n = bytes.length;
    if (n > READ_ARENA_BYTES / 4) {
      this.buffer = bytes.slice().buffer;
      return 0;
    }
    if (this.#used + n > this.#bytes.length) {
      this.#bytes = new Uint8Array(READ_ARENA_BYTES);
      this.#used = 0;
    }
    const at = this.#used;
    this.#bytes.set(bytes, at);
    this.#used = at + n;
    this.buffer = this.#bytes.buffer;
    return at;
  }
}

/** Whether `payload` is exactly a `Uint8Array` (not a subclass such as Node's `Buffer`). */
function isPlainBytes(payload: unknown): payload is Uint8Array {
  return payload instanceof Uint8Array && Object.getPrototypeOf(payload) === Uint8Array.prototype;
}

/** A copy of `array` with room for `size` entries. */
function grown<A extends Float64Array | Uint32Array>(array: A, size: number): A {
  const copy = new (array.constructor as new (size: number) => A)(size);
  copy.set(array);
  return copy;
}

/**
 * One partition's log, stored the way a broker stores it, offset = index:
 *
 * - the timestamps in a packed `Float64Array`;
 * - while every payload is a plain `Uint8Array`, the payloads' bytes, copied into shared
 *   segments outside the JavaScript heap, with each message's segment, start and length in
 *   packed arrays: a backlog of a million messages is a few hundred `ArrayBuffer`s, not a
 *   million objects for the garbage collector to trace;
 * - from the first payload of any other kind, the payloads in a plain array.
 *
 * {@link BrokerValue}s are built only when messages are read or returned from `produce`.
 * Bytes are copied when produced, so the producer may reuse its buffer (as with Kafka), and
 * each read gets its own copy of the bytes it returns, so a consumer that changes a payload
 * in place changes neither the log nor what other readers see.
 */
export class PartitionLog<T> {
  readonly arena: ReadArena;
  constructor(arena: ReadArena) {
    this.arena = arena;
  }
  #length = 0;
  #timestamps = new Float64Array(16);
  /** Payloads by offset, once the log holds anything but plain bytes. */
  #payloads: T[] | undefined;
  readonly #segments: Uint8Array[] = [];
  /** The segment small payloads are appended to (-1: none yet), and how much of it is used. */
  #tail = -1;
  #tailUsed = 0;
  #segmentOf = new Uint32Array(16);
  #startOf = new Uint32Array(16);
  #lengthOf = new Uint32Array(16);

  /** The next offset to be written (the end offset). */
  get length(): number {
    return this.#length;
  }

  /** Appends a message; returns its offset. */
  append(payload: T, timestamp: number): number {
    const offset = this.#length;
    if (offset === this.#timestamps.length) this.#grow(offset * 2);
    this.#timestamps[offset] = timestamp;
    if (this.#payloads === undefined && isPlainBytes(payload)) {
      this.#appendBytes(offset, payload);
    } else {
      this.#payloads ??= this.#copiesOfStoredBytes();
      this.#payloads.push(isPlainBytes(payload) ? payload.slice() as T : payload);
    }
    this.#length = offset + 1;
    return offset;
  }

  /**
   * Writes the `count` messages from offset `from` (which must exist) to `out[at]`,
   * `out[at + 1]`, …; returns the index after the last one written.
   */
  read(
    partition: Partition,
    from: number,
    count: number,
    out: BrokerValue<T>[],
    at: number,
  ): number {
    const timestamps = this.#timestamps;
    const end = from + count;
    const payloads = this.#payloads;
    if (payloads !== undefined) {
      for (let o = from; o < end; o++) {
        out[at++] = new BrokerValue(payloads[o], partition, o, timestamps[o]);
      }
      return at;
    }
    // Each read gets bytes of its own (like a fetch response): one copy per run of offsets
    // stored back to back in one segment (usually the whole read), one view per message.
    const segmentOf = this.#segmentOf;
    const startOf = this.#startOf;
    const lengthOf = this.#lengthOf;
    for (let o = from; o < end;) {
      const segment = segmentOf[o];
      const first = o;
      const runStart = startOf[o];
      let runEnd = runStart;
      for (; o < end && segmentOf[o] === segment; o++) runEnd = startOf[o] + lengthOf[o];
      const shift = this.arena.copy(this.#segments[segment].subarray(runStart, runEnd)) - runStart;
      const buffer = this.arena.buffer;
      for (let k = first; k < o; k++) {
        const bytes = new Uint8Array(buffer, startOf[k] + shift, lengthOf[k]);
        out[at++] = new BrokerValue(bytes as T, partition, k, timestamps[k]);
      }
    }
    return at;
  }

  #appendBytes(offset: number, bytes: Uint8Array): void {
    const n = bytes.length;
    let segment: number;
    let start = 0;
    if (n > MAX_SEGMENT_BYTES / 4) {
      segment = this.#segments.push(bytes.slice()) - 1;
    } else {
      segment = this.#tail;
      if (segment < 0 || this.#tailUsed + n > this.#segments[segment].length) {
        const previous = segment < 0 ? FIRST_SEGMENT_BYTES / 2 : this.#segments[segment].length;
        const size = Math.max(n, Math.min(MAX_SEGMENT_BYTES, previous * 2));
        segment = this.#tail = this.#segments.push(new Uint8Array(size)) - 1;
        this.#tailUsed = 0;
      }
      start = this.#tailUsed;
      this.#segments[segment].set(bytes, start);
      this.#tailUsed = start + n;
    }
    this.#segmentOf[offset] = segment;
    this.#startOf[offset] = start;
    this.#lengthOf[offset] = n;
  }

  /** The stored bytes as separate copies, for a log that stops storing bytes. */
  #copiesOfStoredBytes(): T[] {
    const copies = new Array<T>(this.#length);
    for (let o = 0; o < this.#length; o++) {
      const start = this.#startOf[o];
      copies[o] = this.#segments[this.#segmentOf[o]].slice(start, start + this.#lengthOf[o]) as T;
    }
    this.#segments.length = 0;
    this.#segmentOf = this.#startOf = this.#lengthOf = new Uint32Array(0);
    return copies;
  }

  /** Grows the packed arrays to `size` entries. */
  #grow(size: number): void {
    this.#timestamps = grown(this.#timestamps, size);
    if (this.#payloads !== undefined) return;
    this.#segmentOf = grown(this.#segmentOf, size);
    this.#startOf = grown(this.#startOf, size);
    this.#lengthOf = grown(this.#lengthOf, size);
  }
}
