/**
 * `processStream`: runs a pipeline over a web `ReadableStream` (a {@link StreamConsumer}
 * from `backends/stream.ts`) with a {@link StreamProcessor}, until the stream ends, the
 * signal aborts or the pipeline fails. Exported by the `@sluice/sluice/stream` entry.
 *
 * @module
 */
import { type ProcessorStats, StreamProcessor, type StreamProcessorOptions } from "./processor.ts";
import { StreamConsumer, type StreamConsumerOptions } from "../backends/stream.ts";

/**
 * Options of {@link processStream}: the processor's, without consumer and topics, and the
 * {@link StreamConsumerOptions}.
 *
 * @example Options for a run over a stream of lines
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { CommitOffsets } from "@sluice/sluice";
 * import { processStream, type ProcessStreamOptions } from "@sluice/sluice/stream";
 *
 * let acked = 0;
 * const options: ProcessStreamOptions<string> = {
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   onCommit: (next) => void (acked = next),
 *   topic: "lines",
 *   maxPollRecords: 50,
 * };
 * const stats = await processStream(ReadableStream.from(["a", "b", "c"]), options);
 * assertEquals([acked, stats.messagesPolled], [3, 3]);
 * ```
 */
export interface ProcessStreamOptions<T>
  extends
    Omit<StreamProcessorOptions<T>, "consumer" | "topics">,
    Omit<StreamConsumerOptions, "onCommit"> {
  /** Called with the next sequence number once everything below it was processed. */
  onCommit(next: number): void | Promise<void>;
}

/**
 * Runs a pipeline over `source` until the stream ends and everything was processed and
 * acknowledged (or `signal` aborts), then returns the processor's stats. Signals are not
 * handled unless `handleSignals` is given: an edge function's stream is not the process.
 *
 * @example
 * ```ts
 * import { CommitOffsets, FilterStep } from "@sluice/sluice";
 * import { lines, processStream } from "@sluice/sluice/stream";
 *
 * const body = new Response('{"n":1}\n{"n":2}\n').body!;
 * let acked = 0;
 * const stats = await processStream(lines(body), {
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new FilterStep((m) => JSON.parse(m.payload).n > 1, new CommitOffsets(commit)),
 *   },
 *   onCommit: (next) => void (acked = next),
 * });
 * console.log(acked, stats.messagesPolled); // 2 2
 * ```
 */
export async function processStream<T>(
  source: ReadableStream<T>,
  options: ProcessStreamOptions<T> & { signal?: AbortSignal },
): Promise<ProcessorStats> {
  const { onCommit, topic, start, maxPollRecords, cancelOnClose, signal, ...rest } = options;
  const consumer = new StreamConsumer(source, {
    onCommit,
    topic,
    start,
    maxPollRecords,
    cancelOnClose,
  });
  const processor = new StreamProcessor<T>({
    ...rest,
    handleSignals: rest.handleSignals ?? false,
    consumer,
    topics: [consumer.topic],
  });
  const stop = () => processor.signalShutdown();
  signal?.addEventListener("abort", stop, { once: true });
  if (signal?.aborted) stop();
  // A failed read is thrown by the next poll: run() rejects with it.
  consumer.done.then(stop, () => {});
  try {
    await processor.run();
  } finally {
    signal?.removeEventListener("abort", stop);
  }
  return processor.stats;
}
