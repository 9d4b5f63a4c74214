/** Committer alone: one commit in flight, what did not commit goes back to the ledger, failures kept. */
import { assertEquals, assertRejects } from "@std/assert";
import type { Consumer } from "../../backends/abstract.ts";
import { ManualClock } from "../../clock.ts";
import { Committer } from "../../processing/_committer.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { CommitLedger } from "../../processing/offsets.ts";
import { Partition } from "../../types.ts";
import { tick } from "../_support/helpers.ts";

const P0 = Partition.of("committer", 0);

/** A consumer whose commits settle when the test says, with what it says was committed. */
function fakeConsumer() {
  const staged: Map<Partition, number>[] = [];
  const pending: Array<{
    resolve: (committed: Map<Partition, number>) => void;
    reject: (e: unknown) => void;
  }> = [];
  const consumer = {
    stageOffsets: (offsets: Map<Partition, number>) => void staged.push(new Map(offsets)),
    commitOffsets: () =>
      new Promise<Map<Partition, number>>((resolve, reject) => pending.push({ resolve, reject })),
  } as unknown as Consumer<unknown>;
  return { consumer, staged, pending };
}

function setup() {
  const { consumer, staged, pending } = fakeConsumer();
  const ledger = new CommitLedger();
  const stats = { commits: 0, commitsIncomplete: 0 };
  const committer = new Committer({
    consumer,
    clock: new ManualClock(),
    ledger,
    policy: CommitPolicy.IMMEDIATE.createState(0),
    stats,
    meter: undefined,
  });
  return { committer, ledger, stats, staged, pending };
}

Deno.test("Committer: one commit in flight; what finishes meanwhile goes with the next one", async () => {
  const { committer, ledger, stats, staged, pending } = setup();
  committer.start(); // nothing dirty: nothing sent
  assertEquals(stats.commits, 0);
  ledger.record(P0, 3);
  committer.start();
  ledger.record(P0, 5);
  committer.start(); // waits for the first
  assertEquals(staged, [new Map([[P0, 3]])]);
  pending.shift()!.resolve(new Map([[P0, 3]]));
  await tick();
  assertEquals(staged, [new Map([[P0, 3]]), new Map([[P0, 5]])]);
  const flushed = committer.flush();
  pending.shift()!.resolve(new Map([[P0, 5]]));
  await flushed;
  assertEquals(stats, { commits: 2, commitsIncomplete: 0 });
});

Deno.test("Committer: offsets the consumer did not commit are sent again with the next commit", async () => {
  const { committer, ledger, stats, staged, pending } = setup();
  ledger.record(P0, 4);
  committer.start();
  pending.shift()!.resolve(new Map()); // a rebalance, say
  await tick();
  assertEquals(stats.commitsIncomplete, 1);
  const flushed = committer.flush();
  pending.shift()!.resolve(new Map([[P0, 4]]));
  await flushed;
  assertEquals(staged, [new Map([[P0, 4]]), new Map([[P0, 4]])]);
});

Deno.test("Committer: a failed commit is kept and thrown by flush; stop() sends nothing more", async () => {
  const { committer, ledger, pending, stats } = setup();
  ledger.record(P0, 1);
  committer.start();
  pending.shift()!.reject(new Error("broker gone"));
  await tick();
  assertEquals((committer.error as Error).message, "broker gone");
  await assertRejects(() => committer.flush(), Error, "broker gone");
  committer.stop();
  ledger.record(P0, 2);
  committer.start();
  assertEquals(stats.commits, 1);
});
