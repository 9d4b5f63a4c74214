/**
 * Live view: a pipeline with a deliberately slow step, watched through the built-in status
 * view. A `HealthServer` watching the processor serves `/status` (and the probes); every
 * second this example fetches it the way the `status` entry point does and prints
 * `renderStatus`'s screen: per-step throughput, share of time backpressured and where the
 * pressure comes from, the bottleneck, lag per partition. Finishes by itself after ~6 s.
 *
 * Run: `deno run -A examples/live_view.ts` (`STATUS_PORT=8080` for a fixed port)
 *
 * Against your own consumer (a `HealthServer` given `processor`), from another terminal:
 * `deno run --allow-net status.ts http://127.0.0.1:<port>/status`
 * (published: `deno run --allow-net jsr:@sluice/sluice/status <url>`).
 *
 * Pipeline: parse (RunTask) → enrich (RunTask) → store (RunTaskAsync, 5 ms per message,
 * 8 at a time: about 1 500 msg/s) → commit. The producer writes 4 000 msg/s, so `store`
 * is the bottleneck: it sends backpressure that originates with itself, every step above
 * it reports `store` as the origin, fetching pauses after a second, and lag grows.
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  RunTaskAsync,
  StreamProcessor,
} from "../mod.ts";
import { HealthServer } from "../health.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import { fetchStatus, renderStatus } from "../status.ts";

const RUN_SECONDS = 6;
const PRODUCE_PER_SECOND = 4_000;
const STORE_MS = 5;
const STORE_CONCURRENCY = 8;

interface Order {
  id: number;
  amount: number;
  region?: string;
}

const broker = new LocalBroker<string>();
const topic = broker.createTopic("orders", 4);
let nextId = 0;
const producer = setInterval(() => {
  for (let i = 0; i < PRODUCE_PER_SECOND / 50; i++) {
    broker.produce(topic, JSON.stringify({ id: nextId, amount: nextId++ % 100 }));
  }
}, 20);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("live-view"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 200 }),
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTask(
        (m: Message<string>) => JSON.parse(m.payload) as Order,
        new RunTask(
          (m: Message<Order>) => ({ ...m.payload, region: m.payload.id % 2 ? "eu" : "us" }),
          new RunTaskAsync(
            async (_m: Message<Order>) => {
              await sleep(STORE_MS); // the deliberately slow write
              return true;
            },
            new CommitOffsets(commit, { name: "commit" }),
            { name: "store", concurrency: STORE_CONCURRENCY, highWaterMark: 256 },
          ),
          { name: "enrich", highWaterMark: 256 },
        ),
        { name: "parse", highWaterMark: 256 },
      ),
  },
});

// The probes and /status, on an ephemeral port (or STATUS_PORT).
const server = new HealthServer({ port: Number(Deno.env.get("STATUS_PORT") ?? 0), processor });
const url = `http://127.0.0.1:${server.port}/status`;
console.log(`status on ${url}`);

const tty = Deno.stdout.isTerminal();
const running = processor.run();
for (let second = 1; second <= RUN_SECONDS; second++) {
  await sleep(1000);
  const screen = `t=${second}s\n${renderStatus(await fetchStatus(url))}`;
  if (tty) console.log("\x1b[2J\x1b[H" + screen);
  else console.log(screen + "\n");
}
clearInterval(producer);
processor.signalShutdown();
await running;
await server.close();
console.log(
  `stopped after ${RUN_SECONDS} s: produced ${nextId}, polled ${processor.stats.messagesPolled}, ` +
    `committed ${[...broker.committed("live-view").values()].reduce((a, b) => a + b, 0)}`,
);
