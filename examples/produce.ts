/**
 * Consume topic "raw", clean each record, produce it to topic "clean", and commit a source
 * offset only once its copy is confirmed. Then read "clean" back.
 * Run: `deno run -A examples/produce.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  Produce,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const broker = new LocalBroker<string>();
const raw = broker.createTopic("raw", 2);
const clean = broker.createTopic("clean", 1);
const inputs = [
  "  Ada Lovelace ",
  "GRACE hopper",
  " alan TURING",
  "Barbara Liskov  ",
  "edsger dijkstra",
];
for (const name of inputs) broker.produce(raw, name);
console.log(`produced ${inputs.length} raw names to "raw"`);

const titleCase = (s: string) => s.trim().toLowerCase().replace(/\b\w/g, (c) => c.toUpperCase());

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("cleaner"),
  topics: [raw],
  commitPolicy: new CommitPolicy({ intervalMs: 50 }),
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTask(
        (m: Message<string>) => titleCase(m.payload),
        new Produce(broker.getProducer(), clean, new CommitOffsets(commit), { maxInFlight: 100 }),
        { name: "title-case" },
      ),
  },
});

await processor.run({ untilCaughtUp: true });

const reader = broker.getConsumer("reader");
reader.subscribe([clean]);
const out: string[] = [];
while (out.length < inputs.length) out.push(...(await reader.poll(100)).map((v) => v.payload));
await reader.close();

console.log(`read back from "clean":`);
for (const name of out) console.log(`  ${name}`);
console.log(
  `committed on "raw": ${[...broker.committed("cleaner")].map(([p, o]) => `${p}=${o}`).join("  ")}`,
);
