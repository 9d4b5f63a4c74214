/**
 * What a backlog costs the in-memory broker: 1 M distinct 100-byte payloads produced into
 * one partition, stored as bytes (plain `Uint8Array` payloads) against the same payloads
 * stored as objects (what the broker does for any other kind of payload; here forced by one
 * string payload first). Reports the time to produce, the heap and RSS afterwards, and how
 * long a full collection takes with the backlog in place. Each variant runs in its own
 * process.
 *
 * Run: `deno run -A --v8-flags=--expose-gc bench/broker_backlog.ts [--messages N]`
 *
 * @module
 */
import { LocalBroker } from "../backends/local/mod.ts";
import {
  fmtInt,
  fmtMiB,
  gc,
  gcAvailable,
  machineNotes,
  parseFlags,
  printTable,
  runChildJson,
} from "./lib.ts";
import { PAYLOAD_BYTES } from "./inmemory.ts";

interface BacklogResult {
  name: string;
  produceMs: number;
  heapUsed: number;
  rss: number;
  fullGcMs: number;
}

/** Produces `messages` distinct payloads; `asObjects` stores them the way non-byte payloads are. */
function measure(messages: number, asObjects: boolean): BacklogResult {
  const broker = new LocalBroker<Uint8Array | string>();
  const topic = broker.createTopic("backlog", 1);
  if (asObjects) broker.produce(topic, "the first payload is a string");
  const t0 = performance.now();
  for (let i = 0; i < messages; i++) {
    broker.produce(topic, new Uint8Array(PAYLOAD_BYTES).fill(i & 255));
  }
  const produceMs = performance.now() - t0;
  gc();
  gc();
  const { heapUsed, rss } = Deno.memoryUsage();
  const g0 = performance.now();
  gc();
  const fullGcMs = performance.now() - g0;
  // Keep the broker alive until here, so the collections above had the backlog to trace.
  if (broker.endOffset(broker.partitions(topic)[0]) < messages) throw new Error("lost messages");
  return {
    name: asObjects ? "payloads stored as objects (baseline)" : "payloads stored as bytes",
    produceMs,
    heapUsed,
    rss,
    fullGcMs,
  };
}

const flags = parseFlags(Deno.args);
const run = Deno.args.find((a) => a.startsWith("--run="))?.slice("--run=".length);
if (run !== undefined) {
  console.log(JSON.stringify(measure(flags.messages, run === "objects")));
  Deno.exit(0);
}
if (!gcAvailable()) {
  console.log("run with --v8-flags=--expose-gc: the heap is measured after full collections");
  Deno.exit(1);
}
console.log(
  `\n## In-memory broker backlog: ${
    fmtInt(flags.messages)
  } distinct ${PAYLOAD_BYTES}-byte payloads\n`,
);
console.log(machineNotes());
const results: BacklogResult[] = [];
for (const variant of ["objects", "bytes"]) {
  const args = ["--messages", String(flags.messages), `--run=${variant}`];
  results.push(await runChildJson<BacklogResult>(new URL(import.meta.url), args));
}
const [base, bytes] = results;
printTable(
  "Backlog held by the in-memory broker",
  ["storage", "produce", "heap after full GC", "RSS", "one full GC", "heap vs baseline"],
  results.map((r) => [
    r.name,
    `${r.produceMs.toFixed(0)} ms`,
    fmtMiB(r.heapUsed),
    fmtMiB(r.rss),
    `${r.fullGcMs.toFixed(1)} ms`,
    `${((r.heapUsed / base.heapUsed) * 100).toFixed(1)}%`,
  ]),
);
console.log(
  `\nfull GC with the backlog: ${(base.fullGcMs / bytes.fullGcMs).toFixed(1)}× faster as bytes; ` +
    `produce ${(base.produceMs / bytes.produceMs).toFixed(2)}× faster`,
);
