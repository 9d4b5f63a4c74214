/**
 * A group member of the fault-injection suite (a child process, not a test). It uses only
 * Sluice's public API: `StreamProcessor` → `RunTask` → `CommitOffsets` on a
 * `KafkaConsumer`.
 *
 * Every processed record is appended to its own log file with a synchronous write inside
 * the `RunTask` function, so it is on disk (in the page cache, which outlives a `kill -9`)
 * before its offset can reach `CommitOffsets`. Log lines (times are `Date.now()`):
 *
 * - `A <ms> <partition>:<offset>,...` a pipeline was created for an assignment (the
 *   offsets are where each partition starts);
 * - `P <ms> <partition> <offset>` a record was processed;
 * - `R <ms>` the pipeline was closed (revoke or shutdown);
 * - `X <ms> <reason>` `run()` returned or failed.
 *
 * With `rate > 0` the function holds back (`MessageRejected`, as the README allows) above
 * `rate` records a second (counted per window), so faults land on a member with work in
 * flight, often paused. It stops by
 * itself on SIGTERM/SIGINT (the processor's handlers), or after `stopAfterMs` when given;
 * it never calls `Deno.exit`: the process must end because nothing is left running.
 *
 * Usage: deno run -A tests/faults/member.ts '<MemberConfig as JSON>'
 */
import {
  type BrokerValue,
  type Commit,
  CommitOffsets,
  CommitPolicy,
  type Message,
  MessageRejected,
  type Partition,
  type ProcessingStrategy,
  RunTask,
  StreamProcessor,
} from "../../mod.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";

/** What the harness passes to a member. */
export interface MemberConfig {
  brokers: string;
  topic: string;
  group: string;
  /** The log file to append to. */
  log: string;
  /** Records per second above which the member holds back; 0 = no limit. */
  rate: number;
  /** The window of the rate limit (ms). Default 1000. */
  windowMs?: number;
  /**
   * After this many records, hold back completely (every record rejected) until the
   * process receives SIGUSR2. Default: never.
   */
  holdAfter?: number;
  /** `maxPollMessages` of the consumer. */
  maxPollMessages?: number;
  /** `maxBytesPerPartition` of the consumer. */
  maxBytesPerPartition?: number;
  /** `pauseAfterMs` of the processor. Default 300. */
  pauseAfterMs?: number;
  /** `joinTimeoutMs` of the processor. */
  joinTimeoutMs?: number;
  /** Commit interval (ms). */
  commitIntervalMs?: number;
  /** Shut down gracefully after this long (ms); default: only on a signal. */
  stopAfterMs?: number;
  /** Client id (kafkajs member ids start with it; the round-robin assigner sorts by them). */
  clientId?: string;
  /** kafkajs log level. */
  logLevel?: "nothing" | "error" | "warn" | "info" | "debug";
}

const config = JSON.parse(Deno.args[0]) as MemberConfig;
const file = Deno.openSync(config.log, { append: true, create: true });
const encoder = new TextEncoder();

function write(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let done = 0;
  while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
}

// A windowed limit: at most `rate * windowMs / 1000` records per window, then rejections
// until the window ends. Each window ends in a stretch of backpressure long enough for the
// processor to pause the consumer (`pauseAfterMs`), so faults land on members that are
// paused, hold polled work and resume, over and over.
const windowMs = config.windowMs ?? 1000;
const perWindow = Math.max(1, Math.round(config.rate * windowMs / 1000));
let window = -1;
let used = 0;
let done = 0;
let held = config.holdAfter !== undefined;
const release = () => {
  held = false;
};
// Removed when run() returns: a signal listener alone would keep the process alive.
if (held) Deno.addSignalListener("SIGUSR2", release);
function take(): boolean {
  if (held && done >= config.holdAfter!) return false;
  if (config.rate <= 0) return true;
  const w = Math.floor(performance.now() / windowMs);
  if (w !== window) {
    window = w;
    used = 0;
  }
  if (used >= perWindow) return false;
  used++;
  return true;
}

/** Logs `R` when the pipeline is closed; otherwise the `RunTask` it wraps. */
class Logged implements ProcessingStrategy<KafkaPayload> {
  constructor(readonly inner: RunTask<KafkaPayload, null>) {}
  get ready(): Promise<void> {
    return this.inner.ready;
  }
  submit(message: Message<KafkaPayload>): void {
    this.inner.submit(message);
  }
  submitMany(messages: readonly Message<KafkaPayload>[], from: number): number {
    return this.inner.submitMany(messages, from);
  }
  poll(): void {
    this.inner.poll();
  }
  close(): void {
    write(`R ${Date.now()}`);
    this.inner.close();
  }
  join(timeoutMs?: number): Promise<void> {
    return this.inner.join(timeoutMs);
  }
  terminate(): void {
    write(`R ${Date.now()} terminate`);
    this.inner.terminate();
  }
}

const consumer = new KafkaConsumer({
  brokers: config.brokers,
  group: config.group,
  clientId: config.clientId ?? `sluice-fault-member-${Deno.pid}`,
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
  rebalanceTimeoutMs: 10_000,
  maxWaitTimeMs: 100,
  retry: { initialRetryTimeMs: 100, retries: 10, maxRetryTimeMs: 2000 },
  maxPollMessages: config.maxPollMessages,
  maxBytesPerPartition: config.maxBytesPerPartition,
  logLevel: config.logLevel ?? "warn",
});
const processor = new StreamProcessor<KafkaPayload>({
  consumer,
  topics: [config.topic],
  commitPolicy: new CommitPolicy({ intervalMs: config.commitIntervalMs ?? 200 }),
  pauseAfterMs: config.pauseAfterMs ?? 300,
  joinTimeoutMs: config.joinTimeoutMs ?? 5000,
  factory: {
    createWithPartitions: (commit: Commit, partitions: ReadonlyMap<Partition, number>) => {
      write(
        `A ${Date.now()} ${[...partitions].map(([p, o]) => `${p.index}:${o}`).join(",")}`,
      );
      return new Logged(
        new RunTask((m: Message<KafkaPayload>) => {
          if (!take()) throw new MessageRejected();
          done++;
          const v = m.source as BrokerValue<unknown>;
          write(`P ${Date.now()} ${v.partition.index} ${v.offset}`);
          return null;
        }, new CommitOffsets(commit)),
      );
    },
  },
});

/** What the processor and the consumer counted, for the log's last line. */
function stats(): string {
  const p = processor.stats;
  return JSON.stringify({
    pauses: p.pauses,
    resumes: p.resumes,
    assignments: p.assignments,
    revocations: p.revocations,
    commits: p.commits,
    commitsIncomplete: p.commitsIncomplete,
    consumer: consumer.stats,
  });
}

const stopTimer = config.stopAfterMs === undefined
  ? undefined
  : setTimeout(() => processor.signalShutdown(), config.stopAfterMs);
try {
  await processor.run();
  write(`X ${Date.now()} run() returned ${stats()}`);
} catch (e) {
  write(`X ${Date.now()} run() failed: ${e instanceof Error ? e.message : String(e)} ${stats()}`);
  console.error(e);
  Deno.exitCode = 1;
} finally {
  clearTimeout(stopTimer);
  if (config.holdAfter !== undefined) Deno.removeSignalListener("SIGUSR2", release);
  file.close();
}
