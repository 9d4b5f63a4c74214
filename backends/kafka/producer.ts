/**
 * `KafkaProducer`: Sluice's {@link Producer} on kafkajs.
 *
 * @module
 */
import {
  type Admin,
  type Kafka,
  type Message,
  Partitioners,
  type Producer as KafkajsProducer,
} from "kafkajs";
import type { Producer } from "../abstract.ts";
import { macrotask } from "../../clock.ts";
import { BrokerValue, Partition, Topic } from "../../types.ts";
import { ClosedError, ConfigurationError, ProducerError, SluiceError } from "../../errors.ts";
import {
  type KafkaProducerOptions,
  type ResolvedProducerOptions,
  resolveProducerOptions,
} from "./config.ts";
import "./kafkajs_patch.ts";
import type { KafkaPayload } from "./payload.ts";
import { connect, createKafka, describeError, unknownTopicError } from "./_client.ts";
import { ConnectionWatch } from "./security.ts";

/**
 * A delivery to Kafka failed; `cause` holds kafkajs's error.
 *
 * @example Catching a failed delivery
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ProduceError } from "@sluice/sluice/kafka";
 *
 * // Stands in for `producer.produce(topic, payload)` when the broker refuses the record.
 * const produce = (): Promise<never> =>
 *   Promise.reject(new ProduceError("producing 1 record(s) to events failed", { cause: "x" }));
 * let failed = 0;
 * await produce().catch((e) => {
 *   if (!(e instanceof ProduceError)) throw e;
 *   failed++; // e.cause: kafkajs's error
 * });
 * assertEquals(failed, 1);
 * ```
 */
export class ProduceError extends SluiceError {}

interface Pending {
  partition: Partition;
  payload: KafkaPayload;
  resolve: (v: BrokerValue<KafkaPayload>) => void;
  reject: (e: unknown) => void;
}

type PartitionerFn = (args: {
  topic: string;
  partitionMetadata: { partitionId: number; leader: number }[];
  message: Message;
}) => number;

/**
 * Produces {@link KafkaPayload}s to Kafka. `produce` resolves once the broker confirmed
 * the record, with its real partition and offset.
 *
 * Records produced in the same event-loop turn (as the `Produce` strategy does when it
 * gets a batch) are sent in one request. For a topic destination the partition is chosen
 * like Java's default partitioner (murmur2 of the key; round-robin without a key).
 * Topics are never auto-created: an unknown topic fails with {@link UnknownTopicError}.
 * With `idempotent: true` a retried request never writes a record twice; requests then
 * go one at a time (see {@link KafkaProducerOptions.idempotent}).
 *
 * @example Producing one record (needs a broker)
 * ```ts ignore
 * import { KafkaProducer } from "@sluice/sluice/kafka";
 * import { Topic } from "@sluice/sluice";
 *
 * const producer = new KafkaProducer({ brokers: "127.0.0.1:9092" });
 * const delivered = await producer.produce(Topic.of("events"), { key: "k", value: "hello" });
 * console.log(`${delivered}`); // events/2@41
 * await producer.close();
 * ```
 */
export class KafkaProducer implements Producer<KafkaPayload> {
  readonly #o: ResolvedProducerOptions;
  #kafka: Kafka | undefined;
  #producer: KafkajsProducer | undefined;
  #admin: Admin | undefined;
  #started: Promise<void> | undefined;
  #closed = false;
  #queue: Pending[] = [];
  #flushScheduled = false;
  #inFlight = new Set<Promise<void>>();
  readonly #partitionCounts = new Map<Topic, Promise<{ partitionId: number; leader: number }[]>>();
  readonly #partitioner: PartitionerFn = Partitioners.DefaultPartitioner() as PartitionerFn;

  /** Validates `options` (throws {@link ConfigurationError}); connects on the first `produce`. */
  constructor(options: KafkaProducerOptions) {
    this.#o = resolveProducerOptions(options);
  }

  produce(
    destination: Topic | Partition,
    payload: KafkaPayload,
  ): Promise<BrokerValue<KafkaPayload>> {
    if (this.#closed) {
      return Promise.reject(new ClosedError("KafkaProducer is closed; create a new one"));
    }
    if (!(destination instanceof Topic) && !(destination instanceof Partition)) {
      return Promise.reject(
        new ConfigurationError(
          `produce destination must be a Topic or a Partition, got ${String(destination)}`,
        ),
      );
    }
    if (payload === null || typeof payload !== "object" || !("value" in payload)) {
      return Promise.reject(
        new ConfigurationError(
          "KafkaProducer.produce needs a KafkaPayload: { key, value, headers?, timestamp? }",
        ),
      );
    }
    return this.#enqueue(destination, payload);
  }

