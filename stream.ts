/**
 * A broker-less source: any web `ReadableStream` (a `fetch` body of NDJSON lines, a
 * WebSocket or server-sent-events stream turned into a stream) as a {@link Consumer}, so a
 * {@link StreamProcessor} runs a pipeline over it with its usual semantics:
 *
 * - one partition (`<topic>/0`); positions are sequence numbers (0, 1, 2, ... from `start`);
 * - backpressure reaches the source: it is read only from `poll()`, and the processor does
 *   not poll while the pipeline is full (it pauses instead), so the stream is not pulled;
 * - "committed" means acknowledged to your `onCommit(next)` callback: every sequence number
 *   below `next` was fully processed (or deliberately filtered, or dead-lettered).
 *
 * @example Upper-casing a stream, acknowledged item by item
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { CommitOffsets, RunTask } from "@sluice/sluice";
 * import { processStream } from "@sluice/sluice/stream";
 *
 * const source = ReadableStream.from(["a", "b", "c"]);
 * let acked = 0;
 * await processStream(source, {
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.toUpperCase(), new CommitOffsets(commit)),
 *   },
 *   onCommit: (next) => void (acked = next),
 * });
 * assertEquals(acked, 3);
 * ```
 *
 * @module
 */
export { lines, StreamConsumer, type StreamConsumerOptions } from "./backends/stream.ts";
export { processStream, type ProcessStreamOptions } from "./processing/process_stream.ts";
