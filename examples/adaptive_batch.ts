/**
 * AdaptiveBatch: a bulk insert costs 20 ms plus 0.2 ms per row. Aiming for 100 ms per
 * insert, the batch size grows from 10 and settles near the best size, (100 - 20) / 0.2
 * = 400 rows, without anyone computing it.
 *
 * Run: `deno run -A examples/adaptive_batch.ts`
 */
import { AdaptiveBatch, CommitOffsets, CommitPolicy, StreamProcessor } from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const TOTAL = 8000;
const broker = new LocalBroker<string>();
const topic = broker.createTopic("rows", 2);
for (let i = 0; i < TOTAL; i++) broker.produce(topic, JSON.stringify({ id: i }));

/** The database: fixed cost per statement plus a cost per row. */
async function bulkInsert(rows: string[]): Promise<number> {
  await new Promise((r) => setTimeout(r, 20 + 0.2 * rows.length));
  return rows.length;
}

let batcher: AdaptiveBatch<string, number> | undefined;
const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("loader"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 200 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      return batcher = new AdaptiveBatch(bulkInsert, new CommitOffsets(commit), {
        name: "bulk-insert",
        targetMs: 100,
        minSize: 10,
        maxSize: 5000,
        initialSize: 10,
        highWaterMark: 2000,
      });
    },
  },
});

const started = performance.now();
const running = processor.run({ untilCaughtUp: true });
let shown = 0;
const show = () => {
  const history = batcher?.history ?? [];
  for (; shown < history.length; shown++) {
    const h = history[shown];
    console.log(
      `batch ${String(shown + 1).padStart(2)}: ${String(h.size).padStart(4)} rows in ${
        String(Math.round(h.elapsedMs)).padStart(3)
      } ms${h.full ? "" : " (partial)"} -> next size ${h.nextSize}`,
    );
  }
};
const ticker = setInterval(show, 50);
await running;
clearInterval(ticker);
show();

const seconds = (performance.now() - started) / 1000;
const full = batcher!.history.filter((h) => h.full);
const last = full.slice(-5).map((h) => h.size);
console.log("\nsummary");
console.log(`  rows inserted     ${TOTAL} in ${batcher!.batches} batches, ${seconds.toFixed(1)} s`);
console.log(
  `  settled size      ${
    last.join(", ")
  } (best for 100 ms: ~400; it stops adjusting within ±10% of the target)`,
);
console.log(
  `  rows per second   ${Math.round(TOTAL / seconds)} (a fixed size of 10 would manage ~${
    Math.round(10 / 0.022)
  })`,
);
