/**
 * Incremental (cooperative) rebalancing, deterministically: a cooperative LocalBroker, a
 * ManualClock, and pipelines whose functions are held on gates.
 */
import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { ProcessingStrategy, ProcessingStrategyFactory } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import { type Message, Partition } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { tick } from "../_support/helpers.ts";

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => open = r);
  return { promise, open };
}

/** Payload = partition * 1000 + offset. */
function setup(options: {
  incremental: boolean;
  joinTimeoutMs?: number;
  perPartition?: number;
  /** The head's `ready` resolves at once even when `submit` rejects (a pipeline that lies). */
  lyingReady?: boolean;
}) {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<number>({ clock, rebalance: "cooperative", sessionTimeoutMs: 0 });
  const topic = broker.createTopic("t", 4);
  const n = options.perPartition ?? 10;
  for (let p = 0; p < 4; p++) {
    for (let i = 0; i < n; i++) broker.produce(Partition.of(topic, p), p * 1000 + i);
  }
  const gates = new Map<number, Gate>();
  const processed: number[] = [];
  const counts = {
    creates: 0,
    closes: 0,
    submits: 0,
    added: [] as string[][],
    removed: [] as string[][],
  };
  const factory: ProcessingStrategyFactory<number> = {
    incremental: options.incremental,
    createWithPartitions: (commit) => {
      const first = ++counts.creates === 1;
      const inner = new RunTaskAsync(
        async (m: Message<number>) => {
          // Gates hold messages in the first pipeline only.
          if (first) await gates.get(m.payload)?.promise;
          processed.push(m.payload);
          return m.payload;
        },
        new CommitOffsets(commit, { clock }),
        { clock, concurrency: 16, highWaterMark: 64 },
      );
      const head: ProcessingStrategy<number> = {
        submit: (m) => {
          counts.submits++;
          // A loop that spins on a lying `ready` never yields: stop it instead of hanging.
          if (options.lyingReady && counts.submits > 5_000) throw new Error("spinning");
          inner.submit(m);
        },
        poll: () => inner.poll(),
        close: () => {
          counts.closes++;
          inner.close();
        },
        join: (t) => inner.join(t),
        terminate: () => inner.terminate(),
        get ready() {
          return options.lyingReady ? Promise.resolve() : inner.ready;
        },
        addPartitions: (ps) => void counts.added.push([...ps.keys()].map(String)),
        removePartitions: (ps) => void counts.removed.push(ps.map(String)),
      };
      return head;
    },
  };
  const a = broker.getConsumer("g");
  const processor = new StreamProcessor<number>({
    consumer: a,
    topics: ["t"],
    factory,
    clock,
    pollTimeoutMs: 0,
    handleSignals: false,
    joinTimeoutMs: options.joinTimeoutMs ?? 10_000,
    commitPolicy: CommitPolicy.IMMEDIATE,
  });
  const p = (i: number) => Partition.of(topic, i);
  return { clock, broker, topic, gates, processed, counts, processor, a, p };
}

/** Runs iterations (advancing the clock 10 ms between them) until `done()`. */
async function runUntil(
  clock: ManualClock,
  processor: StreamProcessor<number>,
  done: () => boolean,
  what: string,
): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (done()) return;
    if (!await settle(clock, processor.runOnce())) throw new Error(`stuck before: ${what}`);
    await tick();
    await clock.advance(10);
  }
  throw new Error(`never reached: ${what}`);
}

/** Drives `running` (a runOnce in progress) by ticking and advancing the clock. */
async function settle(clock: ManualClock, running: Promise<void>, rounds = 50): Promise<boolean> {
  let done = false;
  running.then(() => done = true, () => done = true);
  for (let i = 0; i < rounds && !done; i++) {
    await tick();
    await clock.advance(10);
  }
  return done;
}

Deno.test("cooperative LocalBroker: a joining member takes only the partitions that move; the others stay", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock, rebalance: "cooperative", sessionTimeoutMs: 0 });
  broker.createTopic("t", 4);
  const events: string[] = [];
  const a = broker.getConsumer("g");
  a.subscribe(["t"], {
    onAssign: (ps) => void events.push(`a+${[...ps.keys()].join(",")}`),
    onRevoke: (ps) => void events.push(`a-${ps.join(",")}`),
  });
  await a.poll(0);
  assertEquals(a.assignment.length, 4);
  const b = broker.getConsumer("g");
  b.subscribe(["t"], {
    onAssign: (ps) => void events.push(`b+${[...ps.keys()].join(",")}`),
    onRevoke: (ps) => void events.push(`b-${ps.join(",")}`),
  });
  await b.poll(0);
  assertEquals(b.assignment, [], "nothing is given to b before a has released it");
  await a.poll(0);
  await b.poll(0);
  assertEquals(a.assignment.map(String), ["t/0", "t/1"]);
  assertEquals(b.assignment.map(String), ["t/2", "t/3"]);
  assertEquals(events, ["a+t/0,t/1,t/2,t/3", "a-t/2,t/3", "b+t/2,t/3"]);
  await b.close();
  await a.poll(0);
  assertEquals(a.assignment.map(String), ["t/0", "t/1", "t/2", "t/3"]);
  assertEquals(events.slice(3), ["b-t/2,t/3", "a+t/2,t/3"], "a gets only the added ones");
  await a.close();
});

