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
 * (`sluice-example`, 3 partitions) if it does not exist. Stop it with Ctrl-C: the pipeline
 * is closed, joined and committed before the consumer leaves its group.
 *
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  StreamProcessor,
  Topic,
} from "../mod.ts";
import { KafkaConsumer, type KafkaPayload, KafkaProducer } from "../backends/kafka/mod.ts";

const brokers = Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:19092";
const topic = "sluice-example";
const count = Number(Deno.args[0] ?? 1000);

// 1. Make sure the topic exists (Sluice never auto-creates topics).
const admin = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING }).admin();
await admin.connect();
if (!(await admin.listTopics()).includes(topic)) {
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  console.log(`created topic ${topic}`);
}
await admin.disconnect();

// 2. Produce some events; each promise resolves with where the record landed.
const producer = new KafkaProducer({ brokers });
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
  consumer: new KafkaConsumer({ brokers, group: "sluice-example", maxWaitTimeMs: 200 }),
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
