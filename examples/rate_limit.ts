/**
 * RateLimit: calls to a rate-limited API stay under its quota — a burst of 10, then
 * 25 per second — while the consumer waits on timers (no spinning).
 *
 * Run: `deno run -A examples/rate_limit.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RateLimit,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import process from "node:process";

const TOTAL = 60;
const broker = new LocalBroker<string>();
const topic = broker.createTopic("api-calls", 2);
for (let i = 0; i < TOTAL; i++) broker.produce(topic, `request ${i}`);

const started = performance.now();
let cpuFrom: { at: number; cpu: ReturnType<typeof process.cpuUsage> } | undefined;
const callTimes: number[] = [];
let limiter: RateLimit<string> | undefined;

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("api"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      const callApi = new RunTask((m: Message<string>) => {
        callTimes.push(performance.now() - started);
        return m.payload.length; // stands for the API call
      }, new CommitOffsets(commit));
      return limiter = new RateLimit(callApi, {
        name: "api-quota",
        ratePerSecond: 25,
        capacity: 10,
        highWaterMark: 10,
      });
    },
  },
});

const running = processor.run({ untilCaughtUp: true });
const progress = setInterval(() => {
  // CPU is measured from the first report on: steady rate-limited state, start-up excluded.
  cpuFrom ??= { at: performance.now(), cpu: process.cpuUsage() };
  const t = (performance.now() - started) / 1000;
  console.log(
    `t=${t.toFixed(2)}s admitted ${limiter?.admitted ?? 0} (allowed: <= ${
      Math.floor(10 + 25 * t)
    }), waiting for tokens ${
      limiter?.delayed ?? 0
    }, submits rejected ${processor.stats.rejections}`,
  );
}, 250);
const group = "api";
await running;
clearInterval(progress);
const cpu = process.cpuUsage(cpuFrom!.cpu);
const wallMs = performance.now() - cpuFrom!.at;

const first = callTimes[0];
const burst = callTimes.filter((t) => t - first < 10).length;
const steadySeconds = (callTimes.at(-1)! - callTimes[burst - 1]) / 1000;
console.log("\nsummary");
console.log(`  calls made            ${callTimes.length} of ${TOTAL}`);
console.log(`  burst (within 10 ms)  ${burst} (capacity 10)`);
console.log(
  `  steady rate           ${
    ((callTimes.length - burst) / steadySeconds).toFixed(1)
  }/s (configured 25/s)`,
);
console.log(
  `  processor rejections  ${processor.stats.rejections} (each one a timer wait, not a spin)`,
);
console.log(`  loop iterations       ${processor.stats.iterations}`);
console.log(
  `  CPU while limited     ${((cpu.user + cpu.system) / 10 / wallMs).toFixed(2)}% of one core ` +
    `(${((cpu.user + cpu.system) / 1000).toFixed(0)} ms CPU in ${
      (wallMs / 1000).toFixed(1)
    } s, progress printing included)`,
);
console.log(
  `  committed             ${[...broker.committed(group)].map(([p, o]) => `${p}=${o}`).join(" ")}`,
);
