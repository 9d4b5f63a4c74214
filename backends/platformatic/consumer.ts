/**
 * A Sluice {@link Consumer} on `npm:@platformatic/kafka`, with incremental rebalancing.
 *
 * The library keeps the group membership (JoinGroup/SyncGroup and heartbeats, or KIP-848's
 * ConsumerGroupHeartbeat); this class fetches by itself, from its own positions, with the
 * library's `fetch()`. A partition is released to the group only once Sluice's `onRevoke`
 * has run (from `poll()`): the request that would release it (the classic protocol's next
 * JoinGroup, or the KIP-848 heartbeat acknowledging the revoke) waits for it.
 *
 * @module
 */
import { Consumer as PltConsumer } from "@platformatic/kafka";
import type { AssignmentCallbacks, Consumer } from "../abstract.ts";
import { sleepUnless, systemClock } from "../../clock.ts";
import { type Deferred, deferred } from "../_deferred.ts";
import { GroupEvents } from "../_group_events.ts";
import { checkAssigned, checkOpen, checkSeekOffsets } from "../_assignment.ts";
import { BrokerValue, type Committable, Partition, type Topic } from "../../types.ts";
import { ClosedError, ConfigurationError, ConsumerError, InvalidStateError } from "../../errors.ts";
import type { KafkaHeaders, KafkaPayload } from "../kafka/payload.ts";
import {
  clientOptions,
  type PlatformaticConsumerOptions,
  type ResolvedPlatformaticConsumerOptions,
  resolvePlatformaticConsumerOptions,
} from "./options.ts";
import {
  failFastOnSecurityErrors,
  isRebalanceError,
  isTransient,
  securityError,
} from "./errors.ts";
import { withTimeout } from "../kafka/_client.ts";

/** Finds a library symbol by its description on `obj` or its prototypes. */
function librarySymbol(obj: object, description: string): symbol {
  for (let p: object | null = obj; p !== null; p = Object.getPrototypeOf(p)) {
    for (const s of Object.getOwnPropertySymbols(p)) if (s.description === description) return s;
  }
  throw new ConsumerError(
    `@platformatic/kafka has no ${description}: this version is not supported by Sluice`,
  );
}

type GetApi = (name: string, callback: (error: unknown, api: unknown) => void) => void;

interface RawRecord {
  offsetDelta: number;
  timestampDelta: bigint;
  key?: Uint8Array | null;
  value?: Uint8Array | null;
  headers: Array<[Uint8Array, Uint8Array]>;
}

interface RawBatch {
  firstOffset: bigint;
  lastOffsetDelta: number;
  firstTimestamp: bigint;
  attributes: number;
  records: RawRecord[];
}

const IS_CONTROL = 0b100000;

/** The age at which the library refreshes its metadata (Kafka's `metadata.max.age.ms`). */
const METADATA_MAX_AGE_MS = 5 * 60_000;

interface Lookup {
  settled: boolean;
  starts?: Map<Partition, number>;
}

/**
 * Counters of a {@link PlatformaticConsumer}.
 *
 * @example Reading a consumer's counters (nothing connects before the first poll)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import {
 *   PlatformaticConsumer,
 *   type PlatformaticConsumerStats,
 * } from "@sluice/sluice/platformatic";
 *
 * const consumer = new PlatformaticConsumer({ brokers: "127.0.0.1:9092", group: "g" });
 * const stats: PlatformaticConsumerStats = consumer.stats; // live: read it again later
 * assertEquals([stats.fetches, stats.revokes, stats.commitsFailed], [0, 0, 0]);
 * ```
 */
export interface PlatformaticConsumerStats {
  /** Fetch requests sent. */
  fetches: number;
  /** Records dropped because they were before the requested offset (a batch's start). */
  recordsBeforePosition: number;
  /** Revokes run (each a set of partitions). */
  revokes: number;
  /** Assignments run. */
  assigns: number;
  /**
   * Commits that failed for a passing reason (broker unreachable or restarting): nothing
   * was committed; the processor sends the offsets again.
   */
  commitsFailed: number;
  /**
   * Errors of the library's background work that were expected and dropped: a rejoin or an
   * offset refresh cut short by `close()`, a failure of the membership stream (never read).
   */
  backgroundErrors: number;
}