  async #enqueue(
    destination: Topic | Partition,
    payload: KafkaPayload,
  ): Promise<BrokerValue<KafkaPayload>> {
    await (this.#started ??= this.#start());
    const partition = destination instanceof Partition
      ? destination
      : await this.#choosePartition(destination, payload);
    return new Promise<BrokerValue<KafkaPayload>>((resolve, reject) => {
      this.#queue.push({ partition, payload, resolve, reject });
      if (this.#queue.length >= this.#o.maxBatchMessages) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // After this turn: everything produced in it goes in one request.
        macrotask().then(() => this.#flush());
      }
    });
  }

  async #start(): Promise<void> {
    const o = this.#o;
    const watch = new ConnectionWatch(o.ssl !== false);
    this.#kafka = createKafka(o, { watch });
    this.#producer = this.#kafka.producer({
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      ...o.kafkajs.producer,
      retry: { ...o.retry },
      idempotent: o.idempotent,
      maxInFlightRequests: o.idempotent
        ? 1
        : o.kafkajs.producer.maxInFlightRequests as number | undefined,
    });
    this.#admin = this.#kafka.admin({
      retry: { ...o.retry, retries: Math.min(o.retry.retries, 3) },
    });
    try {
      // Typed errors: KafkaAuthenticationError, KafkaTlsError; anything else a ProducerError.
      await connect([this.#producer.connect(), this.#admin.connect()], watch, o, ProducerError);
    } catch (e) {
      await this.#teardown();
      throw e;
    }
  }

  #metadata(topic: Topic): Promise<{ partitionId: number; leader: number }[]> {
    let p = this.#partitionCounts.get(topic);
    if (p === undefined) {
      p = (async () => {
        const existing = await this.#admin!.listTopics();
        if (!existing.includes(topic.name)) {
          throw unknownTopicError([topic.name], this.#o.brokers.join(","));
        }
        const md = await this.#admin!.fetchTopicMetadata({ topics: [topic.name] });
        return md.topics[0].partitions.map((q) => ({
          partitionId: q.partitionId,
          leader: q.leader,
        }));
      })();
      this.#partitionCounts.set(topic, p);
      p.catch(() => this.#partitionCounts.delete(topic));
    }
    return p;
  }

  async #choosePartition(topic: Topic, payload: KafkaPayload): Promise<Partition> {
    const partitionMetadata = await this.#metadata(topic);
    const index = this.#partitioner({
      topic: topic.name,
      partitionMetadata,
      message: { key: payload.key as Message["key"], value: null },
    });
    return Partition.of(topic, index);
  }

  #flush(): void {
    this.#flushScheduled = false;
    // Idempotent: one request at a time; what is queued meanwhile goes when it settles.
    while (this.#queue.length > 0 && !(this.#o.idempotent && this.#inFlight.size > 0)) {
      this.#send(this.#queue.splice(0, this.#o.maxBatchMessages));
    }
  }

  #send(batch: Pending[]): void {
    const byPartition = new Map<Partition, Pending[]>();
    for (const d of batch) {
      const l = byPartition.get(d.partition);
      if (l) l.push(d);
      else byPartition.set(d.partition, [d]);
    }
    const byTopic = new Map<string, Message[]>();
    for (const [p, list] of byPartition) {
      let msgs = byTopic.get(p.topic.name);
      if (!msgs) byTopic.set(p.topic.name, msgs = []);
      for (const d of list) {
        const { key, value, headers, timestamp } = d.payload;
        msgs.push({
          key: key as Message["key"],
          value: value as Message["value"],
          headers: headers as Message["headers"],
          timestamp: timestamp === undefined ? undefined : String(timestamp),
          partition: p.index,
        });
      }
    }
    const sent = this.#producer!.sendBatch({
      acks: this.#o.acks,
      timeout: this.#o.timeoutMs,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    }).then(
      (meta) => {
        for (const [p, list] of byPartition) {
          const md = meta.find((m) => m.topicName === p.topic.name && m.partition === p.index);
          if (md === undefined || md.baseOffset === undefined) {
            const e = new ProduceError(
              `Kafka did not confirm ${list.length} record(s) for ${p}; they may not have been written`,
            );
            for (const d of list) d.reject(e);
            continue;
          }
          const base = Number(md.baseOffset);
          const appendTime = md.logAppendTime !== undefined ? Number(md.logAppendTime) : -1;
          for (let i = 0; i < list.length; i++) {
            const d = list[i];
            const ts = appendTime >= 0 ? appendTime : d.payload.timestamp ?? Date.now();
            d.resolve(new BrokerValue(d.payload, p, base + i, ts));
          }
        }
      },
      (e) => {
        const err = new ProduceError(
          `producing ${batch.length} record(s) to ${[...byTopic.keys()].join(", ")} failed: ${
            describeError(e)
          }`,
          { cause: e },
        );
        for (const d of batch) d.reject(err);
      },
    );
    this.#inFlight.add(sent);
    sent.finally(() => {
      this.#inFlight.delete(sent);
      if (this.#queue.length > 0 && !this.#flushScheduled) this.#flush();
    });
  }

  /** Sends what is queued, waits for outstanding deliveries, and disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#started !== undefined) {
      await this.#started.catch(() => {});
      this.#flush();
      while (this.#inFlight.size > 0) {
        await Promise.allSettled([...this.#inFlight]);
        this.#flush();
      }
    }
    await this.#teardown();
  }

  async #teardown(): Promise<void> {
    const producer = this.#producer;
    const admin = this.#admin;
    this.#producer = undefined;
    this.#admin = undefined;
    await Promise.allSettled([producer?.disconnect(), admin?.disconnect()]);
  }
}
