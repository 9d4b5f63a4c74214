/**
 * Sluice on Apache Kafka: produce a few JSON events with `KafkaProducer`, then consume
 * them with a `StreamProcessor` (decode → RunTask → CommitOffsets) in a consumer group.
 *
 * ```sh
 * deno task kafka:up                      # local broker on 127.0.0.1:19092 (needs Java + Maven)
 * KAFKA_BROKERS=127.0.0.1:19092 deno run -A examples/kafka.ts
 * ```
 *
 * `KAFKA_BROKERS` defaults to 127.0.0.1:19092. The example creates its topic
 * (`sluice-example`, 3 partitions) if it does not exist, and prints the group's lag at the
 * end. Stop it with Ctrl-C: the pipeline is closed, joined and committed before the
 * consumer leaves its group.
 *
 * A secured cluster (SASL_SSL): set `KAFKA_CA_FILE` (PEM of the CA to trust; leave it out
 * for a public CA), `KAFKA_SASL_MECHANISM` (e.g. `SCRAM-SHA-512`), `KAFKA_USERNAME` and
 * `KAFKA_PASSWORD`. The development broker has such a listener on port 19094:
 *
 * ```sh
 * KAFKA_BROKERS=127.0.0.1:19094 KAFKA_CA_FILE=.kafka/certs/ca.pem \
 *   KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_USERNAME=sluice KAFKA_PASSWORD=sluice-test-password \
 *   deno run -A examples/kafka.ts
 * ```
 *
 * @module
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  StreamProcessor,
  Topic,
} from "../mod.ts";
import {
  KafkaAdmin,
  type KafkaClientOptions,
  KafkaConsumer,
  type KafkaPayload,
  KafkaProducer,
} from "../backends/kafka/mod.ts";

const env = (name: string) => Deno.env.get(name) || undefined;
const topic = "sluice-example";
const group = "sluice-example";
const count = Number(Deno.args[0] ?? 1000);

// 0. The connection, shared by the admin, the producer and the consumer: TLS and SASL
//    only when the environment asks for them.
const caFile = env("KAFKA_CA_FILE");
const mechanism = env("KAFKA_SASL_MECHANISM") as "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512";
const connection: KafkaClientOptions = {
  brokers: env("KAFKA_BROKERS") ?? "127.0.0.1:19092",
  ...(caFile || mechanism ? { ssl: caFile ? { ca: await Deno.readTextFile(caFile) } : true } : {}),
  ...(mechanism
    ? {
      sasl: {
        mechanism,
        username: env("KAFKA_USERNAME") ?? "",
        password: env("KAFKA_PASSWORD") ?? "",
      },
    }
    : {}),
};

// 1. Make sure the topic exists (Sluice never auto-creates topics). Idempotent.
const admin = new KafkaAdmin(connection);
const created = await admin.createTopics([{ name: topic, partitions: 3 }]);
if (created.length > 0) console.log(`created topic ${topic}`);

// 2. Produce some events; each promise resolves with where the record landed.
const producer = new KafkaProducer(connection);
const delivered = await Promise.all(
  Array.from({ length: count }, (_, i) =>
    producer.produce(Topic.of(topic), {
      key: `user-${i % 10}`,
      value: JSON.stringify({ user: i % 10, clicks: i % 7 }),
    })),
);
await producer.close();
console.log(`produced ${delivered.length} events, the last at ${delivered.at(-1)}`);

// 3. Consume them in group "sluice-example": sum clicks per user, commit once a second.
const decoder = new TextDecoder();
const clicks = new Map<number, number>();
let seen = 0;
const processor = new StreamProcessor<KafkaPayload>({
  consumer: new KafkaConsumer({ ...connection, group, maxWaitTimeMs: 200 }),
  topics: [topic],
  commitPolicy: CommitPolicy.ONCE_PER_SECOND,
  factory: {
    createWithPartitions: (commit, partitions) => {
      console.log(`assigned ${[...partitions].map(([p, o]) => `${p}@${o}`).join(", ")}`);
      return new RunTask((m: Message<KafkaPayload>) => {
        const event = JSON.parse(decoder.decode(m.payload.value as Uint8Array));
        clicks.set(event.user, (clicks.get(event.user) ?? 0) + event.clicks);
        if (++seen % 500 === 0) console.log(`processed ${seen}`);
        return event;
      }, new CommitOffsets(commit));
    },
  },
});

// Stop once this run's events are in (or on Ctrl-C), then print the totals.
const timer = setInterval(() => {
  if (seen >= count) processor.signalShutdown();
}, 200);
await processor.run();
clearInterval(timer);
console.log(`processed ${seen} events; clicks per user:`, Object.fromEntries(clicks));
const { totalLag } = await admin.describeGroup(group, [topic]);
console.log(`group ${group}: ${totalLag} messages not committed yet`);
await admin.close();
