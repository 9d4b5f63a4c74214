/**
 * kafkajs's own log, routed through Sluice's: one line per entry on stderr, prefixed
 * `sluice kafka: kafkajs`, never with a stack. Errors kafkajs logs while it retries
 * something that is expected to pass (a rebalance in progress, a coordinator moving, a
 * broker restarting, ECONNREFUSED during an outage) are not errors for Sluice: they are
 * counted and reported as a warning, at most one line per {@link TRANSIENT_REPORT_MS} with
 * the number seen since the last line. Other kafkajs errors print as errors.
 *
 * @module
 */
import type { logCreator, LogEntry } from "kafkajs";

/** At most one warning line about transient kafkajs errors per this many milliseconds. */
export const TRANSIENT_REPORT_MS = 30_000;

/**
 * Text of a kafkajs log entry (message and error) that marks an expected, retried error:
 * connections refused, reset or timed out, rebalances, coordinator and leader moves, a
 * member the coordinator forgot (kafkajs rejoins), and kafkajs's own retries and restarts.
 */
const TRANSIENT =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|Connection (error|timeout|closed)|Closed connection|Failed to connect|not reconnecting|rebalanc|not aware of this member|member id is not valid|generation id is not valid|coordinator|not the correct|leader|leadership|timed out|Request .* timeout|does not host this topic-partition|retries exceeded|NumberOfRetriesExceeded|Restarting the consumer|was disconnected|socket hang up|KafkaJSConnection/i;

/** Counts of what a {@link KafkajsLog} routed. */
export interface KafkajsLogCounts {
  /** kafkajs errors recognised as transient (reported as rate-limited warnings). */
  transient: number;
  /** Other kafkajs errors (printed as errors). */
  errors: number;
}

/**
 * The sink of one kafkajs client's log. `creator` is passed to kafkajs as `logCreator`.
 */
export class KafkajsLog {
  /** What was routed so far. */
  readonly counts: KafkajsLogCounts = { transient: 0, errors: 0 };
  #reportedAt = -Infinity;
  #unreported = 0;
  readonly #onTransient: (() => void) | undefined;

  /** `onTransient` is called for each transient error (for a client's statistics). */
  constructor(onTransient?: () => void) {
    this.#onTransient = onTransient;
  }

  /** The `logCreator` for kafkajs. */
  readonly creator: logCreator = () => (entry: LogEntry) => this.#log(entry);

  #log({ namespace, level, log }: LogEntry): void {
    const { message, ...rest } = log as { message: string; [k: string]: unknown };
    delete rest.timestamp;
    delete rest.logger;
    delete rest.stack;
    const error = typeof rest.error === "string" ? ` (${rest.error})` : "";
    // kafkajs levels: 1 ERROR, 2 WARN, 4 INFO, 5 DEBUG.
    if (level === 1 && TRANSIENT.test(`${message}${error}`)) {
      this.counts.transient++;
      this.#onTransient?.();
      const now = performance.now();
      if (now - this.#reportedAt < TRANSIENT_REPORT_MS) {
        this.#unreported++;
        return;
      }
      const more = this.#unreported > 0
        ? `; ${this.#unreported} more in the last ${Math.round((now - this.#reportedAt) / 1000)} s`
        : "";
      this.#reportedAt = now;
      this.#unreported = 0;
      console.warn(
        `sluice kafka: kafkajs retries after a transient error [${namespace}] ${message}${error}${more}` +
          ` (at most one such line per ${TRANSIENT_REPORT_MS / 1000} s)`,
      );
      return;
    }
    const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
    const line = `sluice kafka: kafkajs [${namespace}] ${message}${fields}`;
    if (level === 1) {
      this.counts.errors++;
      console.error(`${line}`);
    } else if (level === 2) console.warn(line);
    else console.error(line);
  }
}
