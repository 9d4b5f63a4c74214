/**
 * `KafkaAdmin`: create and delete topics, read a group's committed offsets and lag,
 * without importing kafkajs. Takes the same connection options (brokers, TLS, SASL) as
 * the consumer and the producer.
 *
 * @module
 */
import type { Admin, Kafka } from "kafkajs";
import { ClosedError, ConfigurationError, ConsumerError, SluiceError } from "../../errors.ts";
import { requirePositiveInteger } from "../../_validate.ts";
import { type KafkaClientOptions, resolveClient, type ResolvedClientOptions } from "./config.ts";
import { connect, createKafka } from "./_client.ts";
import { ConnectionWatch } from "./security.ts";
import "./kafkajs_patch.ts";

/**
 * A topic to create with {@link KafkaAdmin.createTopics}.
 *
 * @example A replicated topic
 * ```ts
 * import type { KafkaTopicSpec } from "@sluice/sluice/kafka";
 * const orders: KafkaTopicSpec = { name: "orders", partitions: 6, replicationFactor: 3 };
 * ```
 */
export interface KafkaTopicSpec {
  /** Topic name. */
  name: string;
  /**
   * Number of partitions.
   * @default 1
   */
  partitions?: number;
  /** Copies of each partition. Left out: the broker's `default.replication.factor`. */
  replicationFactor?: number;
  /** Topic configuration, e.g. `{ "retention.ms": "86400000" }`. */
  config?: Record<string, string>;
}

/**
 * One partition of {@link KafkaGroupOffsets}.
 *
 * @example One line per partition
 * ```ts
 * import type { KafkaPartitionLag } from "@sluice/sluice/kafka";
 * const line = (p: KafkaPartitionLag) => `${p.topic}/${p.partition}: lag ${p.lag}`;
 * ```
 */
export interface KafkaPartitionLag {
  /** Topic name. */
  topic: string;
  /** Partition index. */
  partition: number;
  /** The group's committed offset (the next message it will read), or `null` if none. */
  committed: number | null;
  /** The partition's end offset (high watermark: the offset the next message gets). */
  end: number;
  /**
   * Messages the group has not committed yet: `end - committed`, or `end - start` (all
   * retained messages) when nothing is committed.
   */
  lag: number;
}

/**
 * What {@link KafkaAdmin.describeGroup} returns.
 *
 * @example Partitions far behind
 * ```ts
 * import type { KafkaGroupOffsets } from "@sluice/sluice/kafka";
 * const behind = (g: KafkaGroupOffsets) => g.partitions.filter((p) => p.lag > 1000);
 * ```
 */
export interface KafkaGroupOffsets {
  /** The group id. */
  group: string;
  /** Per partition of the topics asked about, sorted by topic then partition. */
  partitions: KafkaPartitionLag[];
  /** Sum of `lag` over `partitions`. */
  totalLag: number;
}

/**
 * A small Kafka admin client: topics and group offsets, with the connection options
 * (brokers, `ssl`, `sasl`...) of {@link KafkaClientOptions}. Connects on first use; call
 * {@link KafkaAdmin.close} when done.
 *
 * @example Creating a topic and reading a group's lag (needs a broker)
 * ```ts ignore
 * import { KafkaAdmin } from "@sluice/sluice/kafka";
 *
 * const admin = new KafkaAdmin({ brokers: "127.0.0.1:9092" });
 * try {
 *   await admin.createTopics([{ name: "events", partitions: 4 }]); // idempotent
 *   const { totalLag } = await admin.describeGroup("my-group", ["events"]);
 *   console.log(`lag: ${totalLag}`);
 * } finally {
 *   await admin.close();
 * }
 * ```
 */
export class KafkaAdmin {
  readonly #o: ResolvedClientOptions;
  #kafka: Kafka | undefined;
  #admin: Promise<Admin> | undefined;
  #closed = false;

  /** Validates `options` (throws a `ConfigurationError`); connects on first use. */
  constructor(options: KafkaClientOptions) {
    this.#o = resolveClient(options, "KafkaAdmin");
  }

