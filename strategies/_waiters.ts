/**
 * Private: {@link Waiters}, the list of "wake me at the next change" promises that a step
 * keeps for its loops (a drain in `onDrained`, a chunk held until there is room).
 *
 * @module
 */

/**
 * One-shot waiters woken all at once: `wait()` resolves at the next `wake()`. A wait
 * started after a `wake()` waits for the one after. Never rejects.
 *
 * @example Wake everyone waiting
 * ```ts
 * import { Waiters } from "./_waiters.ts";
 * const changes = new Waiters();
 * const woken = changes.wait();
 * changes.wake();
 * await woken;
 * ```
 */
export class Waiters {
  #resolvers: Array<() => void> = [];

  /** How many are waiting. */
  get size(): number {
    return this.#resolvers.length;
  }

  /** Resolves at the next {@link Waiters.wake}. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.#resolvers.push(resolve));
  }

  /** Resolves every wait started before this call. */
  wake(): void {
    if (this.#resolvers.length === 0) return;
    const resolvers = this.#resolvers;
    this.#resolvers = [];
    for (const resolve of resolvers) resolve();
  }
}
