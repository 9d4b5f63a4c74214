/**
 * `CircuitBreaker`: runs a step's function through a circuit breaker, so a failing
 * dependency pauses the consumer instead of being hammered — and no message is lost.
 *
 * @module
 */
import { InvalidMessage, type Message } from "../types.ts";
import { ConfigurationError, MESSAGE_REJECTED, MessageRejected } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";
import { isThenable, requireSync } from "./thenable.ts";

/**
 * The breaker's state.
 *
 * @example Read the state of a breaker
 * ```ts
 * import { CircuitBreaker, type CircuitState, Noop } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const step = new CircuitBreaker(async (m: { payload: string }) => m.payload, new Noop());
 * const state: CircuitState = step.state;
 * assertEquals(state, "closed");
 * step.terminate();
 * ```
 */
export type CircuitState = "closed" | "open" | "half-open";

/**
 * One state change of a {@link CircuitBreaker}.
 *
 * @example Log state changes in your own format
 * ```ts
 * import { CircuitBreaker, type CircuitStateChange, Noop } from "@sluice/sluice";
 *
 * const log = (c: CircuitStateChange) => console.info(`${c.step}: ${c.from} -> ${c.to} (${c.reason})`);
 * const step = new CircuitBreaker(async (m: { payload: string }) => m.payload, new Noop(), {
 *   onStateChange: log,
 * });
 * step.terminate();
 * ```
 */
export interface CircuitStateChange {
  /** The step's name. */
  step: string;
  /** State before. */
  from: CircuitState;
  /** State after. */
  to: CircuitState;
  /** When, on the step's clock (epoch ms). */
  at: number;
  /** Why, for logs: the failure count or ratio that opened it, a probe's outcome... */
  reason: string;
}

/**
 * Options of a {@link CircuitBreaker}.
 *
 * @example Open after 5 failures or half the calls failing within 30 s
 * ```ts
 * import { CircuitBreaker, type CircuitBreakerOptions, Noop } from "@sluice/sluice";
 *
 * const options: CircuitBreakerOptions = {
 *   failureThreshold: 5,
 *   failureRatio: 0.5,
 *   windowMs: 30_000,
 *   coolDownMs: 10_000,
 *   isFailure: (e) => !(e instanceof TypeError),
 * };
 * new CircuitBreaker(async (m: { payload: string }) => m.payload, new Noop(), options).terminate();
 * ```
 */
export interface CircuitBreakerOptions extends StepOptions {
  /**
   * Open after this many failed calls within `windowMs`.
   * @default 5
   */
  failureThreshold?: number;
  /**
   * Also open when at least `minimumCalls` calls were made within `windowMs` and this
   * share of them failed (0 < ratio <= 1).
   * @default undefined (not used)
   */
  failureRatio?: number;
  /**
   * Calls needed in the window before `failureRatio` applies.
   * @default 10
   */
  minimumCalls?: number;
  /**
   * The sliding window for both rules, in milliseconds (kept in tenths: calls up to 10%
   * older may still count).
   * @default 10000
   */
  windowMs?: number;
  /**
   * How long the breaker stays open before letting one probe through.
   * @default 5000
   */
  coolDownMs?: number;
  /**
   * Wait before retrying a failed message while the breaker is still closed, in
   * milliseconds.
   * @default 100
   */
  retryDelayMs?: number;
  /**
   * Which errors count as the dependency failing. Others fail the step (as in `RunTask`).
   * Default: every error except `InvalidMessage` and `MessageRejected`. Synchronous: a
   * promise fails the step with a `ConfigurationError`.
   */
  isFailure?: (error: unknown) => boolean;
  /**
   * Called on every state change. Default: logs one line with `console.warn`. Synchronous:
   * returning a promise fails the step with a `ConfigurationError` (it is not awaited).
   */
  onStateChange?: (change: CircuitStateChange) => void;
}

const MAX_TRANSITIONS_KEPT = 100;
/** The failure window is kept in this many buckets (a 10% granularity). */
const WINDOW_BUCKETS = 10;

