// One pipeline, every runtime: deno run / bun this file, node on its build (see docs/runtimes.md).
import { BatchStep, CommitOffsets, FilterStep, type Message } from "../../mod.ts";
import { RunTask, RunTaskAsync } from "../../mod.ts";
import { lines, processStream } from "../../stream.ts";
import { detectRuntime } from "../../runtime/mod.ts";

const body = [...Array(10)].map((_, i) => JSON.stringify({ amount: i })).join("\n");
const cents = (m: Message<string>) => Promise.resolve(JSON.parse(m.payload).amount * 100); // or a fetch
const sum = (b: Message<Message<number>[]>) => b.payload.reduce((s, m) => s + m.payload, 0);
const totals: number[] = [];
let acknowledged = 0; // what an edge function would acknowledge to its socket or queue

await processStream(lines(new Response(body).body!), {
  onCommit: (next) => void (acknowledged = next),
  factory: {
    createWithPartitions: (commit) => {
      const sink = new RunTask(
        (b: Message<Message<number>[]>) => totals.push(sum(b)),
        new CommitOffsets(commit),
      );
      const batch = new BatchStep<number>(sink, { maxBatchSize: 4, maxBatchTimeMs: 50 });
      return new FilterStep<string>(
        (m) => JSON.parse(m.payload).amount % 2 === 0,
        new RunTaskAsync(cents, batch),
      );
    },
  },
});
export const result = `${detectRuntime()}: totals ${totals}; acknowledged ${acknowledged}`;
console.log(result);
