/**
 * Web streams as first-class citizens.
 *
 * 1. Standard `TransformStream`s as pipeline steps (`TransformStep`): a `TextDecoderStream`
 *    and a JSON-parsing transform, with offsets preserved and backpressure flowing through.
 * 2. A consumer read as a `ReadableStream<Message>` (`consumerReadable`): `pipeThrough` and
 *    `for await`, committing only what the loop acknowledged.
 *
 * Run: `deno run -A examples/web_streams.ts` (it stops by itself).
 */
import {
  CommitOffsets,
  CommitPolicy,
  consumerReadable,
  type Message,
  RunTask,
  StreamProcessor,
  TransformStep,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

interface Order {
  id: number;
  total: number;
}

const broker = new LocalBroker<Uint8Array>();
const topic = broker.createTopic("orders", 3);
const encoder = new TextEncoder();
const TOTAL = 3000;
for (let id = 0; id < TOTAL; id++) {
  broker.produce(topic, encoder.encode(JSON.stringify({ id, total: (id % 7) * 10 })));
}

// ---- 1. TransformStreams as steps ------------------------------------------------------

let revenue = 0;
const processor = new StreamProcessor<Uint8Array>({
  consumer: broker.getConsumer("revenue"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    // A TransformStream is single-use: build a fresh one for every pipeline.
    createWithPartitions(commit) {
      const sum = new RunTask((m: Message<Order>) => {
        revenue += m.payload.total;
        return m.payload;
      }, new CommitOffsets(commit));
      const parse = new TransformStep(
        new TransformStream<string, Order>({
          transform(text, controller) {
            controller.enqueue(JSON.parse(text));
          },
        }),
        sum,
        { name: "parse-json", highWaterMark: 256 },
      );
      return new TransformStep(new TextDecoderStream(), parse, {
        name: "utf8",
        highWaterMark: 256,
      });
    },
  },
});

await processor.run({ untilCaughtUp: true });
console.log(`1. TransformStep pipeline: ${TOTAL} orders, revenue ${revenue}`);
console.log(
  `   committed ${[...broker.committed("revenue")].map(([p, o]) => `${p}=${o}`).join(" ")}`,
);

// ---- 2. A consumer as a ReadableStream -------------------------------------------------

const orders = consumerReadable(broker.getConsumer("audit"), {
  topics: [topic],
  highWaterMark: 100, // fetch at most ~100 messages ahead of the loop
});
const decoder = new TextDecoder();
const parsed = orders.readable.pipeThrough(
  new TransformStream<Message<Uint8Array>, Message<Order>>({
    transform(m, controller) {
      // replacePayload keeps partition and offset, so the result can be acknowledged.
      controller.enqueue(m.replacePayload(JSON.parse(decoder.decode(m.payload)) as Order));
    },
  }),
);

let seen = 0;
let large = 0;
for await (const m of parsed) {
  if (m.payload.total >= 50) large++;
  orders.ack(m); // processed: may be committed
  if (++seen === TOTAL) break; // cancels the pipe, and through it the consumer's stream
}
await orders.close(); // waits for the final commit and the consumer's close
console.log(`2. for await over consumerReadable: ${seen} orders, ${large} of 50 or more`);
console.log(
  `   committed ${[...broker.committed("audit")].map(([p, o]) => `${p}=${o}`).join(" ")}`,
);
