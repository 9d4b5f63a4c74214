/**
 * SIGINT/SIGTERM for the processor's `run()` (private to `processing/`): the first signal
 * shuts down gracefully and says what is drained until when; a second one stops the
 * process at once, committing nothing more.
 *
 * @module
 */
import {
  detectRuntime,
  exitProcess,
  hasSignals,
  onShutdownSignals,
  UnsupportedRuntimeError,
} from "../runtime/mod.ts";

/**
 * Whether `run()` handles signals: `handleSignals`, by default where the runtime has
 * process signals. Throws {@link UnsupportedRuntimeError} for `true` where it has none.
 */
export function handlesSignals(handleSignals: boolean | undefined): boolean {
  if (handleSignals === true && !hasSignals()) {
    throw new UnsupportedRuntimeError(
      detectRuntime(),
      "signals",
      "pass handleSignals: false (the default here) and call signalShutdown() from your " +
        "own event (pagehide, an AbortSignal, the end of the request)",
    );
  }
  return handleSignals ?? hasSignals();
}

/** What the signal handlers do to the processor. */
export interface SignalTarget {
  /** Starts a graceful shutdown. */
  shutdown(): void;
  /** What the graceful shutdown will do now, in one sentence (no final period). */
  plan(): string;
  /** Stops at once: nothing more is committed, the pipeline is terminated. */
  stopNow(): void;
}

/**
 * Handles SIGINT/SIGTERM until the returned function is called: the first one shuts
 * `target` down gracefully (one line on stderr says what is drained, and the deadline); a
 * second one stops it at once and ends the process (exit code 130 for SIGINT, 143 for
 * SIGTERM).
 */
export function handleShutdownSignals(target: SignalTarget): () => void {
  let received = 0;
  return onShutdownSignals((signal) => {
    if (++received === 1) {
      target.shutdown();
      console.warn(
        `sluice: ${signal} received, shutting down: ${target.plan()}. Send ${signal} again ` +
          "to stop at once without committing unfinished work.",
      );
      return;
    }
    console.warn(
      `sluice: ${signal} again: stopping at once; unfinished work is not committed and will ` +
        "be read again",
    );
    target.stopNow();
    exitProcess(signal === "SIGINT" ? 130 : 143);
  });
}
