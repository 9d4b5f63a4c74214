/**
 * A scripted `Consumer` for tests: partitions are arrays the test appends to, and the test
 * decides when partitions are assigned or revoked (incrementally, as a cooperative
 * rebalance does), which the LocalBroker (eager: it revokes everything) cannot do.
 */
import type { AssignmentCallbacks, Consumer } from "../../backends/abstract.ts";
import { BrokerValue, type Committable, Partition, type Topic } from "../../types.ts";

export class ScriptedConsumer<T> implements Consumer<T> {
  readonly memberId = "scripted";
  closed = false;
  /** Every message of each partition, by offset. */
  readonly logs = new Map<Partition, T[]>();
  /** Committed offsets, as the broker would keep them. */
  readonly committed = new Map<Partition, number>();
  /** Called after each commit with what was committed. */
  onCommit: (offsets: Map<Partition, number>) => void = () => {};
  /** Every seek, in order. */
  readonly seeks: Array<Map<Partition, number>> = [];
  #callbacks: AssignmentCallbacks = {};
  #positions = new Map<Partition, number>();
  #paused = new Set<Partition>();
  #staged = new Map<Partition, number>();
  #script: Array<() => Promise<void>> = [];

  constructor(readonly topic: string, partitions: number, readonly maxPoll = 100) {
    for (let i = 0; i < partitions; i++) this.logs.set(Partition.of(topic, i), []);
  }

  partition(i: number): Partition {
    return Partition.of(this.topic, i);
  }

  produce(i: number, payload: T): void {
    this.logs.get(this.partition(i))!.push(payload);
  }

  /** On the next poll: assign these partitions (added to the current assignment). */
  assign(...indexes: number[]): void {
    this.#script.push(async () => {
      const added = new Map<Partition, number>();
      for (const i of indexes) {
        const p = this.partition(i);
        added.set(p, this.committed.get(p) ?? 0);
        this.#positions.set(p, added.get(p)!);
      }
      await this.#callbacks.onAssign?.(added);
    });
  }

  /** On the next poll: revoke these partitions only; the others stay assigned. */
  revoke(...indexes: number[]): void {
    this.#script.push(async () => {
      const parts = indexes.map((i) => this.partition(i));
      await this.#callbacks.onRevoke?.(parts);
      for (const p of parts) {
        this.#positions.delete(p);
        this.#paused.delete(p);
        this.#staged.delete(p);
      }
    });
  }

  subscribe(_topics: readonly (Topic | string)[], callbacks: AssignmentCallbacks = {}): void {
    this.#callbacks = callbacks;
  }
  unsubscribe(): void {}
  async poll(): Promise<BrokerValue<T>[]> {
    while (this.#script.length > 0) await this.#script.shift()!();
    const out: BrokerValue<T>[] = [];
    for (const [p, pos] of this.#positions) {
      if (this.#paused.has(p)) continue;
      const log = this.logs.get(p)!;
      let o = pos;
      for (; o < log.length && out.length < this.maxPoll; o++) {
        out.push(new BrokerValue(log[o], p, o, 0));
      }
      this.#positions.set(p, o);
    }
    return out;
  }
  pause(partitions: readonly Partition[]): void {
    for (const p of partitions) this.#paused.add(p);
  }
  resume(partitions: readonly Partition[]): void {
    for (const p of partitions) this.#paused.delete(p);
  }
  paused(): Partition[] {
    return [...this.#paused];
  }
  tell(): Map<Partition, number> {
    return new Map(this.#positions);
  }
  seek(offsets: ReadonlyMap<Partition, number>): void {
    this.seeks.push(new Map(offsets));
    for (const [p, o] of offsets) {
      if (!this.#positions.has(p)) throw new Error(`seek: ${p} is not assigned`);
      this.#positions.set(p, o);
    }
  }
  stageOffsets(offsets: Committable): void {
    for (const [p, o] of offsets) this.#staged.set(p, o);
  }
  commitOffsets(): Promise<Map<Partition, number>> {
    const done = this.#staged;
    this.#staged = new Map();
    for (const [p, o] of done) this.committed.set(p, o);
    if (done.size > 0) this.onCommit(done);
    return Promise.resolve(done);
  }
  endOffsets(partitions: readonly Partition[]): Promise<Map<Partition, number>> {
    return Promise.resolve(new Map(partitions.map((p) => [p, this.logs.get(p)!.length])));
  }
  async close(): Promise<void> {
    if (this.closed) return;
    const parts = [...this.#positions.keys()];
    if (parts.length > 0) await this.#callbacks.onRevoke?.(parts);
    this.#positions.clear();
    this.closed = true;
  }
}
