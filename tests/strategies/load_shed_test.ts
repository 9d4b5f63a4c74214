import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { assert, assertEquals, assertThrows } from "@std/assert";
import { macrotask } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { LoadShed, type ShedPolicy } from "../../strategies/load_shed.ts";
import { Noop } from "../../strategies/noop.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { byteLength } from "../../strategies/size.ts";
import type { Message, Partition } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, Gate, P0, P1, tick, waitFor } from "../_support/helpers.ts";

for (const policy of ["drop-newest", "drop-oldest"] as const) {
  strategyContract<number>({
    name: `LoadShed(${policy})`,
    make: ({ next, highWaterMark, clock }) =>
      new LoadShed(next, { capacity: 100, policy, highWaterMark, clock }),
  });
}

Deno.test("LoadShed: shedding is never a default: capacity and policy are required", () => {
  // @ts-expect-error policy is required
  assertThrows(() => new LoadShed(new Noop(), { capacity: 10 }), ConfigurationError, "policy");
  assertThrows(
    () => new LoadShed(new Noop(), { capacity: 0, policy: "drop-newest" }),
    ConfigurationError,
    "capacity",
  );
});

function pipeline(policy: ShedPolicy, capacity: number, size?: (m: Message<unknown>) => number) {
  const recorder = new CommitRecorder();
  const gate = new Gate<string>(false, new CommitOffsets(recorder.commit));
  const drops: Array<[string, string]> = [];
  const step = new LoadShed<string>(gate, {
    capacity,
    policy,
    size,
    highWaterMark: 1000,
    onDrop: (m, reason) => drops.push([m.payload, reason]),
  });
  return { recorder, gate, step, drops };
}

Deno.test("LoadShed(drop-newest): keeps the backlog, drops arrivals, commits the dropped offsets after it", async () => {
  const { recorder, gate, step, drops } = pipeline("drop-newest", 5);
  await tick();
  for (let i = 0; i < 20; i++) step.submit(brokerMessage(`m${i}`, i));
  await tick();
  assertEquals(step.dropped, { newest: 15, oldest: 0 });
  assertEquals(drops.length, 15);
  assert(drops.every(([, r]) => r === "newest"));
  assertEquals(drops.map(([p]) => p), Array.from({ length: 15 }, (_, i) => `m${i + 5}`));
  assertEquals(step.buffered, 5);
  assertEquals(recorder.latest.size, 0, "nothing is committed while the kept messages wait");
  gate.setOpen(true);
  step.poll();
  step.close();
  await step.join(1000);
  const delivered = gate.received.filter((m) => !m.filtered).map((m) => m.payload);
  assertEquals(delivered, ["m0", "m1", "m2", "m3", "m4"]);
  assertEquals(recorder.latest.get(P0), 20, "dropped messages are handled: committed");
  assertEquals(step.forwarded, 5);
});

Deno.test("LoadShed(drop-oldest): keeps the freshest, commits the dropped prefix as it goes", async () => {
  const { recorder, gate, step } = pipeline("drop-oldest", 5);
  await tick();
  for (let i = 0; i < 20; i++) step.submit(brokerMessage(`m${i}`, i));
  await tick();
  assertEquals(step.dropped, { newest: 0, oldest: 15 });
  gate.setOpen(true);
  step.poll();
  step.close();
  await step.join(1000);
  const delivered = gate.received.filter((m) => !m.filtered).map((m) => m.payload);
  assertEquals(delivered, ["m15", "m16", "m17", "m18", "m19"]);
  // The first thing forwarded is the marker for m0..m14: committing 15 is safe (m15 is next).
  assert(gate.received[0].filtered);
  assertEquals(gate.received[0].committable.get(P0), 15);
  assertEquals(recorder.latest.get(P0), 20);
});

Deno.test("LoadShed: capacity in bytes with size: byteLength", async () => {
  const { gate, step } = pipeline("drop-newest", 100, byteLength);
  await tick();
  for (let i = 0; i < 10; i++) step.submit(brokerMessage("x".repeat(30), i));
  await tick();
  assertEquals(step.buffered, 90, "three 30-byte payloads fit in 100 bytes");
  assertEquals(step.droppedTotal, 7);
  gate.setOpen(true);
  step.close();
  await step.join(1000);
});