/**
 * A consumer-group member on `@platformatic/kafka` (pure TypeScript, maintained), with
 * cooperative-sticky assignment (classic protocol) or KIP-848's consumer protocol (Kafka
 * 4.x): a rebalance revokes only the partitions that move, and `onRevoke` runs for just
 * those, before they are released. Offsets are never committed automatically.
 *
 * @example A stream processor on the consumer (needs a broker)
 * ```ts ignore
 * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { PlatformaticConsumer } from "@sluice/sluice/platformatic";
 *
 * const processor = new StreamProcessor({
 *   consumer: new PlatformaticConsumer({ brokers: "127.0.0.1:9092", group: "example" }),
 *   topics: ["events"],
 *   factory: {
 *     incremental: true,
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.value?.length ?? 0, new CommitOffsets(commit)),
 *   },
 * });
 * await processor.run();
 * ```
 */
export class PlatformaticConsumer implements Consumer<KafkaPayload> {
  /** Counters, for tests and diagnostics. */
  readonly stats: PlatformaticConsumerStats = {
    fetches: 0,
    recordsBeforePosition: 0,
    revokes: 0,
    assigns: 0,
    commitsFailed: 0,
    backgroundErrors: 0,
  };
  readonly #o: ResolvedPlatformaticConsumerOptions;
  #client: PltConsumer | undefined;
  #stream: { close(): Promise<void> } | undefined;
  #fetchPool: { close(): Promise<void> } | undefined;
  #started: Promise<void> | undefined;
  #callbacks: AssignmentCallbacks = {};
  #topics: string[] = [];
  #closed = false;
  #closing = false;
  /** Owned partitions → position (next offset to hand out). */
  readonly #positions = new Map<Partition, number>();
  readonly #paused = new Set<Partition>();
  #staged = new Map<Partition, number>();
  /** Fetched, not yet handed out, per partition (contiguous from the position). */
  readonly #buffered = new Map<Partition, BrokerValue<KafkaPayload>[]>();
  readonly #high = new Map<Partition, number>();
  readonly #epochs = new Map<Partition, number>();
  /** Partitions the library wants released, and who waits for it. */
  #revoke: { partitions: Set<Partition>; done: Deferred } | undefined;
  /** Eager (roundrobin) rebalance under way: no assignment until the group has synced. */
  #assignBlocked = false;
  readonly #events = new GroupEvents();
  /** Resolved on every group event (revoke asked, join, assignment looked up, failure, close). */
  #wake: Deferred = this.#groupWake();
  /** Start offsets of newly assigned partitions, being looked up. */
  #lookup: Lookup | undefined;
  /** Resolved when the library asks for a revoke (renewed once it is taken up). */
  #revokeRequested: Deferred = deferred();
  /** JoinGroup and SyncGroup requests of this member sent and not answered yet. */
  #groupRequests = 0;
  #error: unknown;

  /** Validates `options`; connects on the first `poll()`. */
  constructor(options: PlatformaticConsumerOptions) {
    this.#o = resolvePlatformaticConsumerOptions(options);
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** This member's id in its group ("" before it joined). */
  get memberId(): string {
    return this.#client?.memberId ?? "";
  }

  subscribe(topics: readonly (Topic | string)[], callbacks: AssignmentCallbacks = {}): void {
    this.#checkOpen();
    if (this.#started !== undefined) {
      throw new InvalidStateError("subscribe() was already called; create a new consumer");
    }
    if (!Array.isArray(topics) || topics.length === 0) {
      throw new ConfigurationError("subscribe needs at least one topic");
    }
    this.#topics = topics.map((t) => typeof t === "string" ? t : t.name);
    this.#callbacks = callbacks;
    this.#started = this.#start();
    this.#started.catch(() => {}); // surfaced by poll()
  }

  unsubscribe(): void {
    this.#checkOpen();
    throw new InvalidStateError(
      "PlatformaticConsumer cannot unsubscribe and stay open; close() it (it leaves the group)",
    );
  }

  rebalancePending(): boolean {
    return this.#revoke !== undefined;
  }

  /**
   * Calls `listener` when a revoke is asked for, the group is joined, new partitions'
   * offsets are looked up, the membership fails, or the consumer closes (see `Consumer`).
   */
  onGroupEvent(listener: () => void): () => void {
    return this.#events.listen(listener);
  }

  /** A wake-up of `poll()` that also tells the group-event listeners (see `#wake`). */
  #groupWake(): Deferred {
    const wake = deferred();
    const resolve = wake.resolve;
    wake.resolve = () => {
      resolve();
      this.#events.emit();
    };
    return wake;
  }

