/**
 * Batching and reducing on the in-memory broker.
 *
 * - "counts": clicks per page, per batch of 500 messages or 200 ms, whichever comes first
 *   (`Reduce`). Bots are filtered out first; their offsets ride with the batches.
 * - "bulk": the raw events in batches of 250 (or 100 ms), written to a fake database in one
 *   call per batch (`BatchStep`).
 *
 * A burst of 2 000 events fills batches by size; a trickle afterwards is flushed by time.
 * Run: `deno run -A examples/batching.ts` (it stops by itself).
 */
import {
  BatchStep,
  type Commit,
  CommitOffsets,
  CommitPolicy,
  FilterStep,
  type Message,
  Reduce,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

interface Click {
  page: string;
  bot: boolean;
}

const broker = new LocalBroker<string>();
const topic = broker.createTopic("clicks", 2);
const pages = ["/", "/pricing", "/docs", "/blog"];
let produced = 0;
const produce = (n: number) => {
  for (let i = 0; i < n; i++, produced++) {
    const click: Click = { page: pages[produced % pages.length], bot: produced % 10 === 0 };
    broker.produce(topic, JSON.stringify(click));
  }
};

/** Logs the offsets each pipeline hands to the processor. */
const logged = (name: string, commit: Commit): Commit => (offsets, force) => {
  if (offsets.size > 0) {
    console.log(`  [${name}] commit ${[...offsets].map(([p, o]) => `${p}=${o}`).join(" ")}`);
  }
  commit(offsets, force);
};

interface PageCounts {
  messages: number;
  perPage: Map<string, number>;
}

const counts = new StreamProcessor<string>({
  consumer: broker.getConsumer("counts"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      const report = new RunTask(
        (m: Message<PageCounts>) => {
          const perPage = [...m.payload.perPage].map(([p, n]) => `${p}:${n}`).join(" ");
          console.log(`  [counts] batch of ${m.payload.messages} clicks: ${perPage}`);
          return m.payload;
        },
        new CommitOffsets(logged("counts", commit)),
      );
      const reduce = new Reduce(
        (acc: PageCounts, m: Message<Click>) => {
          acc.messages++;
          acc.perPage.set(m.payload.page, (acc.perPage.get(m.payload.page) ?? 0) + 1);
          return acc;
        },
        () => ({ messages: 0, perPage: new Map() }),
        report,
        { maxBatchSize: 500, maxBatchTimeMs: 200 },
      );
      const humans = new FilterStep((m: Message<Click>) => !m.payload.bot, reduce);
      return new RunTask((m: Message<string>) => JSON.parse(m.payload) as Click, humans);
    },
  },
});

let rowsWritten = 0;
const bulk = new StreamProcessor<string>({
  consumer: broker.getConsumer("bulk"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      const write = new RunTask(
        (batch: Message<Message<string>[]>) => {
          rowsWritten += batch.payload.length; // one INSERT of many rows, say
          console.log(`  [bulk]   wrote ${batch.payload.length} rows in one call`);
          return batch.payload.length;
        },
        new CommitOffsets(logged("bulk", commit)),
      );
      return new BatchStep<string>(write, { maxBatchSize: 250, maxBatchTimeMs: 100 });
    },
  },
});

const running = Promise.all([counts.run(), bulk.run()]);

console.log("burst of 2000 clicks (batches fill by size):");
produce(2000);
await waitUntilCommitted();
console.log("trickle of 40 clicks, one every 10 ms (batches flush by time):");
for (let i = 0; i < 40; i++) {
  produce(1);
  await new Promise((r) => setTimeout(r, 10));
}
await waitUntilCommitted();

counts.signalShutdown();
bulk.signalShutdown();
await running;
console.log(`\nproduced ${produced} clicks, wrote ${rowsWritten} rows`);
for (const group of ["counts", "bulk"]) {
  const committed = broker.committed(group);
  console.log(`  ${group} committed ${[...committed].map(([p, o]) => `${p}=${o}`).join(" ")}`);
}

/** Waits until both groups committed everything produced so far. */
async function waitUntilCommitted(): Promise<void> {
  const done = () =>
    ["counts", "bulk"].every((g) => {
      const committed = broker.committed(g);
      return broker.partitions(topic).every((p) => committed.get(p) === broker.endOffset(p));
    });
  while (!done()) await new Promise((r) => setTimeout(r, 20));
}
