/**
 * Quickstart: 100 000 synthetic events on the in-memory broker, through
 * filter → transform → commit. Run: `deno run -A examples/quickstart.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  FilterStep,
  type Message,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const TOTAL = 100_000;
const PARTITIONS = 4;

interface Event {
  user: string;
  kind: "click" | "view" | "purchase";
  amount: number;
}

const broker = new LocalBroker<Uint8Array>();
const topic = broker.createTopic("events", PARTITIONS);
const encoder = new TextEncoder();
const kinds = ["click", "view", "purchase"] as const;
for (let i = 0; i < TOTAL; i++) {
  const event: Event = { user: `user-${i % 97}`, kind: kinds[i % 3], amount: i % 50 };
  broker.produce(topic, encoder.encode(JSON.stringify(event)));
}
console.log(`produced ${TOTAL} events to ${PARTITIONS} partitions`);

const decoder = new TextDecoder();
let processed = 0;
let revenue = 0;
let filter: FilterStep<Event> | undefined;

const processor = new StreamProcessor<Uint8Array>({
  consumer: broker.getConsumer("quickstart"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 200 }),
  factory: {
    createWithPartitions(commit) {
      const commitStep = new CommitOffsets(commit, { name: "commit" });
      const total = new RunTask(
        (m: Message<Event>) => {
          processed++;
          revenue += m.payload.amount;
          return m.payload;
        },
        commitStep,
        { name: "revenue" },
      );
      filter = new FilterStep((m: Message<Event>) => m.payload.kind === "purchase", total, {
        name: "purchases-only",
      });
      return new RunTask(
        (m: Message<Uint8Array>) => JSON.parse(decoder.decode(m.payload)) as Event,
        filter,
        { name: "decode" },
      );
    },
  },
});

const started = performance.now();
const progress = setInterval(() => {
  console.log(
    `  polled ${processor.stats.messagesPolled.toLocaleString()} | purchases ${processed.toLocaleString()}`,
  );
}, 250);

// Stop once every partition is processed and committed up to its end offset.
await processor.run({ untilCaughtUp: true });
const elapsed = (performance.now() - started) / 1000;
const group = "quickstart";
clearInterval(progress);

const committed = broker.committed(group);
console.log("\nsummary");
console.log(`  events consumed     ${processor.stats.messagesPolled.toLocaleString()}`);
console.log(`  purchases processed ${processed.toLocaleString()} (revenue ${revenue})`);
console.log(`  filtered out        ${(filter?.dropped ?? 0).toLocaleString()}`);
console.log(`  committed offsets   ${[...committed].map(([p, o]) => `${p}=${o}`).join("  ")}`);
console.log(`  commits             ${processor.stats.commits}`);
console.log(`  throughput          ${Math.round(TOTAL / elapsed).toLocaleString()} msg/s`);
