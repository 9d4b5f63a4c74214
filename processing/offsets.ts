/**
 * The processor's commit ledger (private to `processing/`, not exported from `mod.ts`): per
 * partition, the offsets the pipeline finished and not yet sent to the consumer, the offsets
 * staged (commits never go backwards), and the invalid messages whose dead-lettering is not
 * confirmed yet, below which nothing of their partition may be committed.
 *
 * An offset here is, as everywhere in Sluice, the next one to read: committing `n` says
 * that everything below `n` is done.
 *
 * @module
 */
import type { Partition } from "../types.ts";

/**
 * Dirty, staged and blocked offsets per partition, and the one rule joining them: what is
 * committable is the newest finished offset, clamped below the first unresolved invalid
 * message.
 *
 * @example Track offsets in flight
 * ```ts
 * import { CommitLedger } from "./offsets.ts";
 * import { Partition } from "../types.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const p = Partition.of("events", 0);
 * const ledger = new CommitLedger();
 * ledger.record(p, 10); // the pipeline finished everything below 10
 * ledger.block(p, 4); // offset 4 is invalid, its dead-lettering not confirmed yet
 * assertEquals(ledger.take(), new Map([[p, 4]])); // committable: below 4 only
 * ledger.unblock(p, 4); // dead-lettered
 * assertEquals(ledger.take(), new Map([[p, 10]]));
 * ```
 */
export class CommitLedger {
  /** Highest offset handed to `commit` per partition and not yet sent to the consumer. */
  readonly #dirty = new Map<Partition, number>();
  /** Highest offset staged per partition (commits never go backwards). */
  readonly #staged = new Map<Partition, number>();
  /** Invalid messages not yet resolved, in increasing order: commits stop at the first. */
  readonly #blocked = new Map<Partition, number[]>();

  /** Whether some finished offset was not taken for a commit yet. */
  get hasDirty(): boolean {
    return this.#dirty.size > 0;
  }

  /** The finished offset of `partition` not taken for a commit yet, if any. */
  dirty(partition: Partition): number | undefined {
    return this.#dirty.get(partition);
  }

  /** The dirty offsets, as `partition@offset` (for messages). */
  describeDirty(): string {
    return [...this.#dirty].map(([p, o]) => `${p}@${o}`).join(", ");
  }

  /** Records that the pipeline finished everything of `partition` below `offset`. */
  record(partition: Partition, offset: number): void {
    const prev = this.#dirty.get(partition) ?? this.#staged.get(partition);
    if (prev === undefined || offset > prev) this.#dirty.set(partition, offset);
  }

  /**
   * Takes the dirty offsets that may be committed now, clamped below unresolved invalid
   * messages, and stages them. A partition clamped stays dirty (with its newer offset)
   * until its block is lifted.
   */
  take(): Map<Partition, number> {
    const out = new Map<Partition, number>();
    for (const [p, o] of this.#dirty) {
      const limit = Math.min(o, this.#firstBlocked(p));
      const prev = this.#staged.get(p);
      if (prev === undefined || limit > prev) {
        out.set(p, limit);
        this.#staged.set(p, limit);
      }
      if (limit === o) this.#dirty.delete(p);
    }
    return out;
  }

  /**
   * Offsets the consumer did not commit (it resolves with what it did) become dirty again
   * (a partition already dirty holds a newer offset, which covers them), so the next commit
   * sends them: a broker restart or a rebalance costs a retry, not the commit. Returns
   * whether any offset was left uncommitted.
   */
  keepUncommitted(
    offsets: ReadonlyMap<Partition, number>,
    committed: ReadonlyMap<Partition, number>,
  ): boolean {
    let left = false;
    for (const [p, o] of offsets) {
      if ((committed.get(p) ?? -1) >= o) continue;
      left = true;
      if (this.#staged.get(p) === o) this.#staged.delete(p);
      if (!this.#dirty.has(p)) this.#dirty.set(p, o);
    }
    return left;
  }

  /** Blocks commits of `partition` at the invalid message `offset` until it is unblocked. */
  block(partition: Partition, offset: number): void {
    const list = this.#blocked.get(partition) ?? [];
    list.push(offset);
    list.sort((a, b) => a - b);
    this.#blocked.set(partition, list);
  }

  /**
   * Lifts one block of `partition` at `offset` (the message was dead-lettered, or dropped
   * and counted). Returns false when there was none.
   */
  unblock(partition: Partition, offset: number): boolean {
    const list = this.#blocked.get(partition);
    const i = list === undefined ? -1 : list.indexOf(offset);
    if (i < 0) return false;
    list!.splice(i, 1);
    if (list!.length === 0) this.#blocked.delete(partition);
    return true;
  }

  /**
   * Where `partition`'s finished work ends: the newest offset finished (dirty or staged),
   * or `start` (where the pipeline began) when none is newer, clamped below the first
   * unresolved invalid message. Everything below it is done; -1 when nothing is known.
   */
  finished(partition: Partition, start: number | undefined): number {
    const done = Math.max(
      start ?? -1,
      this.#dirty.get(partition) ?? -1,
      this.#staged.get(partition) ?? -1,
    );
    return Math.min(done, this.#firstBlocked(partition));
  }

  /** Drops everything known of `partition` (revoked: its next owner reads from the commit). */
  forget(partition: Partition): void {
    this.#dirty.delete(partition);
    this.#staged.delete(partition);
    this.#blocked.delete(partition);
  }

  #firstBlocked(partition: Partition): number {
    const blocked = this.#blocked.get(partition);
    return blocked !== undefined && blocked.length > 0 ? blocked[0] : Infinity;
  }
}
