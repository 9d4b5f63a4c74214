/**
 * `RunTaskInWorkers`: runs a CPU-heavy function on a pool of Web Workers, in batches,
 * and hands the results on in input order.
 *
 * @module
 */
import { BrokerValue, InvalidMessage, type Message, StepError } from "../../types.ts";
import { ConfigurationError, SluiceError } from "../../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../../_validate.ts";
import type { ProcessingStrategy } from "../abstract.ts";
import {
  createModuleWorker,
  detectRuntime,
  hasWorkers,
  type ModuleWorker,
  UnsupportedRuntimeError,
} from "../../runtime/mod.ts";
import { type StepOptions, StreamStep } from "../stream_step.ts";
import { Waiters } from "../_waiters.ts";
import { cloneable, packViews } from "./_pack.ts";

/**
 * Options of a {@link RunTaskInWorkers}.
 *
 * @example Four workers running the module's `hash` export
 * ```ts
 * import type { RunTaskInWorkersOptions } from "@sluice/sluice";
 *
 * const options: RunTaskInWorkersOptions = {
 *   exportName: "hash",
 *   workers: 4,
 *   maxBatchSize: 200,
 *   maxBatchTimeMs: 20,
 * };
 * // new RunTaskInWorkers(new URL("./hash.ts", import.meta.url), next, options)
 * ```
 */
export interface RunTaskInWorkersOptions extends StepOptions {
  /**
   * Name of the function export to run.
   * @default "default"
   */
  exportName?: string;
  /**
   * Number of workers.
   * @default navigator.hardwareConcurrency (at least 1)
   */
  workers?: number;
  /**
   * Most messages per batch sent to a worker.
   * @default 100
   */
  maxBatchSize?: number;
  /**
   * A batch that is not full is sent once its first message has waited this long (checked
   * on `poll()`).
   * @default 50
   */
  maxBatchTimeMs?: number;
  /**
   * Batches each worker may have outstanding (sent, or finished and not yet handed on).
   * Batches in flight never exceed `workers × prefetch`.
   * @default 2
   */
  prefetch?: number;
  /**
   * A batch not answered within this time fails the step (a worker that hangs or vanished
   * without an error). Checked on `poll()`.
   * @default 60000
   */
  batchTimeoutMs?: number;
}

// The npm build is type-stripped JavaScript: its worker runtime is the .js file beside this
// one. Computed when workers start: a bundle (workerd, some pages) may have no module URL.
const runtimeUrl = () =>
  new URL(
    import.meta.url.endsWith(".ts") ? "./_runtime.ts" : "./_runtime.js",
    import.meta.url,
  ).href;

interface Batch<TIn> {
  readonly id: number;
  readonly messages: Message<TIn>[];
  readonly worker: number;
  readonly sentAt: number;
  done: boolean;
  results: unknown[] | undefined;
  invalid: Map<number, string> | undefined;
  /** Next message index to hand on. */
  next: number;
  /** Index in `results` of the next non-filtered message. */
  nextResult: number;
}

interface PoolWorker {
  readonly worker: ModuleWorker;
  /** Ids of batches sent to this worker and not answered yet, oldest first. */
  readonly batches: number[];
}

type WorkerReply =
  | { t: "result"; id: number; results: unknown[]; invalid: Array<[number, string]> }
  | { t: "error"; id: number; index: number; name: string; message: string; stack?: string }
  | { t: "init-error"; name: string; message: string }
  | { t: "exit"; code: number };

/**
 * Runs a function exported by `module` on every message's payload, on a pool of module
 * Web Workers, so CPU-heavy work uses more than one core. Payloads and results cross
 * threads by structured cloning: plain data, typed arrays, `Map`s... but no functions.
 * Structured clone copies a view's whole buffer, so typed arrays and `DataView`s over part of
 * a larger buffer (a `LocalBroker` read; a `KafkaPayload`'s `key`, `value` and header values,
 * slices of its fetch response) are first copied, with the batch's other such views, into one
 * new buffer that is transferred: the worker gets views of the same kind (a `Buffer` as a
 * `Uint8Array`) over a buffer of the batch's bytes only. That holds for a payload that is such
 * a view and for views inside plain objects and arrays up to three levels deep (a payload
 * object, its `headers`, an array of header values), which are sent as shallow copies; the
 * sender's payloads are not touched. Views inside class instances, or deeper, are cloned as
 * they are, whole source buffer included.
 *
 * The worker module is loaded by URL in every worker; it exports the function, e.g.
 * `export function hash(payload: Uint8Array): string { ... }` (it may be async). It may
 * throw an error named `"InvalidMessage"` for a payload that can never be processed.
 *
 * - Messages are batched (`maxBatchSize`, `maxBatchTimeMs`); at most `workers × prefetch`
 *   batches are in flight. Then the step stops taking messages from its queue, the queue
 *   fills, and `submit` rejects: memory holds at most the queue, one open batch and the
 *   batches in flight.
 * - Results are handed on in input order, each exactly once; when the next step rejects,
 *   they wait (the function never runs twice for one message).
 * - A function error fails the step: `poll()` throws a `StepError` naming the worker and
 *   the message. A worker that crashes (uncaught error, `Deno.exit`, unloadable module)
 *   or does not answer within `batchTimeoutMs` fails the step with a `StepError` naming
 *   the worker and its batch's first message. Nothing past unfinished work is committed.
 * - `join` sends the open batch, waits for all of them (within its timeout) and stops the
 *   workers; `terminate` stops them at once.
 *
 * @example Hash payloads in four workers
 * ```ts ignore
 * import { CommitOffsets, RunTaskInWorkers } from "@sluice/sluice";
 * // hash.ts: export function hash(payload: string): number { ... }
 * const step = new RunTaskInWorkers<string, number>(
 *   new URL("./hash.ts", import.meta.url),
 *   new CommitOffsets(() => {}),
 *   { exportName: "hash", workers: 4, maxBatchSize: 200, maxBatchTimeMs: 20 },
 * );
 * ```
 */
