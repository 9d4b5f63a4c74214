/**
 * LoadShed: a live feed arrives at ~2000 msg/s, the dashboard writer manages ~400 msg/s.
 * Instead of falling ever further behind, the pipeline keeps the freshest 100 readings
 * and drops the oldest — counted, and still committed in order.
 *
 * Run: `deno run -A examples/load_shed.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  LoadShed,
  type Message,
  type ProcessingStrategy,
  StreamProcessor,
  StreamStep,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

/** The slow part: writes one reading every ~2.5 ms (a chart, a socket, a small database). */
class DashboardWriter extends StreamStep<number> {
  written = 0;
  constructor(next: ProcessingStrategy<number>) {
    super("dashboard", next, { highWaterMark: 10 });
  }
  protected async process(batch: Message<number>[]): Promise<void> {
    for (const m of batch) {
      if (!m.filtered) {
        await new Promise((r) => setTimeout(r, 2.5));
        this.written++;
      }
      await this.emitWhenRoom(m);
    }
  }
}

const broker = new LocalBroker<number>();
const topic = broker.createTopic("readings", 1);
let shed: LoadShed<number> | undefined;
let writer: DashboardWriter | undefined;

const processor = new StreamProcessor<number>({
  consumer: broker.getConsumer("dashboard"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      writer = new DashboardWriter(new CommitOffsets(commit));
      return shed = new LoadShed(writer, {
        name: "keep-freshest",
        capacity: 100,
        policy: "drop-oldest",
      });
    },
  },
});

const running = processor.run();
let produced = 0;
const producing = setInterval(() => {
  for (let i = 0; i < 20; i++) broker.produce(topic, produced++);
}, 10);
const lag = () =>
  broker.endOffset(broker.partitions(topic)[0]) -
  (broker.committed("dashboard").get(broker.partitions(topic)[0]) ?? 0);
const report = setInterval(() => {
  console.log(
    `produced ${String(produced).padStart(5)} | written ${
      String(writer?.written ?? 0).padStart(4)
    } | ` +
      `dropped oldest ${String(shed?.dropped.oldest ?? 0).padStart(5)} | buffered ${
        String(shed?.buffered ?? 0).padStart(3)
      } | uncommitted ${String(lag()).padStart(4)} | paused ${processor.paused}`,
  );
}, 250);

await new Promise((r) => setTimeout(r, 2000));
clearInterval(producing);
while (lag() > 0) await new Promise((r) => setTimeout(r, 20));
clearInterval(report);
processor.signalShutdown();
await running;

console.log("\nsummary");
console.log(`  produced            ${produced}`);
console.log(`  written             ${writer!.written}`);
console.log(`  dropped (oldest)    ${shed!.dropped.oldest}, (newest) ${shed!.dropped.newest}`);
console.log(
  `  written + dropped   ${
    writer!.written + shed!.droppedTotal
  } (= produced: every message accounted for)`,
);
console.log(
  `  committed offset    ${broker.committed("dashboard").get(broker.partitions(topic)[0])}`,
);
console.log(
  `  consumer pauses     ${processor.stats.pauses} (shedding never holds the consumer back)`,
);