Deno.test("incremental revoke: the revoked partitions' work is drained and committed before they are released; the kept partitions' pipeline never stops", async () => {
  const { clock, broker, gates, processed, counts, processor, a, p } = setup({ incremental: true });
  // p0's message 9 and p3's message 5 hang until opened. RunTaskAsync hands results on in
  // order (p0, p1, p2, p3 here), so nothing after p0's 9 is committed while it hangs.
  const held3 = gate();
  const held0 = gate();
  gates.set(3005, held3);
  gates.set(9, held0);
  await runUntil(
    clock,
    processor,
    () => processed.length === 38 && broker.committed("g").get(p(0)) === 9,
    "all but the held processed",
  );
  assertEquals(broker.committed("g").get(p(3)), undefined);

  const b = broker.getConsumer("g");
  b.subscribe(["t"]);
  await b.poll(0);
  // The next iteration polls; the poll revokes p2, p3 (a keeps p0, p1) and waits for p3.
  const running = processor.runOnce();
  assertEquals(await settle(clock, running, 20), false, "the revoke waits for p3's held message");
  assertEquals(counts.removed, [["t/2", "t/3"]]);
  assertEquals(b.assignment, [], "b gets nothing while a drains");
  // The kept partition goes on meanwhile: its held message finishes and is committed.
  held0.open();
  for (let i = 0; i < 5 && broker.committed("g").get(p(0)) !== 10; i++) {
    await tick();
    await clock.advance(10);
  }
  assertEquals(broker.committed("g").get(p(0)), 10, "p0 committed during the drain");
  assertEquals(broker.committed("g").get(p(1)), 10, "p1 too");
  assertEquals(broker.committed("g").get(p(3)), 5, "p3 up to its held message");
  assertEquals(b.assignment, [], "b still gets nothing");
  held3.open();
  assert(await settle(clock, running), "the revoke completes once p3's work is done");
  assertEquals(broker.committed("g").get(p(3)), 10, "p3 committed to its end before release");
  await b.poll(0);
  assertEquals(b.assignment.map(String), ["t/2", "t/3"]);
  assertEquals(a.assignment.map(String), ["t/0", "t/1"]);

  // More messages for the kept partition: the same pipeline processes them.
  broker.produce(p(0), 10);
  await runUntil(clock, processor, () => processed.includes(10), "p0's new message");
  assertEquals(counts.creates, 1, "one pipeline all along");
  assertEquals(counts.closes, 0, "never closed");

  // b leaves: a gets p2, p3 back, added to the running pipeline, from the committed offsets.
  broker.produce(p(2), 2010);
  await b.close();
  await runUntil(clock, processor, () => processed.includes(2010), "p2's new message");
  assertEquals(counts.creates, 1);
  assertEquals(counts.added, [["t/2", "t/3"]]);
  assertEquals(processed.filter((x) => x === 2000), [2000], "p2 not read again from 0");
  processor.signalShutdown();
  await processor.run();
  assertEquals(counts.closes, 1, "closed once, at shutdown");
});

Deno.test("incremental revoke that does not finish within joinTimeoutMs: falls back to recreating the pipeline; nothing is committed past unfinished work", async () => {
  const { clock, broker, gates, processed, counts, processor, p } = setup({
    incremental: true,
    joinTimeoutMs: 200,
  });
  gates.set(3005, gate()); // never opened
  gates.set(9, gate()); // never opened: p0 (kept) also has unfinished work
  await runUntil(
    clock,
    processor,
    () => processed.length === 38 && broker.committed("g").get(p(0)) === 9,
    "all but the held processed",
  );
  const b = broker.getConsumer("g");
  b.subscribe(["t"]);
  await b.poll(0);
  const running = processor.runOnce();
  assert(await settle(clock, running, 100), "the revoke gives up after joinTimeoutMs");
  assertEquals(
    broker.committed("g").get(p(3)),
    undefined,
    "p3 not committed past its held message",
  );
  const p0 = broker.committed("g").get(p(0))!;
  assert(p0 === 9 || processed.includes(9), "p0 not committed past its held message");
  assertEquals(counts.creates, 2, "fell back to a new pipeline");
  await b.poll(0);
  assertEquals(b.assignment.map(String), ["t/2", "t/3"]);
  // The kept partition is read again from its first unfinished message.
  await runUntil(
    clock,
    processor,
    () => broker.committed("g").get(p(0)) === 10 && broker.committed("g").get(p(1)) === 10,
    "p0 and p1 read again from their first uncommitted message by the new pipeline",
  );
});

