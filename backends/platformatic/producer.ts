/**
 * A Sluice {@link Producer} on `npm:@platformatic/kafka`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { murmur2, Producer as PltProducer } from "@platformatic/kafka";
import type { Producer } from "../abstract.ts";
import { macrotask } from "../../clock.ts";
import { BrokerValue, Partition, type Topic } from "../../types.ts";
import { ClosedError, ProducerError, UnknownTopicError } from "../../errors.ts";
import type { KafkaPayload } from "../kafka/payload.ts";
import type { ResolvedProducerOptions } from "../kafka/config.ts";
import {
  clientOptions,
  type PlatformaticProducerOptions,
  resolvePlatformaticProducerOptions,
} from "./options.ts";
import { failFastOnSecurityErrors, securityError } from "./errors.ts";

interface Pending {
  partition: Partition;
  payload: KafkaPayload;
  resolve: (v: BrokerValue<KafkaPayload>) => void;
  reject: (e: unknown) => void;
}

/**
 * Produces {@link KafkaPayload}s with `@platformatic/kafka`. Messages produced in the same
 * turn of the event loop go in one request; a topic destination picks the partition by the
 * key's murmur2 hash (as Kafka's Java client and kafkajs do), round-robin without a key.
 *
 * @example Producing one record (needs a broker)
 * ```ts ignore
 * import { Topic } from "@sluice/sluice";
 * import { PlatformaticProducer } from "@sluice/sluice/platformatic";
 * const producer = new PlatformaticProducer({ brokers: "127.0.0.1:9092" });
 * const sent = await producer.produce(Topic.of("events"), { key: null, value: "hi" });
 * console.log(sent.partition, sent.offset);
 * await producer.close();
 * ```
 */
export class PlatformaticProducer implements Producer<KafkaPayload> {
  readonly #o: ResolvedProducerOptions;
  readonly #client: PltProducer;
  #queue: Pending[] = [];
  #flushScheduled = false;
  #closed = false;
  #inFlight = new Set<Promise<void>>();
  readonly #partitions = new Map<Topic, Promise<number>>();
  #roundRobin = 0;

  /** Validates `options`; connects on the first `produce()`. */
  constructor(options: PlatformaticProducerOptions) {
    const o = this.#o = resolvePlatformaticProducerOptions(options);
    this.#client = new PltProducer({
      ...clientOptions(o),
      acks: o.acks,
      timeout: o.timeoutMs,
      idempotent: o.idempotent,
      autocreateTopics: false,
    });
    failFastOnSecurityErrors(this.#client, o);
  }

  async produce(
    destination: Topic | Partition,
    payload: KafkaPayload,
  ): Promise<BrokerValue<KafkaPayload>> {
    if (this.#closed) throw new ClosedError("producer is closed; create a new producer");
    const partition = destination instanceof Partition
      ? destination
      : await this.#choose(destination, payload);
    return new Promise((resolve, reject) => {
      this.#queue.push({ partition, payload, resolve, reject });
      if (this.#queue.length >= this.#o.maxBatchMessages) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        macrotask().then(() => this.#flush());
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    try {
      await this.#client.close();
    } catch { /* closing anyway */ }
  }

  async #choose(topic: Topic, payload: KafkaPayload): Promise<Partition> {
    let count = this.#partitions.get(topic);
    if (count === undefined) {
      count = this.#client.metadata({ topics: [topic.name] }).then((m) => {
        const t = m.topics.get(topic.name);
        if (t === undefined) throw new UnknownTopicError(`topic "${topic.name}" does not exist`);
        return t.partitionsCount;
      }).catch((e) => {
        this.#partitions.delete(topic);
        if (e instanceof UnknownTopicError) throw e;
        const security = securityError(e, this.#o);
        if (security !== undefined) throw security;
        throw new UnknownTopicError(
          `topic "${topic.name}" does not exist or cannot be described (${(e as Error).message})`,
          { cause: e },
        );
      });
      this.#partitions.set(topic, count);
    }
    const n = await count;
    const key = payload.key;
    const index = key === null || key === undefined
      ? this.#roundRobin++ % n
      : (murmur2(typeof key === "string" ? key : toBuffer(key)) & 0x7fffffff) % n;
    return Partition.of(topic, index);
  }

  #flush(): void {
    this.#flushScheduled = false;
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    const fail = (e: unknown) => {
      const err = securityError(e, this.#o) ??
        new ProducerError(`produce failed: ${e instanceof Error ? e.message : String(e)}`, {
          cause: e,
        });
      for (const m of batch) m.reject(err);
    };
    // A send the library refuses at once (it throws) fails its batch, not the caller of
    // #flush (a macrotask nobody awaits).
    let sending: ReturnType<PltProducer["send"]>;
    try {
      sending = this.#client.send({
        messages: batch.map((m) => ({
          topic: m.partition.topic.name,
          partition: m.partition.index,
          key: m.payload.key === null ? undefined : toBuffer(m.payload.key),
          value: m.payload.value === null ? undefined : toBuffer(m.payload.value),
          headers: m.payload.headers === undefined ? undefined : headersOf(m.payload.headers),
          timestamp: m.payload.timestamp === undefined ? undefined : BigInt(m.payload.timestamp),
        })),
        // deno-lint-ignore no-explicit-any
      } as any);
    } catch (e) {
      fail(e);
      return;
    }
    const sent = sending.then((result) => {
      const base = new Map<string, number>();
      for (const o of result.offsets ?? []) base.set(`${o.topic}/${o.partition}`, Number(o.offset));
      const next = new Map<string, number>();
      for (const m of batch) {
        const k = `${m.partition.topic.name}/${m.partition.index}`;
        const i = next.get(k) ?? 0;
        next.set(k, i + 1);
        const b = base.get(k);
        m.resolve(
          new BrokerValue(
            m.payload,
            m.partition,
            b === undefined ? -1 : b + i,
            m.payload.timestamp ?? Date.now(),
          ),
        );
      }
    }).catch(fail); // a send refused, or its answer unreadable: the rest of the batch fails
    this.#inFlight.add(sent);
    sent.finally(() => this.#inFlight.delete(sent));
  }
}

function toBuffer(v: Uint8Array | string): Buffer {
  const bytes = typeof v === "string" ? new TextEncoder().encode(v) : v;
  // @platformatic/kafka writes Buffers; a Buffer view over the same bytes costs no copy.
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function headersOf(h: NonNullable<KafkaPayload["headers"]>): Map<Buffer, Buffer> {
  const out = new Map<Buffer, Buffer>();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) {
      out.set(toBuffer(k), toBuffer(one as Uint8Array | string));
    }
  }
  return out;
}
