/**
 * The checks a consumer makes before it acts on its assignment (private to the backends):
 * it is still open, the partitions it is asked to pause, resume or seek are assigned to it,
 * and seek offsets are offsets. One wording for every backend.
 *
 * @module
 */
import { ClosedError, ConsumerError } from "../errors.ts";
import type { Partition } from "../types.ts";

/**
 * Throws a {@link ClosedError} when `closed`: `what` (e.g. `KafkaConsumer of group "g"`)
 * is closed.
 */
export function checkOpen(closed: boolean, what: string): void {
  if (closed) throw new ClosedError(`${what} is closed; create a new one`);
}

/**
 * Throws a {@link ConsumerError} naming the first of `partitions` that is not `assigned` to
 * `member` (its member id, empty before it joined), so it cannot be `what` (paused...).
 */
export function checkAssigned(
  partitions: Iterable<Partition>,
  assigned: Iterable<Partition>,
  what: string,
  member: string,
): void {
  const held = assigned instanceof Set ? assigned as ReadonlySet<Partition> : new Set(assigned);
  for (const p of partitions) {
    if (!held.has(p)) {
      throw new ConsumerError(
        `cannot ${what} ${p}: it is not assigned to ${member || "this member"} (assigned: ${
          [...held].map(String).join(", ") || "none"
        })`,
      );
    }
  }
}

/** Throws a {@link ConsumerError} for a seek to an offset that is not an integer >= 0. */
export function checkSeekOffsets(offsets: ReadonlyMap<Partition, number>): void {
  for (const [p, o] of offsets) {
    if (!Number.isInteger(o) || o < 0) {
      throw new ConsumerError(`cannot seek ${p} to ${o}: offsets are integers >= 0`);
    }
  }
}