  async poll(timeoutMs = 0): Promise<BrokerValue<KafkaPayload>[]> {
    this.#checkOpen();
    if (this.#started === undefined) {
      throw new InvalidStateError("poll() before subscribe()");
    }
    await this.#started;
    if (this.#error !== undefined) throw this.#error;
    await this.#rebalance();
    let out = this.#take();
    if (out.length > 0 || this.#closed) return out;
    await this.#fetch(timeoutMs);
    await this.#rebalance();
    out = this.#take();
    return out;
  }

  pause(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "pause");
    for (const p of partitions) this.#paused.add(p);
  }

  resume(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "resume");
    for (const p of partitions) this.#paused.delete(p);
  }

  paused(): Partition[] {
    return [...this.#paused];
  }

  tell(): Map<Partition, number> {
    return new Map(this.#positions);
  }

  seek(offsets: ReadonlyMap<Partition, number>): void {
    this.#checkOpen();
    this.#checkAssigned([...offsets.keys()], "seek");
    checkSeekOffsets(offsets);
    for (const [p, o] of offsets) {
      this.#positions.set(p, o);
      this.#buffered.delete(p); // fetched from the old position
    }
  }

  stageOffsets(offsets: Committable): void {
    for (const [p, o] of offsets) this.#staged.set(p, o);
  }

  async commitOffsets(): Promise<Map<Partition, number>> {
    this.#checkOpen();
    const staged = this.#staged;
    this.#staged = new Map();
    if (staged.size === 0) return new Map();
    for (const [p, o] of staged) {
      if (!this.#positions.has(p)) {
        throw new ConsumerError(
          `cannot commit ${p}@${o}: partition is not assigned to ${this.memberId} ` +
            "(it was revoked or never assigned); commit inside onRevoke before releasing it",
        );
      }
    }
    if (this.#groupRequests > 0) {
      // An OffsetCommit sent now would be answered after the JoinGroup or SyncGroup ahead of
      // it on the connection, and carry the generation before it: ILLEGAL_GENERATION, on
      // which the library drops every partition of this member (it rejoins owning none, and
      // the group hands them to others). Nothing is committed: the processor sends the
      // offsets again with its next commit.
      return new Map();
    }
    try {
      const commit = this.#client!.commit({
        offsets: [...staged].map(([p, o]) => ({
          topic: p.topic.name,
          partition: p.index,
          offset: BigInt(o),
          leaderEpoch: this.#epochs.get(p) ?? -1,
        })),
      });
      commit.catch(() => {});
      // A commit the group refuses makes the library rejoin before it answers, and that
      // rejoin may wait for a revoke from poll(), which waits for this commit: when a revoke
      // is requested meanwhile, nothing is reported committed (the processor keeps the
      // offsets and commits them again, inside onRevoke).
      const done = await Promise.race([
        commit.then(() => true),
        this.#revokeRequested.promise.then(() => false),
      ]);
      return done ? staged : new Map();
    } catch (e) {
      if (isRebalanceError(e)) return new Map(); // kept by the processor and sent again
      if (securityError(e, this.#o) === undefined && isTransient(e)) {
        // The broker is away (restarting) and the library's retries ran out: nothing was
        // committed; the processor keeps the offsets and sends them with its next commit.
        this.stats.commitsFailed++;
        return new Map();
      }
      throw securityError(e, this.#o) ??
        new ConsumerError(`commit failed: ${describe(e)}`, { cause: e });
    }
  }

  endOffset(partition: Partition): number | undefined {
    return this.#high.get(partition);
  }

  /**
   * The end offsets (high watermarks) of `partitions`, asked of the broker now (one
   * ListOffsets request). Used by `StreamProcessor.run({ untilCaughtUp: true })`.
   */
  async endOffsets(partitions: readonly Partition[]): Promise<Map<Partition, number>> {
    const client = this.#client;
    if (client === undefined || this.#closed || this.#closing || this.#error !== undefined) {
      throw new ClosedError(
        `consumer ${this.memberId} is not connected (closed, failed, or not started yet: ` +
          "subscribe first)",
      );
    }
    const out = new Map<Partition, number>();
    if (partitions.length === 0) return out;
    const topics = [...new Set(partitions.map((p) => p.topic.name))];
    let offsets: Map<string, bigint[]>;
    try {
      offsets = await client.listOffsets({ topics, timestamp: -1n });
    } catch (e) {
      throw securityError(e, this.#o) ??
        new ConsumerError(
          `could not read the end offsets of ${topics.join(", ")}: ${describe(e)}`,
          {
            cause: e,
          },
        );
    }
    for (const p of partitions) {
      const end = offsets.get(p.topic.name)?.[p.index];
      if (end === undefined) continue;
      const high = Number(end);
      if (high >= (this.#high.get(p) ?? -1)) this.#high.set(p, high);
      out.set(p, high);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    try {
      if (this.#started !== undefined) {
        await this.#started.catch(() => {});
        const owned = [...this.#positions.keys()];
        if (owned.length > 0 && this.#error === undefined) await this.#runRevoke(owned);
      }
    } finally {
      this.#closed = true;
      this.#revoke?.done.resolve();
      this.#revoke = undefined;
      this.#wake.resolve();
      try {
        await this.#stream?.close();
      } catch { /* closing anyway */ }
      try {
        await this.#fetchPool?.close();
      } catch { /* idem */ }
      try {
        await this.#client?.close(true);
      } catch { /* idem */ }
    }
  }

  // ---------------------------------------------------------------------------------------

  async #start(): Promise<void> {
    const o = this.#o;
    const client = new PltConsumer({
      ...clientOptions(o),
      groupId: o.group,
      autocommit: false,
      // The library refreshes its metadata (5 s old by default) on its own connections, where
      // a Metadata request waits behind a JoinGroup the broker holds until the whole group has
      // rejoined: every poll's fetch would stall with it. Refreshed as Kafka's clients do
      // (every 5 minutes), and after a failed fetch (a moved leader).
      metadataMaxAge: METADATA_MAX_AGE_MS,
      maxWaitTime: o.maxWaitTimeMs,
      minBytes: o.minBytes,
      maxBytes: o.maxBytes,
      maxBytesPerPartition: o.maxBytesPerPartition,
      ...(o.groupProtocol === "consumer"
        ? {
          groupProtocol: "consumer" as const,
          // The broker owns the session timeout under KIP-848; the library still checks
          // its own against the rebalance timeout.
          sessionTimeout: o.sessionTimeoutMs,
          rebalanceTimeout: Math.max(o.rebalanceTimeoutMs, o.sessionTimeoutMs),
          ...(o.remoteAssignor ? { groupRemoteAssignor: o.remoteAssignor } : {}),
        }
        : {
          sessionTimeout: o.sessionTimeoutMs,
          heartbeatInterval: o.heartbeatIntervalMs,
          rebalanceTimeout: Math.max(o.rebalanceTimeoutMs, o.sessionTimeoutMs),
          protocols: [{ name: o.assignor, version: 1 }],
        }),
      // deno-lint-ignore no-explicit-any
    } as any);
    this.#client = client;
    // The library reports a rejoin that failed (after a heartbeat said the group rebalances)
    // as an `error` event: without a listener, that event would crash the process.
    client.on("error", (e: unknown) => this.#backgroundError(e, "rejoining the group"));
    failFastOnSecurityErrors(client, o);
    // Fetches get connections of their own: Kafka answers the requests of one connection in
    // order, so on the client's connections a fetch would wait behind a JoinGroup the broker
    // holds until the whole group has rejoined (kept partitions would stall meanwhile).
    const createPool = librarySymbol(client, "plt.kafka.base.createConnectionPool");
    this.#fetchPool = (client as unknown as Record<symbol, () => { close(): Promise<void> }>)
      [createPool]();
    this.#hook(client);
    client.on("consumer:group:join", () => {
      this.#assignBlocked = false;
      this.#wake.resolve();
    });
    const brokers = o.brokers.join(",");
    try {
      // The stream is never read: it makes the library join (both protocols) and keep the
      // membership; Sluice fetches by itself.
      const consuming = client.consume({
        topics: this.#topics,
        mode: "committed",
        fallbackMode: o.initialOffset,
        autocommit: false,
      });
      // The stream refreshes its offsets after each join and is destroyed when that fails
      // (a request cut short by close(), say): an `error` event nothing would listen to.
      // Sluice reads nothing from it: its failures are dropped, even after a timeout here.
      consuming.then(
        (stream) => stream.on("error", () => this.stats.backgroundErrors++),
        () => {},
      );
      this.#stream = await withTimeout(
        consuming as Promise<{ close(): Promise<void> }>,
        o.connectTimeoutMs + o.rebalanceTimeoutMs,
        () =>
          new ConsumerError(
            `could not join group "${o.group}" at ${brokers} within ` +
              `${o.connectTimeoutMs + o.rebalanceTimeoutMs} ms; check that the broker ` +
              "runs, that `brokers` names it and that the topics exist",
          ),
      );
    } catch (e) {
      this.#error = securityError(e, o) ??
        (e instanceof ConsumerError
          ? e
          : new ConsumerError(`could not join group "${o.group}" at ${brokers}: ${describe(e)}`, {
            cause: e,
          }));
      try {
        await client.close(true);
      } catch { /* failing anyway */ }
      throw this.#error;
    }
  }

  /**
   * Makes the requests that release partitions wait for Sluice's revoke: the classic
   * protocol's JoinGroup (which follows a cooperative SyncGroup that took partitions away,
   * or starts an eager rebalance) and KIP-848's heartbeat (which acknowledges a revoke).
   */
  #hook(client: PltConsumer): void {
    const key = librarySymbol(client, "plt.kafka.base.getApi");
    const target = client as unknown as Record<symbol, GetApi>;
    const original = target[key].bind(client);
    target[key] = (name, callback) => {
      if (name === "JoinGroup" || name === "SyncGroup") callback = this.#counted(callback);
      if (name === "JoinGroup" || name === "ConsumerGroupHeartbeat") {
        const eager = name === "JoinGroup" && this.#o.groupProtocol === "classic" &&
          this.#o.assignor === "roundrobin";
        const release = eager ? [...this.#positions.keys()] : this.#notAssigned();
        if (eager) this.#assignBlocked = true;
        if (release.length > 0 && !this.#closed) {
          this.#requestRevoke(release).then(() => original(name, callback)).catch((e) =>
            this.#backgroundError(e, `sending ${name}`)
          );
          return;
        }
      }
      original(name, callback);
    };
  }

  /** `callback` of getApi, with the API it gets counted in #groupRequests while it runs. */
  #counted(callback: (error: unknown, api: unknown) => void) {
    return (error: unknown, api: unknown) => {
      if (error || typeof api !== "function") return callback(error, api);
      const send = api as (...args: unknown[]) => void;
      const counted = (...args: unknown[]) => {
        const done = args.pop() as (error: unknown, response: unknown) => void;
        this.#groupRequests++;
        let answered = false;
        const answer = () => {
          if (!answered) this.#groupRequests--;
          answered = true;
        };
        try {
          send(...args, (e: unknown, response: unknown) => {
            answer();
            done(e, response);
          });
        } catch (e) {
          answer();
          throw e;
        }
      };
      callback(null, Object.assign(counted, send));
    };
  }

  /**
   * A failure of the library's background work: dropped (counted) once `close()` has begun,
   * else kept and thrown by the next `poll()` (this member has lost its group membership).
   */
  #backgroundError(e: unknown, what: string): void {
    if (this.#closing || this.#closed || this.#error !== undefined) {
      this.stats.backgroundErrors++;
      return;
    }
    this.#error = securityError(e, this.#o) ??
      new ConsumerError(
        `consumer ${this.memberId} of group "${this.#o.group}" failed ${what}: ${describe(e)}`,
        { cause: e },
      );
    this.#wake.resolve();
  }

  /** Owned partitions the library's current assignment no longer has. */
  #notAssigned(): Partition[] {
    const assignments = this.#client?.assignments;
    if (assignments == null) return [];
    const keep = new Set<Partition>();
    for (const a of assignments) for (const i of a.partitions) keep.add(Partition.of(a.topic, i));
    return [...this.#positions.keys()].filter((p) => !keep.has(p));
  }

  #requestRevoke(partitions: Partition[]): Promise<void> {
    if (this.#revoke === undefined) {
      this.#revoke = { partitions: new Set(partitions), done: deferred() };
    } else for (const p of partitions) this.#revoke.partitions.add(p);
    this.#wake.resolve();
    this.#revokeRequested.resolve();
    return this.#revoke.done.promise;
  }

  /** Runs a requested revoke, then assigns what the library assigned and Sluice lacks. */
  async #rebalance(): Promise<void> {
    const revoke = this.#revoke;
    if (revoke !== undefined) {
      this.#revoke = undefined;
      this.#revokeRequested = deferred();
      try {
        await this.#runRevoke([...revoke.partitions].filter((p) => this.#positions.has(p)));
      } finally {
        revoke.done.resolve();
      }
    }
    if (this.#assignBlocked || this.#revoke !== undefined) return;
    const assigned = this.#libraryAssignment();
    if (assigned === undefined) return;
    const pending = this.#lookup;
    if (pending !== undefined) {
      // Reading committed offsets is a group request the library may hold behind a rejoin
      // (which may itself wait for a revoke from poll()): it runs in the background while
      // the owned partitions go on being fetched, and is taken up once it has answered.
      if (!pending.settled) return;
      this.#lookup = undefined;
      const starts = new Map<Partition, number>();
      for (const [p, o] of pending.starts ?? []) {
        if (assigned.has(p) && !this.#positions.has(p)) starts.set(p, o);
      }
      if (starts.size === 0) return; // failed or moved meanwhile: looked up again next poll
      for (const [p, o] of starts) this.#positions.set(p, o);
      this.stats.assigns++;
      await this.#callbacks.onAssign?.(starts);
      return;
    }
    const added = [...assigned].filter((p) => !this.#positions.has(p));
    if (added.length === 0) return;
    const lookup: Lookup = { settled: false };
    this.#lookup = lookup;
    this.#startOffsets(added).then(
      (starts) => lookup.starts = starts,
      () => {},
    ).finally(() => {
      lookup.settled = true;
      this.#wake.resolve();
    });
  }

  /** The partitions the library has assigned to this member (undefined: not known yet). */
  #libraryAssignment(): Set<Partition> | undefined {
    const assignments = this.#client?.assignments;
    if (assignments == null) return undefined;
    const out = new Set<Partition>();
    for (const a of assignments) for (const i of a.partitions) out.add(Partition.of(a.topic, i));
    return out;
  }

  async #runRevoke(partitions: Partition[]): Promise<void> {
    if (partitions.length === 0) return;
    this.stats.revokes++;
    try {
      await this.#callbacks.onRevoke?.(partitions);
    } finally {
      for (const p of partitions) {
        this.#positions.delete(p);
        this.#paused.delete(p);
        this.#staged.delete(p);
        this.#buffered.delete(p);
      }
    }
  }

  /** Committed offsets of `partitions`, else the earliest or latest offset. */
  async #startOffsets(partitions: Partition[]): Promise<Map<Partition, number>> {
    const client = this.#client!;
    const byTopic = new Map<string, number[]>();
    for (const p of partitions) {
      const list = byTopic.get(p.topic.name) ?? [];
      list.push(p.index);
      byTopic.set(p.topic.name, list);
    }
    const committed = await client.listCommittedOffsets({
      topics: [...byTopic].map(([topic, ps]) => ({ topic, partitions: ps })),
    });
    const out = new Map<Partition, number>();
    const missing: Partition[] = [];
    for (const p of partitions) {
      const o = committed.get(p.topic.name)?.[p.index];
      if (o !== undefined && o >= 0n) out.set(p, Number(o));
      else missing.push(p);
    }
    if (missing.length > 0) {
      const topics = [...new Set(missing.map((p) => p.topic.name))];
      const offsets = await client.listOffsets({
        topics,
        timestamp: this.#o.initialOffset === "earliest" ? -2n : -1n,
      });
      for (const p of missing) out.set(p, Number(offsets.get(p.topic.name)?.[p.index] ?? 0n));
    }
    return out;
  }

  /** Fetches every owned, unpaused partition without buffered messages, from its position. */
  async #fetch(timeoutMs: number): Promise<void> {
    const client = this.#client!;
    const wanted = [...this.#positions.keys()].filter((p) =>
      !this.#paused.has(p) && !(this.#buffered.get(p)?.length)
    );
    if (wanted.length === 0) {
      await this.#idle(timeoutMs);
      return;
    }
    let metadata: Awaited<ReturnType<PltConsumer["metadata"]>>;
    try {
      metadata = await client.metadata({ topics: this.#topics });
    } catch (e) {
      // The broker is away (restarting, a leader moving): the library has retried already;
      // nothing is fetched this time, and the next poll asks again.
      if (securityError(e, this.#o) === undefined && (isRebalanceError(e) || isTransient(e))) {
        if (isTransient(e)) client.clearMetadata();
        return;
      }
      throw securityError(e, this.#o) ??
        new ConsumerError(`fetch failed (metadata): ${describe(e)}`, { cause: e });
    }
    const byNode = new Map<number, Map<string, { id: string; parts: Partition[] }>>();
    const topicNames = new Map<string, string>();
    for (const p of wanted) {
      const tm = metadata.topics.get(p.topic.name);
      if (tm === undefined) continue;
      const pm = tm.partitions[p.index];
      if (pm === undefined) continue;
      this.#epochs.set(p, pm.leaderEpoch);
      topicNames.set(tm.id, p.topic.name);
      let node = byNode.get(pm.leader);
      if (node === undefined) byNode.set(pm.leader, node = new Map());
      let t = node.get(p.topic.name);
      if (t === undefined) node.set(p.topic.name, t = { id: tm.id, parts: [] });
      t.parts.push(p);
    }
    const requested = new Map(wanted.map((p) => [p, this.#positions.get(p)!]));
    const maxWait = Math.max(0, Math.min(timeoutMs, this.#o.maxWaitTimeMs));
    await Promise.all([...byNode].map(async ([node, topics]) => {
      this.stats.fetches++;
      const response = await client.fetch({
        node,
        maxWaitTime: maxWait,
        minBytes: this.#o.minBytes,
        maxBytes: this.#o.maxBytes,
        connectionPool: this.#fetchPool,
        topics: [...topics.values()].map((t) => ({
          topicId: t.id,
          partitions: t.parts.map((p) => ({
            partition: p.index,
            fetchOffset: BigInt(requested.get(p)!),
            partitionMaxBytes: this.#o.maxBytesPerPartition,
            currentLeaderEpoch: this.#epochs.get(p) ?? -1,
            lastFetchedEpoch: -1,
            logStartOffset: -1n,
          })),
        })),
        // deno-lint-ignore no-explicit-any
      } as any);
      for (const tr of response.responses) {
        const topic = topicNames.get(tr.topicId);
        if (topic === undefined) continue;
        for (const pr of tr.partitions) {
          const p = Partition.of(topic, pr.partitionIndex);
          this.#high.set(p, Number(pr.highWatermark));
          const from = requested.get(p);
          // Taken only if still owned at the position it was fetched from (no seek,
          // revoke or pause meanwhile): contiguity by construction.
          if (from === undefined || this.#positions.get(p) !== from) continue;
          this.#accept(p, from, (pr.records ?? []) as unknown as RawBatch[]);
        }
      }
    })).catch((e) => {
      if (isRebalanceError(e) || isTransient(e)) {
        // Fetched again on the next poll, from fresh metadata when a leader may have moved.
        if (isTransient(e)) client.clearMetadata();
        return;
      }
      throw securityError(e, this.#o) ??
        new ConsumerError(`fetch failed: ${describe(e)}`, { cause: e });
    });
  }

  #accept(p: Partition, from: number, batches: RawBatch[]): void {
    if (batches.length === 0) return;
    const out: BrokerValue<KafkaPayload>[] = [];
    for (const batch of batches) {
      if (batch.attributes & IS_CONTROL) continue;
      const base = Number(batch.firstOffset);
      const ts = batch.firstTimestamp;
      for (const r of batch.records) {
        const offset = base + r.offsetDelta;
        if (offset < from) {
          this.stats.recordsBeforePosition++;
          continue;
        }
        let headers: KafkaHeaders | undefined;
        if (r.headers.length > 0) {
          headers = {};
          for (const [k, v] of r.headers) headers[new TextDecoder().decode(k)] = v as never;
        }
        const timestamp = Number(ts + r.timestampDelta);
        const payload: KafkaPayload = {
          key: r.key ?? null,
          value: r.value ?? null,
          headers,
          timestamp,
        };
        out.push(new BrokerValue(payload, p, offset, timestamp));
      }
    }
    const last = batches[batches.length - 1];
    const next = Number(last.firstOffset) + last.lastOffsetDelta + 1;
    if (out.length > 0) this.#buffered.set(p, out);
    // Skipped records (control batches, compaction) move the position past them only once
    // every message before them was handed out: the position is updated by #take.
    if (out.length === 0 && next > from) this.#positions.set(p, next);
    else if (out.length > 0) this.#tail.set(p, next);
  }

  /** Per partition, the position after its buffered messages (past trailing skipped records). */
  readonly #tail = new Map<Partition, number>();

  /** Hands out buffered messages of unpaused partitions, at most maxPollMessages. */
  #take(): BrokerValue<KafkaPayload>[] {
    const max = this.#o.maxPollMessages;
    const out: BrokerValue<KafkaPayload>[] = [];
    for (const [p, list] of this.#buffered) {
      if (this.#paused.has(p) || !this.#positions.has(p)) continue;
      const n = Math.min(list.length, max - out.length);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) out.push(list[i]);
      if (n === list.length) {
        this.#buffered.delete(p);
        this.#positions.set(p, this.#tail.get(p) ?? list[n - 1].offset + 1);
        this.#tail.delete(p);
      } else {
        this.#buffered.set(p, list.slice(n));
        this.#positions.set(p, list[n - 1].offset + 1);
      }
    }
    return out;
  }

  async #idle(timeoutMs: number): Promise<void> {
    if (timeoutMs <= 0) return;
    this.#wake = this.#groupWake();
    await sleepUnless(systemClock, timeoutMs, this.#wake.promise);
  }

  #checkOpen(): void {
    checkOpen(this.#closed, `PlatformaticConsumer of group "${this.#o.group}"`);
  }

  #checkAssigned(partitions: readonly Partition[], what: string): void {
    checkAssigned(partitions, this.#positions.keys(), what, this.memberId);
  }
}

function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const errors = (e as { errors?: unknown[] }).errors;
  const inner = Array.isArray(errors) && errors.length > 0
    ? ` (${errors.map((x) => x instanceof Error ? x.message : String(x)).join("; ")})`
    : "";
  return `${e.message}${inner}`;
}

// Topic is imported for the public signature of subscribe().
export type { Topic };