/**
 * Runs `fn` on each message, in order, through a circuit breaker:
 *
 * - **closed**: calls go through. A failed call is counted and the *same* message is
 *   retried after `retryDelayMs` — it is never skipped. After `failureThreshold` failures
 *   (or a `failureRatio` of the calls) within `windowMs`, the breaker **opens**.
 * - **open**: no calls. `submit` rejects, so the processor waits and then pauses the
 *   consumer; nothing is dropped, nothing is committed past the failing message.
 * - **half-open**: after `coolDownMs`, one probe — the waiting message — is let through.
 *   Success closes the breaker; failure opens it again for another cool-down.
 *
 * `fn(message, signal)`: `signal` aborts when the step is terminated, its `join` gives
 * up or it fails, so a hanging call can be cancelled.
 *
 * State changes go to `onStateChange` (default: a `console.warn` line) and are kept in
 * `transitions`; `state`, `failures`, `successes` and `rejected` are counters to export.
 *
 * @example Stop calling a failing service for a while
 * ```ts
 * import { CircuitBreaker, CommitOffsets } from "@sluice/sluice";
 * const pipeline = new CircuitBreaker(
 *   async (m: { payload: string }) => {
 *     const res = await fetch("https://example.com/ingest", { method: "POST", body: m.payload });
 *     if (!res.ok) throw new Error(`ingest answered ${res.status}`);
 *     return res.status;
 *   },
 *   new CommitOffsets(() => {}),
 *   { failureThreshold: 5, coolDownMs: 10_000 },
 * );
 * ```
 */
