/**
 * A promise with its resolve function at hand (private to the backends): what a consumer
 * waits on until another of its paths says so (a wake-up, a revoke done).
 *
 * @module
 */

/** A promise and its resolve function. */
export interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

/** A new {@link Deferred}, not yet resolved. */
export function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}
