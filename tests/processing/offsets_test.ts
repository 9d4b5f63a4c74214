/** The commit ledger alone: record, take (clamped below blocks), keep what did not commit, forget. */
import { assert, assertEquals } from "@std/assert";
import { CommitLedger } from "../../processing/offsets.ts";
import { Partition } from "../../types.ts";

const P0 = Partition.of("ledger", 0);
const P1 = Partition.of("ledger", 1);

Deno.test("CommitLedger: record keeps the highest offset; take stages it once", () => {
  const ledger = new CommitLedger();
  assertEquals(ledger.hasDirty, false);
  ledger.record(P0, 5);
  ledger.record(P0, 3); // older: ignored
  ledger.record(P1, 2);
  assertEquals(ledger.dirty(P0), 5);
  assertEquals(ledger.describeDirty(), "ledger/0@5, ledger/1@2");
  assertEquals(ledger.take(), new Map([[P0, 5], [P1, 2]]));
  assertEquals(ledger.hasDirty, false);
  assertEquals(ledger.take(), new Map(), "nothing new: nothing to take");
  ledger.record(P0, 5); // not above what is staged: commits never go backwards
  ledger.record(P0, 4);
  assertEquals(ledger.hasDirty, false);
  ledger.record(P0, 6);
  assertEquals(ledger.take(), new Map([[P0, 6]]));
});

Deno.test("CommitLedger: take is clamped below the first unresolved invalid message; the rest waits for unblock", () => {
  const ledger = new CommitLedger();
  ledger.block(P0, 7);
  ledger.block(P0, 3); // blocks are kept in order, whatever the order they come in
  ledger.record(P0, 10);
  ledger.record(P1, 4);
  assertEquals(ledger.take(), new Map([[P0, 3], [P1, 4]]));
  assertEquals(ledger.dirty(P0), 10, "the clamped partition stays dirty");
  assertEquals(ledger.take(), new Map(), "3 is staged already");
  assertEquals(ledger.unblock(P0, 3), true);
  assertEquals(ledger.take(), new Map([[P0, 7]]));
  assertEquals(ledger.unblock(P0, 3), false, "no such block any more");
  assertEquals(ledger.unblock(P1, 1), false);
  assertEquals(ledger.unblock(P0, 7), true);
  assertEquals(ledger.take(), new Map([[P0, 10]]));
  assertEquals(ledger.hasDirty, false);
});

Deno.test("CommitLedger: an offset reported invalid twice blocks until both are resolved", () => {
  const ledger = new CommitLedger();
  ledger.block(P0, 2);
  ledger.block(P0, 2);
  ledger.record(P0, 5);
  assertEquals(ledger.take(), new Map([[P0, 2]]));
  ledger.unblock(P0, 2);
  assertEquals(ledger.take(), new Map());
  ledger.unblock(P0, 2);
  assertEquals(ledger.take(), new Map([[P0, 5]]));
});

Deno.test("CommitLedger: what the consumer did not commit becomes dirty again; a newer dirty offset covers it", () => {
  const ledger = new CommitLedger();
  ledger.record(P0, 5);
  ledger.record(P1, 8);
  const sent = ledger.take();
  // P0 committed, P1 not (the broker restarted, say); meanwhile P0 moved on.
  ledger.record(P0, 9);
  assertEquals(ledger.keepUncommitted(sent, new Map([[P0, 5]])), true);
  assertEquals(ledger.dirty(P1), 8, "retried with the next commit");
  assertEquals(ledger.take(), new Map([[P0, 9], [P1, 8]]));
  // Nothing committed at all, but a newer offset is dirty already: it covers the old one.
  ledger.record(P0, 12);
  assertEquals(ledger.keepUncommitted(new Map([[P0, 9]]), new Map()), true);
  assertEquals(ledger.dirty(P0), 12);
  assertEquals(ledger.keepUncommitted(new Map([[P1, 8]]), new Map([[P1, 8]])), false);
});

Deno.test("CommitLedger: an uncommitted offset can be staged again (it left the staged map)", () => {
  const ledger = new CommitLedger();
  ledger.record(P0, 5);
  const sent = ledger.take();
  ledger.keepUncommitted(sent, new Map());
  assertEquals(ledger.take(), new Map([[P0, 5]]), "sent again, not skipped as already staged");
});

Deno.test("CommitLedger: finished is the newest of start, dirty and staged, clamped below a block", () => {
  const ledger = new CommitLedger();
  assertEquals(ledger.finished(P0, undefined), -1, "nothing known");
  assertEquals(ledger.finished(P0, 4), 4, "the pipeline began at 4: everything below is done");
  ledger.record(P0, 6);
  assertEquals(ledger.finished(P0, 4), 6);
  ledger.take();
  assertEquals(ledger.finished(P0, 4), 6, "staged counts too");
  ledger.record(P0, 9);
  ledger.block(P0, 7);
  assertEquals(ledger.finished(P0, 4), 7, "not past the invalid message");
  ledger.unblock(P0, 7);
  assertEquals(ledger.finished(P0, 4), 9);
  assertEquals(ledger.finished(P0, 20), 20);
});

Deno.test("CommitLedger: forget drops dirty, staged and blocked offsets of a partition", () => {
  const ledger = new CommitLedger();
  ledger.record(P0, 5);
  ledger.take();
  ledger.record(P0, 8);
  ledger.block(P0, 6);
  ledger.record(P1, 3);
  ledger.forget(P0);
  assertEquals(ledger.dirty(P0), undefined);
  assertEquals(ledger.finished(P0, undefined), -1);
  ledger.record(P0, 2); // a new owner's lower offset is taken, not refused as older
  assertEquals(ledger.take(), new Map([[P0, 2], [P1, 3]]));
  assert(!ledger.hasDirty);
});