export class CircuitBreaker<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** Successful calls so far. */
  successes = 0;
  /** Failed calls so far (each retry of a message counts). */
  failures = 0;
  /** Times `submit` was refused (full queue, or open breaker). */
  rejected = 0;
  /** The most recent state changes (up to 100), oldest first. */
  readonly transitions: CircuitStateChange[] = [];
  /** State changes so far, by target state. */
  readonly transitionCounts: Record<CircuitState, number> = {
    closed: 0,
    open: 0,
    "half-open": 0,
  };

  readonly #fn: (message: Message<TIn>, signal: AbortSignal) => TOut | Promise<TOut>;
  readonly #failureThreshold: number;
  readonly #failureRatio: number | undefined;
  readonly #minimumCalls: number;
  readonly #windowMs: number;
  readonly #coolDownMs: number;
  readonly #retryDelayMs: number;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #onStateChange: (change: CircuitStateChange) => void;
  #state: CircuitState = "closed";
  /**
   * Outcomes in the sliding window, in WINDOW_BUCKETS + 1 time buckets of windowMs / 10
   * (a ring; `#bucket` is the absolute index of the newest).
   */
  readonly #ok = new Array<number>(WINDOW_BUCKETS + 1).fill(0);
  readonly #bad = new Array<number>(WINDOW_BUCKETS + 1).fill(0);
  readonly #bucketMs: number;
  #bucket = 0;
  #reopenAt = 0;
  #halfOpen: { promise: Promise<void>; resolve: () => void } | undefined;

  /** Creates the step: `fn` is the call to protect, `next` receives its results. */
  constructor(
    fn: (message: Message<TIn>, signal: AbortSignal) => TOut | Promise<TOut>,
    next: ProcessingStrategy<TOut>,
    options: CircuitBreakerOptions = {},
  ) {
    super("circuit_breaker", next, options);
    if (typeof fn !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": fn must be a function (message) => result`,
      );
    }
    this.#fn = fn;
    const n = this.name;
    this.#failureThreshold = requirePositiveInteger(
      `step "${n}": failureThreshold`,
      options.failureThreshold ?? 5,
    );
    const ratio = options.failureRatio;
    if (ratio !== undefined && !(typeof ratio === "number" && ratio > 0 && ratio <= 1)) {
      throw new ConfigurationError(
        `step "${n}": failureRatio must be a number in (0, 1], got ${String(ratio)}`,
      );
    }
    this.#failureRatio = ratio;
    this.#minimumCalls = requirePositiveInteger(
      `step "${n}": minimumCalls`,
      options.minimumCalls ?? 10,
    );
    this.#windowMs = requireNonNegative(`step "${n}": windowMs`, options.windowMs ?? 10_000);
    if (this.#windowMs === 0) {
      throw new ConfigurationError(`step "${n}": windowMs must be > 0 (milliseconds)`);
    }
    this.#bucketMs = this.#windowMs / WINDOW_BUCKETS;
    this.#bucket = Math.floor(this.clock.now() / this.#bucketMs);
    this.#coolDownMs = requireNonNegative(`step "${n}": coolDownMs`, options.coolDownMs ?? 5_000);
    this.#retryDelayMs = requireNonNegative(
      `step "${n}": retryDelayMs`,
      options.retryDelayMs ?? 100,
    );
    this.#isFailure = options.isFailure ?? (() => true);
    this.#onStateChange = options.onStateChange ??
      ((c) => console.warn(`[sluice] circuit "${c.step}": ${c.from} -> ${c.to} (${c.reason})`));
  }

  /** The breaker's state now. */
  get state(): CircuitState {
    return this.#state;
  }

  /** While open, resolves when the breaker lets a probe through; otherwise queue room. */
  override get ready(): Promise<void> {
    return this.#state === "open" && this.#halfOpen ? this.#halfOpen.promise : super.ready;
  }

  /** Queues a message; rejects while the breaker is open or the queue is full. */
  override submit(message: Message<TIn>): void {
    if (this.#state === "open" && !this.closed) {
      this.rejected++;
      this.recordRejection();
      throw MESSAGE_REJECTED;
    }
    try {
      super.submit(message);
    } catch (e) {
      if (e instanceof MessageRejected) this.rejected++;
      throw e;
    }
  }

  /** Calls `fn` on each message in order, through the breaker. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    let slot = -1; // the window bucket, read from the clock once per chunk
    for (let i = 0; i < batch.length; i++) {
      const m = batch[i];
      if (m.filtered) {
        const f = m as unknown as Message<TOut>;
        if (!this.emit(f)) return this.#slow(batch, i + 1, f);
        continue;
      }
      if (this.#state !== "closed") return this.#slow(batch, i);
      let out: TOut | Promise<TOut>;
      try {
        out = this.#fn(m, this.signal);
      } catch (e) {
        return this.#slow(batch, i, undefined, Promise.reject(e));
      }
      if (out instanceof Promise) return this.#slow(batch, i, undefined, out);
      // Closed, synchronous success: count it without another clock read.
      this.successes++;
      this.#ok[slot < 0 ? (slot = this.#roll()) : slot]++;
      const r = m.replacePayload(out);
      if (!this.emit(r)) return this.#slow(batch, i + 1, r);
    }
  }

  async #slow(
    batch: Message<TIn>[],
    i: number,
    held?: Message<TOut>,
    pending?: Promise<TOut>,
  ): Promise<void> {
    if (held !== undefined) {
      await this.emitWhenRoom(held);
      if (this.abandoned) return;
    }
    if (pending !== undefined) {
      const m = batch[i];
      const r = await this.#settle(pending, m);
      if (this.abandoned) return;
      if (r !== undefined) {
        await this.#deliver(r, m);
        if (this.abandoned) return;
        i++;
      }
    }
    while (i < batch.length) {
      const m = batch[i];
      if (m.filtered) {
        await this.emitWhenRoom(m as unknown as Message<TOut>);
        if (this.abandoned) return;
        i++;
        continue;
      }
      if (!(await this.#admit())) return;
      let call: TOut | Promise<TOut>;
      try {
        call = this.#fn(m, this.signal);
      } catch (e) {
        call = Promise.reject(e);
      }
      const r = await this.#settle(call, m);
      if (this.abandoned) return;
      if (r === undefined) continue; // failed or held: retry the same message
      await this.#deliver(r, m);
      if (this.abandoned) return;
      i++;
    }
  }

  /** Waits until a call may be made: retry delay when closed, cool-down when open. */
  async #admit(): Promise<boolean> {
    for (;;) {
      if (this.abandoned) return false;
      if (this.#state === "open") {
        await this.sleepUntil(this.#reopenAt);
        if (this.abandoned) return false;
        if (this.#state === "open" && this.clock.now() >= this.#reopenAt) {
          this.#transition("half-open", `cool-down of ${this.#coolDownMs} ms over: one probe`);
        }
        continue;
      }
      return true;
    }
  }

  /** Settles one call: a result, an invalid message, or undefined (failed/held; retry). */
  async #settle(
    call: TOut | Promise<TOut>,
    m: Message<TIn>,
  ): Promise<{ ok: TOut } | { invalid: InvalidMessage } | undefined> {
    try {
      const ok = await call;
      this.#succeeded();
      return { ok };
    } catch (e) {
      if (e instanceof InvalidMessage) return { invalid: e };
      if (e instanceof MessageRejected) {
        await this.waitForPoll();
        return undefined;
      }
      this.#failed(e, m);
      if (this.#state === "closed" && this.#retryDelayMs > 0) {
        await this.sleepUntil(this.clock.now() + this.#retryDelayMs);
      }
      return undefined;
    }
  }

  async #deliver(r: { ok: TOut } | { invalid: InvalidMessage }, m: Message<TIn>): Promise<void> {
    if ("invalid" in r) await this.reportInvalid(r.invalid, m);
    else await this.emitWhenRoom(m.replacePayload(r.ok));
  }

  #succeeded(): void {
    this.successes++;
    this.#ok[this.#roll()]++;
    if (this.#state === "half-open") {
      this.#ok.fill(0);
      this.#bad.fill(0);
      this.#transition("closed", "probe succeeded");
    }
  }

  #failed(error: unknown, m: Message<TIn>): void {
    const counts = requireSync(
      this.name,
      "isFailure()",
      "a boolean",
      "Classify the error from its type or fields.",
      this.#isFailure(error),
    );
    if (!counts) throw this.wrapError(error, m);
    this.failures++;
    this.#bad[this.#roll()]++;
    const why = error instanceof Error ? error.message : String(error);
    if (this.#state === "half-open") {
      this.#open(`probe failed: ${why}`);
      return;
    }
    let failed = 0;
    let total = 0;
    for (let i = 0; i <= WINDOW_BUCKETS; i++) {
      failed += this.#bad[i];
      total += this.#bad[i] + this.#ok[i];
    }
    if (failed >= this.#failureThreshold) {
      this.#open(`${failed} failures within ${this.#windowMs} ms; last: ${why}`);
    } else if (
      this.#failureRatio !== undefined && total >= this.#minimumCalls &&
      failed / total >= this.#failureRatio
    ) {
      this.#open(
        `${failed}/${total} calls failed within ${this.#windowMs} ms (ratio >= ${this.#failureRatio}); last: ${why}`,
      );
    }
  }

  /** Moves the window to now (clearing expired buckets); returns the current bucket's slot. */
  #roll(): number {
    const b = Math.floor(this.clock.now() / this.#bucketMs);
    if (b !== this.#bucket) {
      const steps = Math.min(b - this.#bucket, WINDOW_BUCKETS + 1);
      for (let k = 1; k <= steps; k++) {
        const slot = (((this.#bucket + k) % (WINDOW_BUCKETS + 1)) + WINDOW_BUCKETS + 1) %
          (WINDOW_BUCKETS + 1);
        this.#ok[slot] = 0;
        this.#bad[slot] = 0;
      }
      this.#bucket = b;
    }
    const n = WINDOW_BUCKETS + 1;
    return ((b % n) + n) % n;
  }

  #open(reason: string): void {
    this.#reopenAt = this.clock.now() + this.#coolDownMs;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => resolve = r);
    this.#halfOpen = { promise, resolve };
    this.#transition("open", reason);
  }

  #transition(to: CircuitState, reason: string): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    if (from === "open") {
      this.#halfOpen?.resolve();
      this.#halfOpen = undefined;
    }
    const change: CircuitStateChange = { step: this.name, from, to, at: this.clock.now(), reason };
    this.transitionCounts[to]++;
    this.transitions.push(change);
    if (this.transitions.length > MAX_TRANSITIONS_KEPT) this.transitions.shift();
    const r = this.#onStateChange(change) as unknown;
    if (isThenable(r)) {
      // A notification is not awaited: fail the step (through poll) rather than drop it.
      try {
        requireSync(
          this.name,
          "onStateChange()",
          "nothing",
          "Start asynchronous work from it without returning its promise, and handle its errors.",
          r,
        );
      } catch (e) {
        this.fail(e);
      }
    }
  }
}
