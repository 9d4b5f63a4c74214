/**
 * The listeners of a consumer's `onGroupEvent` (see `Consumer.onGroupEvent` in
 * `abstract.ts`), shared by the backends: a set of callbacks, each removable, all called on
 * every event.
 *
 * @module
 */

/** The listeners of one consumer's group events. */
export class GroupEvents {
  readonly #listeners = new Set<() => void>();

  /** Adds `listener`; returns the function that removes it. */
  listen(listener: () => void): () => void {
    // A wrapper per call: the same function added twice is two listeners, removed one by one.
    const entry = () => listener();
    this.#listeners.add(entry);
    return () => void this.#listeners.delete(entry);
  }

  /** Calls every listener (one that throws does not stop the others; its error is dropped). */
  emit(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch { /* a listener's failure is its own */ }
    }
  }
}
