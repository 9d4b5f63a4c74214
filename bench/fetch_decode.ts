// deno-lint-ignore-file no-import-prefix no-explicit-any
/**
 * Decoding one Kafka fetch response, no broker: kafkajs's decoder against Sluice's
 * (`backends/kafka/_fetch_decoder.ts`), each followed by what the consumer does next —
 * kafkajs's `Batch` (its per-record offset filter) and one `BrokerValue` per record —
 * so the figure is the whole per-record cost between the socket and `poll()`.
 *
 * ```sh
 * deno run -A bench/fetch_decode.ts                  # 4 partitions x 10 batches x 120 records
 * deno run -A bench/fetch_decode.ts --records=240 --bytes=1000 --rounds=5
 * ```
 *
 * Three ways, alternately, best of `--rounds` (default 3) runs of 200 decodes each:
 * `kafkajs` (kafkajs's decoder with the fixes of `kafkajs_patch.ts`, kafkajs's records
 * converted as the hand-off queue did), `exact` (Sluice's decoder giving kafkajs's record
 * objects: what any other kafkajs consumer in the process gets) and `runs` (Sluice's
 * decoder giving record runs, decoded into `BrokerValue`s: what Sluice's consumer gets).
 * Prints ns per record and the ratio to `kafkajs` from the same run.
 *
 * @module
 */
import "../backends/kafka/kafkajs_patch.ts";
import {
  decodeFetchV11,
  kafkajsDecodeFetchV11,
  type RecordRun,
} from "../backends/kafka/_fetch_decoder.ts";
import { fetchResponse, type PartitionSpec } from "../tests/_support/fetch_response.ts";
import { BrokerValue, Partition } from "../types.ts";
import type { KafkaPayload } from "../backends/kafka/payload.ts";
// @ts-ignore: internal kafkajs module without type declarations
import BatchModule from "npm:kafkajs@2.2.4/src/consumer/batch.js";
import { numberFlag as flag } from "./kafka_lib.ts";

const Batch = BatchModule as any;
const RECORDS = flag("records", 120);
const BYTES = flag("bytes", 100);
const ROUNDS = flag("rounds", 3);
const PARTITIONS = 4;
const BATCHES = 10;

const value = new Uint8Array(BYTES).fill(65);
const parts: PartitionSpec[] = [];
let base = 1_000_000n;
for (let p = 0; p < PARTITIONS; p++) {
  const batches = [];
  for (let b = 0; b < BATCHES; b++) {
    batches.push({
      baseOffset: base,
      // Producer batches share a timestamp over a few records.
      records: Array.from({ length: RECORDS }, (_, i) => ({ value, timestampDelta: i >> 4 })),
    });
    base += BigInt(RECORDS);
  }
  parts.push({ partition: p, batches });
}
const raw = fetchResponse("t", parts);
const perResponse = PARTITIONS * BATCHES * RECORDS;
const P = Array.from({ length: PARTITIONS }, (_, i) => Partition.of("t", i));

async function records(decode: (raw: any) => Promise<any>): Promise<number> {
  const r = await decode(raw);
  const out: BrokerValue<KafkaPayload>[] = [];
  for (const pd of r.responses[0].partitions) {
    const b = new Batch("t", pd.messages[0].offset, pd);
    for (const m of b.messages) {
      const ts = Number(m.timestamp);
      out.push(
        new BrokerValue<KafkaPayload>(
          { key: m.key, value: m.value, headers: m.headers ?? {}, timestamp: ts },
          P[pd.partition],
          Number(m.offset),
          ts,
        ),
      );
    }
  }
  return out.length;
}

async function runs(): Promise<number> {
  const r = await decodeFetchV11(raw, true);
  const out: BrokerValue<KafkaPayload>[] = [];
  for (const pd of r.responses[0].partitions) {
    const b = new Batch("t", "0", pd);
    for (const run of b.messages as RecordRun[]) {
      while (!run.done) run.readInto(out, P[pd.partition], 5000);
    }
  }
  return out.length;
}

const WAYS: [string, () => Promise<number>][] = [
  ["kafkajs", () => records(kafkajsDecodeFetchV11)],
  ["exact", () => records(decodeFetchV11)],
  ["runs", runs],
];
const best = new Map<string, number>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, f] of WAYS) {
    const t = performance.now();
    for (let i = 0; i < 200; i++) {
      if (await f() !== perResponse) throw new Error(`${name}: wrong record count`);
    }
    const ns = (performance.now() - t) * 1e6 / (200 * perResponse);
    best.set(name, Math.min(best.get(name) ?? Infinity, ns));
  }
}
console.log(
  `\nDecoding a fetch response of ${perResponse} records x ${BYTES} B (${
    (raw.length / 1024).toFixed(0)
  } KiB) into BrokerValues, best of ${ROUNDS}, Deno ${Deno.version.deno}\n`,
);
console.log("| decoder | ns per record | vs kafkajs |\n|---|---:|---:|");
const kafkajs = best.get("kafkajs")!;
for (const [name] of WAYS) {
  const ns = best.get(name)!;
  console.log(`| ${name} | ${ns.toFixed(0)} | ${(ns / kafkajs).toFixed(2)}x |`);
}