  #connect(): Promise<Admin> {
    if (this.#closed) return Promise.reject(new ClosedError("KafkaAdmin is closed"));
    return this.#admin ??= (async () => {
      const watch = new ConnectionWatch(this.#o.ssl !== false);
      const kafka = this.#kafka = createKafka(this.#o, { watch });
      const admin = kafka.admin({ retry: { ...this.#o.retry } });
      try {
        await connect([admin.connect()], watch, this.#o, ConsumerError);
      } catch (e) {
        this.#admin = undefined;
        await admin.disconnect().catch(() => {});
        throw e;
      }
      return admin;
    })();
  }

  /**
   * Creates the topics that do not exist yet and waits for their leaders. Idempotent: a
   * topic that exists with the same partition count is left alone; one that exists with
   * another count is a `ConfigurationError` (partitions are never changed behind your back).
   *
   * @returns The names of the topics it created.
   */
  async createTopics(topics: readonly KafkaTopicSpec[]): Promise<string[]> {
    const specs = topics.map((t) => {
      if (t === null || typeof t !== "object" || typeof t.name !== "string" || t.name === "") {
        throw new ConfigurationError(
          `createTopics takes [{ name, partitions?, replicationFactor?, config? }], got ${
            JSON.stringify(t)
          }`,
        );
      }
      return {
        topic: t.name,
        numPartitions: t.partitions === undefined
          ? 1
          : requirePositiveInteger(`partitions of "${t.name}"`, t.partitions),
        replicationFactor: t.replicationFactor === undefined
          ? -1
          : requirePositiveInteger(`replicationFactor of "${t.name}"`, t.replicationFactor),
        configEntries: Object.entries(t.config ?? {}).map(([name, value]) => ({
          name,
          value: String(value),
        })),
      };
    });
    const admin = await this.#connect();
    const existing = new Set(await admin.listTopics());
    const present = specs.filter((s) => existing.has(s.topic));
    if (present.length > 0) {
      const { topics: meta } = await admin.fetchTopicMetadata({
        topics: present.map((s) => s.topic),
      });
      for (const m of meta) {
        const want = present.find((s) => s.topic === m.name)!.numPartitions;
        if (m.partitions.length !== want) {
          throw new ConfigurationError(
            `topic "${m.name}" exists with ${m.partitions.length} partitions, not ${want}; ` +
              "delete it first or ask for the partitions it has",
          );
        }
      }
    }
    const missing = specs.filter((s) => !existing.has(s.topic));
    if (missing.length === 0) return [];
    // Not kafkajs's waitForLeaders: right after a creation, KRaft brokers may answer
    // UNKNOWN_TOPIC_OR_PARTITION for a moment, which it does not retry.
    try {
      await admin.createTopics({ topics: missing, waitForLeaders: false });
    } catch (e) {
      // Someone else created one meanwhile: fine if it has the partitions asked for.
      if (!/already exists/i.test(String((e as Error).message))) throw e;
    }
    await this.#awaitLeaders(admin, missing.map((s) => s.topic));
    return missing.map((s) => s.topic);
  }

  /** Waits (30 s at most) until every partition of `topics` has a leader. */
  async #awaitLeaders(admin: Admin, topics: string[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const { topics: meta } = await admin.fetchTopicMetadata({ topics });
        if (
          meta.length === topics.length &&
          meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))
        ) return;
      } catch (e) {
        last = e;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new SluiceError(
      `topics ${topics.join(", ")} were created but got no partition leaders within 30 s` +
        (last instanceof Error ? ` (last error: ${last.message})` : "") +
        "; check the broker's health and min.insync.replicas",
    );
  }

  /** Deletes topics; names that do not exist are ignored. */
  async deleteTopics(names: readonly string[]): Promise<void> {
    const admin = await this.#connect();
    const existing = new Set(await admin.listTopics());
    const topics = names.filter((n) => existing.has(n));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
  }

  /** The names of all topics (internal ones, starting with `__`, left out). */
  async listTopics(): Promise<string[]> {
    const admin = await this.#connect();
    return (await admin.listTopics()).filter((t) => !t.startsWith("__")).sort();
  }

  /**
   * A consumer group's committed offset, end offset and lag per partition of `topics`
   * (default: the topics the group has committed offsets for).
   */
  async describeGroup(group: string, topics?: readonly string[]): Promise<KafkaGroupOffsets> {
    if (typeof group !== "string" || group === "") {
      throw new ConfigurationError(`describeGroup needs a group id, got ${JSON.stringify(group)}`);
    }
    const admin = await this.#connect();
    const committed = await admin.fetchOffsets({
      groupId: group,
      ...(topics ? { topics: [...topics] } : {}),
    });
    const partitions: KafkaPartitionLag[] = [];
    for (const { topic, partitions: ps } of committed) {
      const ends = new Map(
        (await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p]),
      );
      for (const p of ps) {
        const end = Number(ends.get(p.partition)?.high ?? 0);
        const start = Number(ends.get(p.partition)?.low ?? 0);
        const offset = Number(p.offset);
        const c = offset >= 0 ? offset : null;
        partitions.push({
          topic,
          partition: p.partition,
          committed: c,
          end,
          lag: Math.max(0, end - (c ?? start)),
        });
      }
    }
    partitions.sort((a, b) =>
      a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition
    );
    return { group, partitions, totalLag: partitions.reduce((n, p) => n + p.lag, 0) };
  }

  /** Disconnects. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const admin = this.#admin;
    this.#admin = undefined;
    if (admin) await (await admin.catch(() => undefined))?.disconnect();
  }
}
