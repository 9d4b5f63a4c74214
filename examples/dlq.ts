/**
 * Dead-letter queue: 10 000 JSON orders on the in-memory broker, 1 in 200 of them
 * corrupt. `Decode` turns the corrupt ones into `InvalidMessage`s, the processor sends
 * their raw bytes to the `orders-dlq` topic with headers saying where they came from and
 * why, and commits move past them only once the DLQ confirmed them.
 *
 * Run: `npx -y deno@2.9.6 run -A examples/dlq.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  Decode,
  JSON_CODEC,
  type Message,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { DLQ_HEADERS, DlqPolicy, type DlqRecord } from "../processing/dlq.ts";
import { LocalBroker } from "../backends/local/mod.ts";

interface Order {
  id: number;
  amount: number;
}

const TOTAL = 10_000;
const encoder = new TextEncoder();

// The source topic: bytes. One order in 200 is cut short (invalid JSON).
const broker = new LocalBroker<Uint8Array>();
const orders = broker.createTopic("orders", 4);
for (let i = 0; i < TOTAL; i++) {
  const json = JSON.stringify({ id: i, amount: i % 100 });
  broker.produce(orders, encoder.encode(i % 200 === 199 ? json.slice(0, 7) : json));
}

// The dead-letter topic. With the in-memory broker the default DLQ payload, a DlqRecord
// (raw payload + headers + original timestamp), can be stored as is. For Kafka use a
// KafkaProducer and `build: withDlqHeaders` (see the README, "Dead-letter queue").
const dlqBroker = new LocalBroker<DlqRecord<Uint8Array>>();
const dlqTopic = dlqBroker.createTopic("orders-dlq", 1);

let revenue = 0;
const processor = new StreamProcessor<Uint8Array>({
  consumer: broker.getConsumer("billing"),
  topics: [orders],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  dlqPolicy: new DlqPolicy<Uint8Array>({
    producer: dlqBroker.getProducer(),
    topic: dlqTopic,
    // More than 20 corrupt orders in a row, or more than 2% overall: stop, it's an incident.
    limit: { maxConsecutiveInvalid: 20, maxInvalidRatio: 0.02 },
  }),
  factory: {
    createWithPartitions: (commit) =>
      new Decode(
        (bytes: Uint8Array) => JSON_CODEC.decode(bytes) as Order,
        new RunTask(
          (m: Message<Order>) => (revenue += m.payload.amount),
          new CommitOffsets(commit),
        ),
        { name: "decode-order" },
      ),
  },
  handleSignals: false,
});

await processor.run({ untilCaughtUp: true });

const dlqConsumer = dlqBroker.getConsumer("inspect");
dlqConsumer.subscribe([dlqTopic]);
const dead = await dlqConsumer.poll(0);
await dlqConsumer.close();

console.log(`revenue ${revenue} from ${TOTAL - dead.length} valid orders`);
console.log(
  `dead-lettered ${processor.stats.deadLettered} (dropped ${processor.stats.dlqDropped})`,
);
const first = dead[0].payload;
console.log("first dead letter:", new TextDecoder().decode(first.value), {
  from: `${first.headers[DLQ_HEADERS.topic]}/${first.headers[DLQ_HEADERS.partition]}@${
    first.headers[DLQ_HEADERS.offset]
  }`,
  reason: first.headers[DLQ_HEADERS.reason],
  step: first.headers[DLQ_HEADERS.step],
});
if (dead.length !== TOTAL / 200) throw new Error(`expected ${TOTAL / 200} dead letters`);