export class RunTaskInWorkers<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** The worker module's URL. */
  readonly module: string;
  /** The export run on every payload. */
  readonly exportName: string;
  /** Number of workers. */
  readonly workers: number;
  /** Most messages per batch. */
  readonly maxBatchSize: number;
  /** Longest wait of a partial batch, in milliseconds. */
  readonly maxBatchTimeMs: number;
  /** Batches outstanding per worker. */
  readonly prefetch: number;
  /** Longest wait for one batch's answer, in milliseconds. */
  readonly batchTimeoutMs: number;

  #pool: PoolWorker[] | undefined;
  #stopped = false;
  #open: Message<TIn>[] = [];
  #openedAt = 0;
  /** Batches sent and not fully handed on, oldest first. */
  #batches: Batch<TIn>[] = [];
  #byId = new Map<number, Batch<TIn>>();
  #nextId = 0;
  #forwarding = false;
  #waitingRoom = false;
  readonly #afterRoom = () => {
    this.#waitingRoom = false;
    this.#forward();
  };
  /** Woken when a batch is answered or handed on, or the workers stop. */
  readonly #changes = new Waiters();

  /** Creates the step; workers start with the first batch. */
  constructor(
    module: string | URL,
    next: ProcessingStrategy<TOut>,
    options: RunTaskInWorkersOptions = {},
  ) {
    super("run_task_in_workers", next, options);
    if (!hasWorkers()) {
      throw new UnsupportedRuntimeError(
        detectRuntime(),
        "workers",
        `step "${this.name}" needs module workers (Web Workers, or worker_threads under ` +
          "Node); use RunTaskAsync instead, which runs async work concurrently on this thread",
      );
    }
    let url: URL;
    try {
      url = new URL(module);
    } catch {
      throw new ConfigurationError(
        `step "${this.name}": module must be an absolute URL, got ${String(module)}; ` +
          `pass new URL("./your_module.ts", import.meta.url)`,
      );
    }
    this.module = url.href;
    this.exportName = options.exportName ?? "default";
    if (typeof this.exportName !== "string" || this.exportName.length === 0) {
      throw new ConfigurationError(`step "${this.name}": exportName must be a non-empty string`);
    }
    const cores = typeof navigator !== "undefined" ? navigator.hardwareConcurrency : 1;
    this.workers = requirePositiveInteger(
      `step "${this.name}": workers`,
      options.workers ?? Math.max(1, cores || 1),
    );
    this.maxBatchSize = requirePositiveInteger(
      `step "${this.name}": maxBatchSize`,
      options.maxBatchSize ?? 100,
    );
    this.maxBatchTimeMs = requireNonNegative(
      `step "${this.name}": maxBatchTimeMs`,
      options.maxBatchTimeMs ?? 50,
    );
    this.prefetch = requirePositiveInteger(`step "${this.name}": prefetch`, options.prefetch ?? 2);
    this.batchTimeoutMs = requireNonNegative(
      `step "${this.name}": batchTimeoutMs`,
      options.batchTimeoutMs ?? 60_000,
    );
  }

  /** Batches sent and not fully handed on. */
  get batchesInFlight(): number {
    return this.#batches.length;
  }

  /** Messages in the batch being built. */
  get openBatchSize(): number {
    return this.#open.length;
  }

  /** True while workers are running. */
  get running(): boolean {
    return this.#pool !== undefined && !this.#stopped;
  }

  /** Adds messages to the open batch and posts full batches to idle workers. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    for (let i = 0; i < batch.length; i++) {
      if (this.#open.length >= this.maxBatchSize && !this.#send()) {
        return this.#processSlow(batch, i);
      }
      if (this.#open.length === 0) this.#openedAt = this.clock.now();
      this.#open.push(batch[i]);
    }
    if (this.#open.length >= this.maxBatchSize) this.#send();
  }

  async #processSlow(batch: Message<TIn>[], i: number): Promise<void> {
    while (i < batch.length) {
      if (this.abandoned) return;
      if (this.#open.length >= this.maxBatchSize && !this.#send()) {
        await this.#changes.wait();
        continue;
      }
      if (this.#open.length === 0) this.#openedAt = this.clock.now();
      this.#open.push(batch[i++]);
    }
    if (this.#open.length >= this.maxBatchSize) this.#send();
  }

  /** Fails on a batch past `batchTimeoutMs`; posts the open batch once `maxBatchTimeMs` passed. */
  protected override onPoll(): void {
    const timedOut = this.#checkTimeouts();
    if (timedOut !== undefined) throw timedOut;
    if (this.#open.length > 0 && this.clock.now() - this.#openedAt >= this.maxBatchTimeMs) {
      this.#send();
    }
  }

  /** Posts the open batch and waits for every batch in the workers (the step is joined). */
  protected override async onDrained(): Promise<void> {
    while (!this.abandoned && (this.#open.length > 0 || this.#batches.length > 0)) {
      if (this.#open.length > 0) this.#send();
      this.#checkTimeouts();
      if (this.abandoned) return;
      await Promise.race([this.#changes.wait(), this.waitForPoll()]);
    }
  }

  /** Stops the workers and abandons their batches; terminates the next step. */
  override terminate(): void {
    super.terminate();
    this.#stop();
  }

  /** Sends the open batch, waits for all batches within `timeoutMs`, stops the workers. */
  override async join(timeoutMs?: number): Promise<void> {
    try {
      await super.join(timeoutMs);
    } catch (e) {
      // An invalid message reported during join: the processor handles it (dead-letter
      // queue) and joins again, so the workers must keep going.
      if (!(e instanceof InvalidMessage)) this.#stop();
      throw e;
    }
    this.#stop();
  }

  /** Fails the step and stops the workers. */
  protected override fail(error: unknown): void {
    super.fail(error);
    this.#stop();
  }

  #stop(): void {
    if (!this.#stopped) {
      this.#stopped = true;
      if (this.#pool) { for (const p of this.#pool) p.worker.terminate(); }
    }
    this.#changes.wake();
  }

  #startPool(): PoolWorker[] {
    const pool: PoolWorker[] = [];
    for (let i = 0; i < this.workers; i++) {
      const worker = createModuleWorker(runtimeUrl(), `${this.name}#${i}`);
      worker.onmessage = (e: MessageEvent) => this.#onReply(i, e.data as WorkerReply);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#onCrash(i, `crashed: ${e.message}`);
      };
      worker.onmessageerror = () =>
        this.#onCrash(i, "sent a result that could not be deserialized");
      worker.postMessage({ t: "init", module: this.module, exportName: this.exportName });
      pool.push({ worker, batches: [] });
    }
    return pool;
  }

  /** Sends the open batch if a worker has room. Returns false when every slot is in use. */
  #send(): boolean {
    if (this.#open.length === 0) return true;
    if (this.abandoned || this.#stopped) return false;
    if (this.#batches.length >= this.workers * this.prefetch) return false;
    const pool = this.#pool ??= this.#startPool();
    let w = 0;
    for (let i = 1; i < pool.length; i++) {
      if (pool[i].batches.length < pool[w].batches.length) w = i;
    }
    const messages = this.#open;
    this.#open = [];
    const payloads: unknown[] = [];
    for (const m of messages) if (!m.filtered) payloads.push(m.payload);
    const batch: Batch<TIn> = {
      id: this.#nextId++,
      messages,
      worker: w,
      sentAt: this.clock.now(),
      done: payloads.length === 0,
      results: payloads.length === 0 ? [] : undefined,
      invalid: undefined,
      next: 0,
      nextResult: 0,
    };
    this.#batches.push(batch);
    if (!batch.done) {
      try {
        const packed = packViews(payloads);
        const message = { t: "batch", id: batch.id, payloads };
        if (packed === undefined) pool[w].worker.postMessage(message);
        else pool[w].worker.postMessage(message, [packed]);
      } catch (e) {
        const bad = messages.find((m) => !m.filtered && !cloneable(m.payload)) ?? messages[0];
        this.fail(
          new StepError(
            this.name,
            bad,
            new SluiceError(
              `payload cannot be sent to a worker (${e instanceof Error ? e.message : e}); ` +
                `RunTaskInWorkers payloads must be structured-cloneable (plain data, typed arrays)`,
            ),
          ),
        );
        return true;
      }
      this.#byId.set(batch.id, batch);
      pool[w].batches.push(batch.id);
    } else this.#forward();
    return true;
  }

  #onReply(w: number, reply: WorkerReply): void {
    if (this.#stopped || this.abandoned) return;
    if (reply.t === "exit") {
      this.#onCrash(w, `exited (Deno.exit(${reply.code}))`);
      return;
    }
    if (reply.t === "init-error") {
      this.#onCrash(w, `could not load ${this.module}: ${reply.message}`);
      return;
    }
    const batch = this.#byId.get(reply.id);
    if (batch === undefined) return;
    this.#byId.delete(reply.id);
    const queue = this.#pool![w].batches;
    const at = queue.indexOf(reply.id);
    if (at >= 0) queue.splice(at, 1);
    if (reply.t === "error") {
      const m = reply.index >= 0 ? nthUnfiltered(batch.messages, reply.index) : batch.messages[0];
      const cause = new Error(`worker ${w}: ${reply.name}: ${reply.message}`);
      if (reply.stack) cause.stack = reply.stack;
      this.fail(new StepError(this.name, m ?? batch.messages[0], cause));
      return;
    }
    batch.results = reply.results;
    if (reply.invalid.length > 0) batch.invalid = new Map(reply.invalid);
    batch.done = true;
    this.#forward();
    this.#changes.wake();
  }

  #onCrash(w: number, what: string): void {
    if (this.#stopped || this.abandoned) return;
    const queue = this.#pool?.[w]?.batches ?? [];
    const batch = queue.length > 0 ? this.#byId.get(queue[0]) : undefined;
    const ref = batch ? String(batch.messages[0]) : "(no batch in flight)";
    this.fail(new StepError(this.name, ref, new SluiceError(`worker ${w} ${what}`)));
  }

  /** Fails the step if the oldest unanswered batch is overdue; returns that error. */
  #checkTimeouts(): StepError | undefined {
    if (this.#stopped || this.abandoned || this.#byId.size === 0) return undefined;
    const now = this.clock.now();
    for (const b of this.#batches) {
      if (b.done) continue;
      if (now - b.sentAt > this.batchTimeoutMs) {
        const error = new StepError(
          this.name,
          b.messages[0],
          new SluiceError(
            `worker ${b.worker} did not answer within batchTimeoutMs (${this.batchTimeoutMs} ms); ` +
              `it may be stuck or have exited; raise batchTimeoutMs for slower batches`,
          ),
        );
        this.fail(error);
        return error;
      }
      return undefined; // only the oldest unanswered batch matters
    }
    return undefined;
  }

  /** Hands on finished results from the oldest batch, in order. */
  #forward(): void {
    if (this.#forwarding || this.#waitingRoom) return;
    this.#forwarding = true;
    let freed = false;
    try {
      while (this.#batches.length > 0 && !this.abandoned) {
        const b = this.#batches[0];
        if (!b.done) return;
        while (b.next < b.messages.length) {
          if (this.abandoned) return;
          const m = b.messages[b.next];
          let out: Message<TOut>;
          if (m.filtered) out = m as unknown as Message<TOut>;
          else {
            const k = b.nextResult;
            const reason = b.invalid?.get(k);
            if (reason !== undefined) {
              b.invalid!.delete(k);
              const v = m.source;
              const err = v instanceof BrokerValue
                ? InvalidMessage.fromValue(v, reason, this.name)
                : new StepError(
                  this.name,
                  String(m),
                  new SluiceError(`invalid message: ${reason}`),
                );
              if (err instanceof StepError) {
                this.fail(err);
                return;
              }
              this.#waitingRoom = true;
              this.reportInvalid(err, m).then(() => {
                this.#waitingRoom = false;
                b.next++;
                b.nextResult++;
                this.#forward();
              }, (e) => this.fail(e));
              return;
            }
            out = m.replacePayload(b.results![k] as TOut);
          }
          if (!this.emitOrWhenRoom(out, this.#afterRoom)) {
            this.#waitingRoom = !this.abandoned;
            return;
          }
          b.next++;
          if (!m.filtered) b.nextResult++;
        }
        this.#batches.shift();
        freed = true;
      }
    } finally {
      this.#forwarding = false;
      if (freed) {
        // Room for another batch: send one that is full or overdue.
        if (
          this.#open.length >= this.maxBatchSize ||
          (this.#open.length > 0 && this.clock.now() - this.#openedAt >= this.maxBatchTimeMs)
        ) this.#send();
        this.#changes.wake();
      }
    }
  }
}

function nthUnfiltered<T>(messages: Message<T>[], n: number): Message<T> | undefined {
  for (const m of messages) {
    if (m.filtered) continue;
    if (n-- === 0) return m;
  }
  return undefined;
}