/** A small seeded PRNG (mulberry32) so the randomized tests are reproducible. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const policy of ["drop-newest", "drop-oldest"] as const) {
  Deno.test(`LoadShed(${policy}): under an overloaded consumer, commits never pass an undelivered message, and every message is delivered or counted (200 short + 4 long seeded runs)`, async () => {
    let totalDropped = 0;
    for (let run = 0; run < 204; run++) {
      const random = rng(1000 + run);
      const handled = new Map<Partition, Set<number>>([[P0, new Set()], [P1, new Set()]]);
      const mark = (m: Message<string>) => {
        const v = m.value as { partition: Partition; offset: number };
        handled.get(v.partition)!.add(v.offset);
      };
      let violations = 0;
      const verified = new Map<Partition, number>();
      const commit = (offsets: ReadonlyMap<Partition, number>) => {
        for (const [p, o] of offsets) {
          for (let i = verified.get(p) ?? 0; i < o; i++) {
            if (!handled.get(p)!.has(i)) violations++;
          }
          if ((verified.get(p) ?? 0) < o) verified.set(p, o);
        }
      };
      const commitStep = new CommitOffsets(commit);
      const delivered: Message<string>[] = [];
      // The next step takes a random budget of messages per round (0-2): mostly overloaded.
      let budget = 0;
      const next: ProcessingStrategy<string> = {
        submit: (m: Message<string>) => {
          if (budget <= 0) throw new MessageRejected();
          budget--;
          if (!m.filtered) {
            delivered.push(m);
            mark(m);
          }
          commitStep.submit(m);
        },
        poll: () => commitStep.poll(),
        close: () => commitStep.close(),
        join: (t?: number) => commitStep.join(t),
        terminate: () => commitStep.terminate(),
        ready: new Promise<void>(() => {}), // room comes back at the next poll
      };
      const step = new LoadShed<string>(next, {
        capacity: 1 + Math.floor(random() * 8),
        policy,
        highWaterMark: 64,
        onDrop: mark,
      });
      await macrotask(); // let the step's stream start
      const offsets = [0, 0];
      // The last runs are long: thousands of entries pass through the buffer (compaction).
      const total = run < 200 ? 60 : 6000;
      while (offsets[0] + offsets[1] < total) {
        const burst = Math.floor(random() * 6);
        for (let k = 0; k < burst && offsets[0] + offsets[1] < total; k++) {
          const pi = random() < 0.5 ? 0 : 1;
          const p = pi === 0 ? P0 : P1;
          const o = offsets[pi]++;
          step.submit(brokerMessage(`p${pi}-${o}`, o, p));
        }
        budget = Math.floor(random() * 3);
        step.poll();
        await Promise.resolve();
        await Promise.resolve();
      }
      budget = Infinity;
      step.poll(); // wakes the drain, which waits for room on the next poll
      step.close();
      await step.join(1000);
      assertEquals(violations, 0, `seed ${run}: a commit passed an unhandled message`);
      const perPartition = [P0, P1].map((p) =>
        delivered.filter((m) => (m.value as { partition: Partition }).partition === p)
          .map((m) => (m.value as { offset: number }).offset)
      );
      for (const offsets of perPartition) {
        assertEquals(offsets, [...offsets].sort((a, b) => a - b), `seed ${run}: order kept`);
      }
      assertEquals(delivered.length + step.droppedTotal, total, `seed ${run}: all accounted for`);
      assertEquals(handled.get(P0)!.size + handled.get(P1)!.size, total);
      totalDropped += step.droppedTotal;
    }
    assert(totalDropped > 1000, `the runs do shed (${totalDropped} drops)`);
  });
}

/** An SDK reader collected on demand. */
class InMemoryReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("LoadShed: drops are exported as sluice.step.dropped_messages with their reason", async () => {
  const reader = new InMemoryReader();
  const provider = new MeterProvider({ readers: [reader] });
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic("shed-metrics", 1);
  const total = 500;
  for (let i = 0; i < total; i++) broker.produce(topic, i);
  let shed: LoadShed<number> | undefined;
  let release: (() => void) | undefined;
  const held = new Promise<void>((r) => release = r);
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("shed-metrics"),
    topics: [topic],
    meterProvider: provider,
    commitPolicy: CommitPolicy.IMMEDIATE,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) => {
        // A sink that holds everything until released: the shedder must drop.
        const sink = new RunTask((m: Message<number>) => m.payload, new CommitOffsets(commit), {
          name: "sink",
          highWaterMark: 10,
        });
        const gate = new Gate<number>(false, sink);
        held.then(() => gate.setOpen(true));
        return shed = new LoadShed(gate, { name: "shed", capacity: 20, policy: "drop-newest" });
      },
    },
  });
  const running = processor.run();
  await waitFor(() => (shed?.droppedTotal ?? 0) >= total - 20, "the shedder to drop the rest");
  release!();
  const p = broker.partitions(topic)[0];
  await waitFor(() => broker.committed("shed-metrics").get(p) === total, "everything committed");
  processor.signalShutdown();
  await running;
  const { resourceMetrics, errors } = await reader.collect();
  assertEquals(errors, []);
  const dropped = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === "sluice.step.dropped_messages");
  assert(dropped !== undefined, "sluice.step.dropped_messages is exported");
  const point = dropped.dataPoints.find((d) =>
    d.attributes.step === "shed" && d.attributes.reason === "shed_newest"
  );
  assertEquals(point?.value, shed!.dropped.newest);
  assertEquals(shed!.dropped.newest, total - 20, "all but the 20 buffered were dropped");
  assertEquals(processor.stats.pauses, 0, "shedding never paused the consumer");
});
