// deno-lint-ignore-file require-await -- async functions are what these types are about
/**
 * Compile-time tests: `deno check` fails when a `@ts-expect-error` line below stops being
 * an error, so these prove that mismatched steps do not compile, in both directions, with
 * the Arroyo-style constructors and with `pipeline()`. The runtime test at the end only
 * builds what must compile.
 */
import { assertEquals } from "@std/assert";
import type { Commit, ProcessingStrategy } from "../strategies/abstract.ts";
import { BatchStep, UnbatchStep } from "../strategies/batching.ts";
import { CommitOffsets } from "../strategies/commit_offsets.ts";
import { FilterStep } from "../strategies/filter.ts";
import { pipeline } from "../strategies/pipeline.ts";
import { RateLimit } from "../strategies/rate_limit.ts";
import { RunTask } from "../strategies/run_task.ts";
import type { Message } from "../types.ts";
import { brokerMessage, CommitRecorder, P0 } from "./_support/helpers.ts";

/** A step that claims `Message<string>`: it calls string methods on the payload. */
function stringStep(commit: Commit): ProcessingStrategy<string> {
  return new RunTask((m: Message<string>) => m.payload.toUpperCase(), new CommitOffsets(commit));
}

export function constructorsRejectMismatches(commit: Commit): void {
  // Wider into narrower: a `string | null` payload must not reach a step of `string`.
  const maybe = (m: Message<number>): string | null => m.payload > 0 ? "x" : null;
  // @ts-expect-error: Message<string | null> is not a Message<string>
  new RunTask(maybe, stringStep(commit));
  // Unrelated payloads.
  // @ts-expect-error: Message<number> is not a Message<string>
  new RunTask((m: Message<number>) => m.payload + 1, stringStep(commit));
  // A step held as the wider type cannot be one of the narrower type.
  // @ts-expect-error: a ProcessingStrategy<string> does not take string | null
  const wider: ProcessingStrategy<string | null> = stringStep(commit);
  void wider;
  // The other way is sound and compiles: a step taking `string | null` takes `string`.
  const lenient: ProcessingStrategy<string | null> = new RunTask(
    (m: Message<string | null>) => m.payload ?? "",
    new CommitOffsets(commit),
  );
  new RunTask((m: Message<number>) => String(m.payload), lenient);
  // An async function's payload is what its promise resolves to, never the promise.
  new RunTask(async (m: Message<number>) => String(m.payload), stringStep(commit));
  // @ts-expect-error: the async function resolves to a number, the next step takes strings
  new RunTask(async (m: Message<number>) => m.payload, stringStep(commit));
  // FilterStep keeps the type; its async predicate is awaited.
  new FilterStep(async (m: Message<string>) => m.payload !== "", stringStep(commit));
  // A filter does not narrow the type: what it hands on may still be null.
  const notNull = new FilterStep(
    (m: Message<string | null>) => m.payload !== null,
    stringStep(commit),
  );
  // @ts-expect-error: the FilterStep claims string (its next step's type), not string | null
  new RunTask(maybe, notNull);
}

export function pipelinesInferAndReject(): void {
  // Payload types flow front to back without annotations.
  pipeline<string>()
    .map((m) => m.payload.length)
    .filter((m) => m.payload > 0)
    .batch({ maxBatchSize: 10 })
    .map(async (b) => b.payload.reduce((sum, m) => sum + m.payload, 0))
    .commit();
  // A type guard narrows what follows.
  pipeline<string>()
    .map((m) => m.payload === "" ? null : m.payload)
    .filter((m): m is Message<string> => m.payload !== null)
    .map((m) => m.payload.toUpperCase())
    .commit();
  // Without the guard the payload may still be null.
  pipeline<string>()
    .map((m) => m.payload === "" ? null : m.payload)
    .filter((m) => m.payload !== null)
    // @ts-expect-error: the payload is string | null here
    .map((m) => m.payload.toUpperCase());
  // A step that claims a narrower payload cannot be put after a wider one.
  pipeline<string>()
    .map((m): string | null => m.payload)
    // @ts-expect-error: a Message<string | null> cannot flow into RunTask<string, ...>
    .through((next) => new RunTask((m: Message<string>) => m.payload, next));
  // A step that keeps the payload type is added without annotations.
  pipeline<number>().through((next) => new RateLimit(next, { ratePerSecond: 10 })).commit();
  // unbatch only after batch.
  pipeline<number>().batch({ maxBatchSize: 5 }).unbatch().map((m) => m.payload + 1).commit();
  // @ts-expect-error: unbatch needs a payload that is an array of messages
  pipeline<number>().unbatch();
  // The source type is the factory's: it cannot be used for another payload type.
  // @ts-expect-error: a pipeline of strings is not a factory of numbers
  const wrong: {
    createWithPartitions(c: Commit, p: ReadonlyMap<never, number>): ProcessingStrategy<number>;
  } = pipeline<string>().map((m) => m.payload.length).commit();
  void wrong;
}

export function offsetsWithoutInstanceof(m: Message<string>): string {
  const offset: number | undefined = m.source.offset;
  // @ts-expect-error: a Value has no offset, so it may be undefined
  const sure: number = m.source.offset;
  void sure;
  return `${m.source.partition ?? "batch"}@${offset ?? "-"}`;
}

Deno.test("pipeline() builds the same chain as the constructors, front to back", async () => {
  const recorder = new CommitRecorder();
  const seen: number[] = [];
  const factory = pipeline<string>()
    .map((m) => Number(m.payload))
    .filter((m) => m.payload % 2 === 0)
    .batch({ maxBatchSize: 2 })
    .map(async (b) => {
      await Promise.resolve();
      for (const m of b.payload) seen.push(m.payload);
      return b.payload.length;
    })
    .commit();
  const step = factory.createWithPartitions(recorder.commit, new Map([[P0, 0]]));
  for (let i = 0; i < 6; i++) step.submit(brokerMessage(String(i), i));
  await step.join(5_000);
  assertEquals(seen, [0, 2, 4]);
  assertEquals(recorder.latest.get(P0), 6);
  assertEquals(offsetsWithoutInstanceof(brokerMessage("a", 3).replacePayload("b")), `${P0}@3`);
  void BatchStep, UnbatchStep;
});
