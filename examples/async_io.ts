/**
 * Async I/O with bounded concurrency: every message needs a slow lookup (simulated with a
 * 5–25 ms sleep). `RunTaskAsync` runs up to 32 lookups at once and still commits in order.
 * Run: `deno run -A examples/async_io.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTaskAsync,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const TOTAL = 500;
const CONCURRENCY = 32;

const broker = new LocalBroker<string>();
const topic = broker.createTopic("user-ids", 4);
for (let i = 0; i < TOTAL; i++) broker.produce(topic, `user-${i}`);
console.log(`produced ${TOTAL} user ids to 4 partitions`);

let running = 0;
let maxRunning = 0;
let simulatedMs = 0;
let looked = 0;

/** A pretend HTTP lookup: 5–25 ms of latency, then a profile. */
async function lookup(
  m: Message<string>,
  signal: AbortSignal,
): Promise<{ id: string; score: number }> {
  running++;
  maxRunning = Math.max(maxRunning, running);
  const latency = 5 + ((m.payload.length * 7919 + looked * 31) % 21);
  simulatedMs += latency;
  try {
    await new Promise<void>((resolve) => {
      const id = setTimeout(resolve, latency);
      signal.addEventListener("abort", () => {
        clearTimeout(id);
        resolve();
      }, { once: true });
    });
    looked++;
    return { id: m.payload, score: m.payload.length };
  } finally {
    running--;
  }
}

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("enricher"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTaskAsync(lookup, new CommitOffsets(commit), {
        name: "lookup",
        concurrency: CONCURRENCY,
        maxPending: 4 * CONCURRENCY,
      }),
  },
});

const started = performance.now();
await processor.run({ untilCaughtUp: true });
const elapsed = performance.now() - started;

console.log(`looked up ${looked} users in ${elapsed.toFixed(0)} ms`);
console.log(`  sum of simulated latencies  ${simulatedMs} ms (what one-at-a-time would take)`);
console.log(`  most lookups at once        ${maxRunning} (concurrency ${CONCURRENCY})`);
console.log(`  speed-up over sequential    ${(simulatedMs / elapsed).toFixed(1)}x`);
console.log(
  `  committed                   ${
    [...broker.committed("enricher")].map(([p, o]) => `${p}=${o}`).join("  ")
  }`,
);
