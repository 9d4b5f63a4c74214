/**
 * Test doubles and utilities shared by the test suites (not part of the library).
 */
import { MESSAGE_REJECTED, MessageRejected } from "../../errors.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import {
  BrokerValue,
  type Committable,
  FILTERED_PAYLOAD,
  type Message,
  Partition,
} from "../../types.ts";

/** `Partition.of("t", index)`. */
export const P0: Partition = Partition.of("contract-topic", 0);
export const P1: Partition = Partition.of("contract-topic", 1);

/** A broker message with `payload` at `offset` of `partition` (default P0). */
export function brokerMessage<T>(payload: T, offset: number, partition = P0): Message<T> {
  // What a consumer polls, and what the processor submits: a BrokerValue is a Message.
  return new BrokerValue(payload, partition, offset, 1_700_000_000_000 + offset);
}

/** Records every commit call; `latest` is the highest offset seen per partition. */
export class CommitRecorder {
  readonly calls: Array<{ offsets: Map<Partition, number>; force: boolean }> = [];
  readonly latest = new Map<Partition, number>();
  readonly commit: Commit = (offsets: Committable, force = false) => {
    if (offsets.size === 0 && !force) return;
    this.calls.push({ offsets: new Map(offsets), force });
    for (const [p, o] of offsets) {
      if ((this.latest.get(p) ?? -1) < o) this.latest.set(p, o);
    }
  };
}

/**
 * A next step that rejects while closed, and otherwise forwards to `inner` (or records).
 * Its `ready` resolves when it is opened.
 */
export class Gate<T> implements ProcessingStrategy<T> {
  open: boolean;
  readonly received: Message<T>[] = [];
  closed = false;
  terminated = false;
  joined = false;
  #ready: Promise<void>;
  #release!: () => void;

  constructor(open = true, readonly inner?: ProcessingStrategy<T>) {
    this.open = open;
    this.#ready = open ? Promise.resolve() : new Promise((r) => this.#release = r);
  }

  setOpen(open: boolean): void {
    if (open === this.open) return;
    this.open = open;
    if (open) this.#release();
    else this.#ready = new Promise((r) => this.#release = r);
  }

  get ready(): Promise<void> {
    return this.inner && this.open ? this.inner.ready : this.#ready;
  }

  submit(message: Message<T>): void {
    if (!this.open) throw MESSAGE_REJECTED;
    if (this.inner) this.inner.submit(message);
    this.received.push(message);
  }
  poll(): void {
    this.inner?.poll();
  }
  close(): void {
    this.closed = true;
    this.inner?.close();
  }
  async join(timeoutMs?: number): Promise<void> {
    this.joined = true;
    await this.inner?.join(timeoutMs);
  }
  terminate(): void {
    this.terminated = true;
    this.inner?.terminate();
  }
}

/** Awaits `condition()` becoming true, checking after each macrotask, failing after `ms` (wall time). */
export async function waitFor(
  condition: () => boolean,
  what: string,
  ms = 5000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Resolves with "resolved" if `p` settles within `ms` wall-clock milliseconds, else "pending". */
export async function settlesWithin(
  p: Promise<unknown>,
  ms: number,
): Promise<"resolved" | "pending"> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"pending">((r) => id = setTimeout(() => r("pending"), ms));
  const r = await Promise.race([p.then(() => "resolved" as const), timeout]);
  clearTimeout(id);
  return r;
}

/** Lets queued microtasks and one macrotask run. */
export function tick(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** Polls `step` until `poll()` throws (failing after `ms`); returns what it threw. */
export async function pollError(
  step: { poll(): void },
  what = "poll() to throw",
  ms = 5000,
): Promise<unknown> {
  let error: unknown;
  await waitFor(
    () => {
      try {
        step.poll();
        return false;
      } catch (e) {
        error = e;
        return true;
      }
    },
    what,
    ms,
  );
  return error;
}

/**
 * A next step that records what it receives and rejects the submit attempts for which
 * `reject(attempt)` is true. Its `ready` is always resolved (room returns at once).
 */
export class Sink<T> implements ProcessingStrategy<T> {
  readonly received: Message<T>[] = [];
  attempts = 0;
  rejections = 0;
  constructor(readonly reject: (attempt: number) => boolean = () => false) {}
  get ready(): Promise<void> {
    return Promise.resolve();
  }
  submit(m: Message<T>): void {
    if (this.reject(this.attempts++)) {
      this.rejections++;
      throw MESSAGE_REJECTED;
    }
    this.received.push(m);
  }
  poll(): void {}
  close(): void {}
  join(): Promise<void> {
    return Promise.resolve();
  }
  terminate(): void {}
  /** Highest offset per partition over everything received (what CommitOffsets would commit). */
  committed(): Map<Partition, number> {
    const out = new Map<Partition, number>();
    for (const m of this.received) {
      for (const [p, o] of m.committable) if ((out.get(p) ?? -1) < o) out.set(p, o);
    }
    return out;
  }
}

/** Submits every message in order, polling and awaiting `ready` whenever the step rejects. */
export async function feed<T>(step: ProcessingStrategy<T>, messages: Message<T>[]): Promise<void> {
  for (const m of messages) {
    for (;;) {
      try {
        step.submit(m);
        break;
      } catch (e) {
        if (!(e instanceof MessageRejected)) throw e;
        step.poll();
        await step.ready;
      }
    }
  }
}

/**
 * A next step that rejects whenever `reject()` says so and otherwise forwards to `inner`,
 * reporting each accepted message to `onAccept`.
 */
export class Flaky<T> implements ProcessingStrategy<T> {
  constructor(
    readonly inner: ProcessingStrategy<T>,
    readonly reject: () => boolean,
    readonly onAccept: (m: Message<T>) => void = () => {},
  ) {}
  submit(m: Message<T>): void {
    if (this.reject()) throw MESSAGE_REJECTED;
    this.inner.submit(m);
    this.onAccept(m);
  }
  poll(): void {
    this.inner.poll();
  }
  close(): void {
    this.inner.close();
  }
  join(timeoutMs?: number): Promise<void> {
    return this.inner.join(timeoutMs);
  }
  terminate(): void {
    this.inner.terminate();
  }
  get ready(): Promise<void> {
    return this.inner.ready;
  }
}

/** A filtered marker (the payload steps pass on untouched) at `offset` of `partition`. */
export const filtered = <T = number>(offset: number, partition: Partition = P0): Message<T> =>
  brokerMessage(FILTERED_PAYLOAD as unknown as T, offset, partition);

/** A committable as a plain object (`{ "topic/0": 5 }`), for `assertEquals`. */
export const offsets = (c: Committable): Record<string, number> =>
  Object.fromEntries([...c].map(([p, o]) => [String(p), o]));
