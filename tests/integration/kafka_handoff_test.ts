/**
 * Kafka backend against a real broker: the one-partition hand-off of issue 13. Member A
 * holds most of a 5 000-message poll back (its step rejects above 2 048 processed); member
 * B joins while A holds, stays a few seconds and leaves. A must resume at the committed
 * offset: nothing committed past an unprocessed offset, every message processed at least
 * once. Judged from outside: what each member recorded as processed (before its offset
 * could be committed) and the committed offset the broker reports, sampled meanwhile.
 *
 * Before the fix A paused (a kafkajs seek to 5 000, the position handed out) while the
 * revoke was pending; kafkajs kept that seek into the next generation and fetched from
 * 5 000 while Sluice's position was 2 048, and A committed across 2 048..4 999.
 */
import { assert, assertEquals } from "@std/assert";
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import type { Message } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

/** A step that processes (records) `allowance` messages, then rejects until given more. */
class Gate implements ProcessingStrategy<KafkaPayload> {
  #ready: Promise<void> = new Promise(() => {});
  constructor(
    readonly member: Member,
    readonly next: ProcessingStrategy<KafkaPayload>,
  ) {}
  get ready(): Promise<void> {
    return this.member.allowance > 0 ? Promise.resolve() : this.#ready;
  }
  submit(m: Message<KafkaPayload>): void {
    if (this.member.allowance <= 0) throw new MessageRejected();
    this.member.allowance--;
    for (const o of m.committable.values()) this.member.processed.push(o - 1);
    this.next.submit(m);
  }
  poll(): void {
    this.next.poll();
  }
  close(): void {
    this.next.close();
  }
  join(timeoutMs?: number): Promise<void> {
    return this.next.join(timeoutMs);
  }
  terminate(): void {
    this.next.terminate();
  }
}

interface Member {
  allowance: number;
  processed: number[];
  consumer: KafkaConsumer;
  processor: StreamProcessor<KafkaPayload>;
  running: Promise<void>;
}

function member(
  brokers: string,
  group: string,
  topic: string,
  clientId: string,
  allowance: number,
): Member {
  const consumer = new KafkaConsumer({
    brokers,
    group,
    clientId,
    ...FAST,
    // A few record batches per fetch: a second fetch round is queued (its handler holding
    // kafkajs) while the first is handed out.
    maxBytesPerPartition: 64 * 1024,
  });
  const m = { allowance, processed: [] as number[], consumer } as Member;
  m.processor = new StreamProcessor<KafkaPayload>({
    consumer,
    topics: [topic],
    commitPolicy: new CommitPolicy({ intervalMs: 200 }),
    // Long enough that, without a prompt look at the pending rebalance, the pause lands
    // while the revoke waits (the ordering the issue describes).
    pauseAfterMs: 3000,
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new Gate(m, new CommitOffsets(commit)) },
  });
  m.running = m.processor.run();
  return m;
}

/** Length of the prefix 0, 1, 2, ... of `offsets` (as a set). */
function contiguous(offsets: Set<number>): number {
  let n = 0;
  while (offsets.has(n)) n++;
  return n;
}

kafkaTest(
  "kafka: a member joining and leaving while A holds back most of a poll: A resumes at the commit, nothing skipped",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-handoff");
    const group = unique("g");
    const N = 20_000;
    await createTopic(kafka, topic, 1);
    const members: Member[] = [];
    let sampling = true;
    const violations: string[] = [];
    try {
      await produceNumbers(kafka, topic, N);
      const ends = await endOffsets(kafka, topic);
      // Member ids start with the client id: "z-a" sorts after "a-b", so the range
      // assigner gives the partition to B while both are members.
      const a = member(brokers, group, topic, "z-a", 2048);
      members.push(a);
      await eventually(() => a.allowance === 0, "A processed 2048 and holds back", 30_000);
      const processed = () => new Set(members.flatMap((m) => m.processed));
      // The broker's committed offset, sampled: never past what was processed.
      const sampler = (async () => {
        while (sampling) {
          const c = (await committedOffsets(kafka, group, topic)).get(0) ?? -1;
          // Read after the commit was: whatever it covered had been recorded before it.
          const before = contiguous(processed());
          if (c > before) violations.push(`committed ${c} with only 0..${before - 1} processed`);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const b = member(brokers, group, topic, "a-b", 0);
      members.push(b);
      await eventually(
        () => b.consumer.assignment.length === 1 && a.consumer.assignment.length === 0,
        "the partition at B",
        30_000,
      );
      // B holds it a few seconds, processing a little, then leaves.
      b.allowance = 100;
      await eventually(() => b.allowance === 0, "B processed 100", 30_000);
      await new Promise((r) => setTimeout(r, 2000));
      b.processor.signalShutdown();
      await b.running;
      await eventually(() => a.consumer.assignment.length === 1, "the partition back at A", 30_000);
      a.allowance = Infinity;
      await eventually(
        async () => (await committedOffsets(kafka, group, topic)).get(0) === ends.get(0),
        "everything committed",
        60_000,
        200,
        () => `processed 0..${contiguous(processed()) - 1} of ${N}`,
      );
      sampling = false;
      await sampler;
      const all = processed();
      const missing: number[] = [];
      for (let i = 0; i < N; i++) if (!all.has(i)) missing.push(i);
      const count = members.reduce((s, m) => s + m.processed.length, 0);
      console.log(
        `hand-off: produced ${N}, processed ${count} (${all.size} distinct), duplicated ${
          count - all.size
        }, lost ${missing.length}; A ${JSON.stringify(a.consumer.stats)}`,
      );
      assertEquals(
        missing.length,
        0,
        `never processed: ${missing.length} (from ${missing[0]} to ${missing.at(-1)})`,
      );
      assertEquals(violations, [], "committed offsets never ahead of the processed prefix");
      assert(a.consumer.stats.joins >= 3, "A joined, lost the partition to B, got it back");
    } finally {
      sampling = false;
      for (const m of members) m.processor.signalShutdown();
      await Promise.allSettled(members.map((m) => m.running));
      await deleteTopics(kafka, [topic]);
    }
  },
);
