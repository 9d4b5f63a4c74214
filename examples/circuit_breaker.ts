/**
 * CircuitBreaker: a downstream service goes down for two seconds. The breaker opens after
 * 3 failures, stops calling it, pauses the consumer, probes every 500 ms, and closes when
 * the service is back — every message is delivered exactly once, none is skipped.
 *
 * Run: `deno run -A examples/circuit_breaker.ts`
 */
import {
  CircuitBreaker,
  CommitOffsets,
  CommitPolicy,
  type Message,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const TOTAL = 300;
const broker = new LocalBroker<number>();
const topic = broker.createTopic("webhooks", 1);
for (let i = 0; i < TOTAL; i++) broker.produce(topic, i);

const started = performance.now();
const since = () => `${((performance.now() - started) / 1000).toFixed(2)}s`;
// The service is down from 0.3 s to 2.3 s.
const serviceUp = () => {
  const t = performance.now() - started;
  return t < 300 || t > 2300;
};
let calls = 0;
const delivered: number[] = [];
let breaker: CircuitBreaker<number, number> | undefined;

const processor = new StreamProcessor<number>({
  consumer: broker.getConsumer("webhooks"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  pauseAfterMs: 200,
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      return breaker = new CircuitBreaker(
        async (m: Message<number>) => {
          calls++;
          await new Promise((r) => setTimeout(r, 3)); // the HTTP call
          if (!serviceUp()) throw new Error("503 Service Unavailable");
          delivered.push(m.payload);
          return m.payload;
        },
        new CommitOffsets(commit),
        {
          name: "webhook-sender",
          failureThreshold: 3,
          coolDownMs: 500,
          retryDelayMs: 20,
          highWaterMark: 20,
          onStateChange: (c) => console.log(`${since()} circuit ${c.from} -> ${c.to}: ${c.reason}`),
        },
      );
    },
  },
});

const running = processor.run({ untilCaughtUp: true });
const report = setInterval(() => {
  console.log(
    `${since()}   delivered ${delivered.length}, calls ${calls}, state ${breaker?.state}, ` +
      `consumer paused ${processor.paused}`,
  );
}, 400);
const p0 = broker.partitions(topic)[0];
await running;
clearInterval(report);

const unique = new Set(delivered).size;
console.log("\nsummary");
console.log(
  `  delivered           ${delivered.length} (${unique} distinct of ${TOTAL}, in order: ${
    delivered.every((v, i) => v === i)
  })`,
);
console.log(`  calls               ${calls} (${breaker!.failures} failed; no calls while open)`);
console.log(`  transitions         ${JSON.stringify(breaker!.transitionCounts)}`);
console.log(`  consumer pauses     ${processor.stats.pauses}, resumes ${processor.stats.resumes}`);
console.log(`  committed offset    ${broker.committed("webhooks").get(p0)}`);