Deno.test("a factory without `incremental` is recreated on a cooperative revoke (Arroyo's contract)", async () => {
  const { clock, broker, processed, counts, processor, p } = setup({ incremental: false });
  await runUntil(clock, processor, () => processed.length === 40, "all processed");
  const b = broker.getConsumer("g");
  b.subscribe(["t"]);
  await b.poll(0);
  await runUntil(clock, processor, () => processor.stats.revocations === 1, "the revoke");
  await b.poll(0);
  assertEquals(b.assignment.map(String), ["t/2", "t/3"]);
  assertEquals(counts.creates, 2);
  assertEquals(counts.closes, 1);
  assertEquals(broker.committed("g").get(p(3)), 10);
});

Deno.test("incremental revoke while a kept partition's messages are carried under backpressure: nothing of it is skipped or committed past", async () => {
  const { clock, broker, gates, processed, processor, p } = setup({
    incremental: true,
    perPartition: 100,
  });
  // Hold p0's message 20: the pipeline (16 in flight, 64 queued) fills up behind it.
  const held = gate();
  gates.set(20, held);
  await runUntil(clock, processor, () => processor.carriedCount > 0, "backpressure");
  const b = broker.getConsumer("g");
  b.subscribe(["t"]);
  await b.poll(0);
  const running = processor.runOnce();
  for (let i = 0; i < 30; i++) {
    await tick();
    await clock.advance(10);
  }
  held.open();
  assert(await settle(clock, running, 200), "the revoke completes");
  await runUntil(
    clock,
    processor,
    () => broker.committed("g").get(p(0)) === 100 && broker.committed("g").get(p(1)) === 100,
    "kept partitions committed to their end",
  );
  for (const part of [0, 1]) {
    const seen = processed.filter((x) => Math.floor(x / 1000) === part).sort((x, y) => x - y);
    const unique = [...new Set(seen)];
    assertEquals(unique.length, 100, `every message of p${part} processed`);
  }
  // b reads p2, p3 from what a committed: nothing a did not finish was committed.
  for (const part of [2, 3]) {
    const c = broker.committed("g").get(p(part)) ?? 0;
    const done = processed.filter((x) => Math.floor(x / 1000) === part).map((x) => x % 1000);
    for (let o = 0; o < c; o++) assert(done.includes(o), `p${part}@${o} committed unprocessed`);
  }
});

Deno.test("incremental revoke draining under backpressure does not spin on a `ready` that resolves while nothing can be submitted", async () => {
  const { clock, broker, gates, counts, processor, p } = setup({
    incremental: true,
    perPartition: 10,
    lyingReady: true,
  });
  // p2's message 5 is held: p2's accepted work cannot finish, and the pipeline (in order)
  // fills up behind it once more messages of the kept partitions p0 and p1 come.
  const held = gate();
  gates.set(2005, held);
  await runUntil(clock, processor, () => processor.stats.messagesSubmitted === 40, "first 40");
  for (let i = 10; i < 110; i++) {
    broker.produce(p(0), i);
    broker.produce(p(1), 1000 + i);
  }
  // Paused: the backpressured loop polls the consumer (keep-alive), so the revoke comes while
  // messages of the kept partitions are carried, and the drain retries them.
  await runUntil(clock, processor, () => processor.paused, "paused under backpressure");
  const b = broker.getConsumer("g");
  b.subscribe(["t"]);
  await b.poll(0);
  const before = counts.submits;
  let failure: unknown;
  const running = processor.runOnce().catch((e) => void (failure = e));
  for (let i = 0; i < 30; i++) {
    await tick();
    await clock.advance(10);
  }
  assertEquals(processor.stats.revocations, 1, "the revoke is draining");
  held.open();
  assert(await settle(clock, running, 200), "the revoke completes");
  assertEquals(failure, undefined);
  // 300 ms of manual time while the revoked work waits: a retry per backoff (1..20 ms), not
  // one per microtask.
  const retries = counts.submits - before;
  assert(retries < 200, `${retries} submit attempts while draining: the loop spins`);
  assertEquals(broker.committed("g").get(p(2)), 10, "the revoked work committed");
});
