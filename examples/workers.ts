/**
 * CPU-heavy work on a pool of Web Workers: each message is hashed 2 000 times
 * (a few hundred µs of CPU). `RunTaskInWorkers` spreads batches over the workers and
 * hands results on in order. Run: `deno run -A examples/workers.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  RunTaskInWorkers,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const TOTAL = 2000;
const WORKERS = Math.max(2, navigator.hardwareConcurrency);

interface Job {
  text: string;
  rounds: number;
}

const broker = new LocalBroker<Job>();
const topic = broker.createTopic("documents", 2);
for (let i = 0; i < TOTAL; i++) {
  broker.produce(topic, { text: `document number ${i} with some words in it`, rounds: 2000 });
}
console.log(`produced ${TOTAL} documents; hashing them on ${WORKERS} workers`);

const seen: string[] = [];
const processor = new StreamProcessor<Job>({
  consumer: broker.getConsumer("hasher"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTaskInWorkers<Job, string>(
        new URL("./workers_fn.ts", import.meta.url),
        new RunTask((m: Message<string>) => {
          seen.push(m.payload);
          return m.payload;
        }, new CommitOffsets(commit)),
        { name: "hash", exportName: "hash", workers: WORKERS, maxBatchSize: 50, maxBatchTimeMs: 5 },
      ),
  },
});

const started = performance.now();
await processor.run({ untilCaughtUp: true });
const elapsed = performance.now() - started;

console.log(`hashed ${seen.length} documents in ${elapsed.toFixed(0)} ms`);
console.log(`  first results  ${seen.slice(0, 3).join(" ")}`);
console.log(`  distinct       ${new Set(seen).size}`);
console.log(
  `  committed      ${[...broker.committed("hasher")].map(([p, o]) => `${p}=${o}`).join("  ")}`,
);
