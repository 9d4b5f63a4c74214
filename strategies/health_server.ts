/**
 * `HealthServer`: a small HTTP server answering liveness and readiness probes
 * (`GET /healthz`, `GET /readyz`, `GET /status`) from the main loop's heartbeat and a
 * watched processor's status. A `Healthcheck` step beats it, or owns one.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock.ts";
import type { ProcessorStatus } from "../metrics/status.ts";
import { ConfigurationError, SluiceError } from "../errors.ts";
import { requireNonNegative } from "../_validate.ts";
import { type HttpServerHandle, serveHttp } from "../runtime/mod.ts";

/**
 * Options of a {@link HealthServer}.
 *
 * @example A server on a free port with a 10 s liveness timeout
 * ```ts
 * import { HealthServer, type HealthServerOptions } from "@sluice/sluice/health";
 *
 * const options: HealthServerOptions = {
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   livenessTimeoutMs: 10_000,
 *   partitionStallMs: 300_000,
 * };
 * const server = new HealthServer(options);
 * await server.close();
 * ```
 */
export interface HealthServerOptions {
  /**
   * TCP port; 0 picks a free one (read it back from `port`).
   * @default 0
   */
  port?: number;
  /**
   * Interface to listen on.
   * @default "127.0.0.1"
   */
  hostname?: string;
  /**
   * `/healthz` answers 503 once the loop has not beaten for this long. Keep it well above
   * the healthcheck interval and the longest expected pause of the loop (a join on
   * revoke, for example).
   * @default 30000
   */
  livenessTimeoutMs?: number;
  /**
   * Clock for the heartbeat's age.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * The processor to watch (or call {@link HealthServer.watch} later): its loop's
   * iterations count as heartbeats (also between pipelines, during a rebalance), its
   * rebalances get a grace period, its partitions' progress is checked, and `/status`
   * serves its {@link StreamProcessor.status}.
   */
  processor?: HealthSource;
  /**
   * How long a rebalance (a revoke being joined and committed, or waiting for an
   * assignment) may keep the loop from beating before `/healthz` fails, and how long
   * `/readyz` keeps answering 200 "rebalancing" without partitions. Keep it above the
   * processor's `joinTimeoutMs` plus the group's rebalance time (Kafka: up to
   * `rebalanceTimeoutMs`, by default `sessionTimeoutMs`).
   * @default 60000
   */
  rebalanceGraceMs?: number;
  /**
   * A partition with lag whose committed offset has not moved for this long is stalled:
   * `/readyz` answers 503 "partition-stalled" (even while other partitions move). Keep it
   * above the commit interval and the longest expected processing of one batch.
   * 0 turns the check off.
   * @default 120000
   */
  partitionStallMs?: number;
  /**
   * A stalled partition fails `/healthz` too (restart the pod).
   * @default false
   */
  partitionStallFailsLiveness?: boolean;
}

/**
 * What {@link HealthServer} watches: a `StreamProcessor`, or anything with its `status()`.
 *
 * @example Watch a processor
 * ```ts
 * import { CommitOffsets, StreamProcessor } from "@sluice/sluice";
 * import { HealthServer, type HealthSource } from "@sluice/sluice/health";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * const source: HealthSource = new StreamProcessor({
 *   consumer: broker.getConsumer("g"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   handleSignals: false,
 * });
 * const server = new HealthServer({ processor: source, port: 0 });
 * await server.close();
 * ```
 */
export interface HealthSource {
  /** The processor's status now. */
  status(): ProcessorStatus;
}

/**
 * One partition in a {@link HealthStatus}.
 *
 * @example List the stalled partitions
 * ```ts
 * import { HealthServer, type PartitionHealth } from "@sluice/sluice/health";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new HealthServer({ port: 0 });
 * const stalled = (ps: PartitionHealth[]) => ps.filter((p) => p.stalled).map((p) => `${p.topic}/${p.partition}`);
 * assertEquals(stalled(server.readiness().partitions), []); // no processor watched
 * await server.close();
 * ```
 */
export interface PartitionHealth {
  /** Topic name. */
  topic: string;
  /** Partition index. */
  partition: number;
  /** Committed offset (next to read). */
  committed: number;
  /** End offset minus committed offset; null when unknown. */
  lag: number | null;
  /** How long it has had lag with no committed progress, in ms (0: progressing). */
  stalledMs: number;
  /** True once `stalledMs` reached `partitionStallMs`. */
  stalled: boolean;
}

/**
 * What `/healthz` and `/readyz` answer, as JSON.
 *
 * @example Ask for liveness without HTTP
 * ```ts
 * import { HealthServer, type HealthStatus } from "@sluice/sluice/health";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new HealthServer({ port: 0 });
 * server.beat(); // what a Healthcheck step does on every poll
 * const live: HealthStatus = server.liveness();
 * assertEquals([live.status, live.httpStatus], ["ok", 200]);
 * await server.close();
 * ```
 */
export interface HealthStatus {
  /**
   * "ok"; "rebalancing" (within `rebalanceGraceMs`: still 200); or why not:
   * "stuck" (the loop has not advanced for `livenessTimeoutMs`, or a rebalance kept it
   * longer than `rebalanceGraceMs`), "partition-stalled", "not-assigned", "closed".
   */
  status: "ok" | "rebalancing" | "stuck" | "partition-stalled" | "not-assigned" | "closed";
  /** The HTTP status this answer is served with (200 or 503). */
  httpStatus: 200 | 503;
  /** Why, in one sentence. */
  reason: string;
  /** Milliseconds since the loop last beat (or iterated), or null if it never did. */
  lastBeatAgoMs: number | null;
  /** Healthcheck steps (live pipelines) attached. */
  pipelines: number;
  /** How long the current rebalance lasts (ms), or null (or no processor watched). */
  rebalancingForMs: number | null;
  /** Assigned partitions and their progress (empty without a watched processor). */
  partitions: PartitionHealth[];
}

/**
 * A small HTTP server (`Deno.serve`, `Bun.serve` or Node's `http`) answering liveness and
 * readiness probes, with a JSON body ({@link HealthStatus}) saying why:
 *
 * - `GET /healthz`: 200 while the main loop beat (or, with a watched processor, iterated)
 *   within `livenessTimeoutMs` (counted from the server's start before the first beat),
 *   or while a rebalance is within `rebalanceGraceMs` ("rebalancing"); else 503 "stuck";
 * - `GET /readyz`: 200 when, in addition, partitions are assigned (or a rebalance is within
 *   its grace period) and no partition with lag has gone `partitionStallMs` without
 *   committed progress ("partition-stalled"), else 503;
 * - `GET /status`: the watched processor's {@link StreamProcessor.status} (see
 *   {@link HealthServer.watch}).
 *
 * A {@link Healthcheck} step given `http: { port }` starts its own server and closes it
 * on `join`/`terminate`. To keep one endpoint across rebalances (pipelines come and go),
 * create a `HealthServer` once, pass it as `http` to the step of every pipeline, and
 * `close()` it at shutdown.
 *
 * @example Answer liveness probes
 * ```ts
 * import { HealthServer } from "@sluice/sluice/health";
 * const server = new HealthServer({ port: 0, livenessTimeoutMs: 10_000 });
 * server.beat();
 * const res = await fetch(`http://127.0.0.1:${server.port}/healthz`);
 * console.log(res.status); // 200
 * await res.body?.cancel();
 * await server.close();
 * ```
 */
export class HealthServer {
  /**
   * Resolves once the server listens. Deno and Bun listen at once; under Node listening
   * is asynchronous: await this before reading `port` when asking for port 0. Rejects with
   * a {@link ConfigurationError} if the port is taken (also logged, in case nobody awaits).
   */
  readonly ready: Promise<void>;
  /** The interface listened on. */
  readonly hostname: string;
  /** Liveness limit in milliseconds. */
  readonly livenessTimeoutMs: number;
  /** Grace given to a rebalance, in milliseconds. */
  readonly rebalanceGraceMs: number;
  /** Time without committed progress after which a partition with lag is stalled (ms; 0: off). */
  readonly partitionStallMs: number;
  /** Whether a stalled partition fails liveness as well as readiness. */
  readonly partitionStallFailsLiveness: boolean;
  readonly #clock: Clock;
  #source: HealthSource | undefined;
  #iterations = -1;
  readonly #server: HttpServerHandle;
  readonly #startedAt: number;
  #lastBeat: number | undefined;
  #attached = 0;
  #closing: Promise<void> | undefined;

  /** Starts listening at once; throws a {@link ConfigurationError} if the port is taken. */
  constructor(options: HealthServerOptions = {}) {
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ConfigurationError(
        `health server port must be an integer from 0 to 65535, got ${String(port)}`,
      );
    }
    this.hostname = options.hostname ?? "127.0.0.1";
    this.livenessTimeoutMs = requireNonNegative(
      "livenessTimeoutMs",
      options.livenessTimeoutMs ?? 30_000,
    );
    this.rebalanceGraceMs = requireNonNegative(
      "rebalanceGraceMs",
      options.rebalanceGraceMs ?? 60_000,
    );
    this.partitionStallMs = requireNonNegative(
      "partitionStallMs",
      options.partitionStallMs ?? 120_000,
    );
    this.partitionStallFailsLiveness = options.partitionStallFailsLiveness ?? false;
    if (options.processor !== undefined) this.watch(options.processor);
    this.#clock = options.clock ?? systemClock;
    this.#startedAt = this.#clock.now();
    try {
      this.#server = serveHttp({ hostname: this.hostname, port }, (req) => this.#handle(req));
    } catch (e) {
      if (e instanceof SluiceError) throw e; // UnsupportedRuntimeError: no server here
      throw cannotListen(this.hostname, port, e);
    }
    this.ready = this.#server.ready.catch((e) => {
      const error = cannotListen(this.hostname, port, e);
      console.error(`sluice: ${error.message}`);
      throw error;
    });
    this.ready.catch(() => {}); // logged above; awaiting `ready` still rejects
  }

  /** The port actually bound (under Node: once `ready` resolved). */
  get port(): number {
    return this.#server.port;
  }

  /** Records that the main loop is alive (what `Healthcheck.poll` does). */
  beat(): void {
    this.#lastBeat = this.#clock.now();
  }

  /** @internal A pipeline's step is live; returns the function that detaches it. */
  attach(): () => void {
    this.#attached++;
    let attached = true;
    return () => {
      if (attached) {
        attached = false;
        this.#attached--;
      }
    };
  }

  /**
   * Watches `processor` (a `StreamProcessor`): see {@link HealthServerOptions.processor}.
   * Throws a {@link ConfigurationError} when it has no `status()`.
   */
  watch(processor: HealthSource): void {
    if (!processor || typeof processor.status !== "function") {
      throw new ConfigurationError(
        "HealthServer can watch a StreamProcessor (anything with status()); got " +
          String(processor),
      );
    }
    this.#source = processor;
  }

  /** The liveness answer now (`/healthz`). */
  liveness(): HealthStatus {
    return this.#evaluate(false);
  }

  /** The readiness answer now (`/readyz`). */
  readiness(): HealthStatus {
    return this.#evaluate(true);
  }

  #evaluate(ready: boolean): HealthStatus {
    const now = this.#clock.now();
    const status = this.#source?.status();
    // The loop iterating counts as a beat, also between pipelines (no Healthcheck step
    // polls then) and while backpressured (the loop retries, it is not stuck).
    if (status !== undefined && status.iterations !== this.#iterations) {
      if (this.#iterations >= 0) this.#lastBeat = now;
      this.#iterations = status.iterations;
    }
    const lastBeat = this.#lastBeat;
    const beatAge = now - (lastBeat ?? this.#startedAt);
    const rebalancingForMs = status?.rebalancingForMs ?? null;
    const partitions: PartitionHealth[] = (status?.partitions ?? []).map((p) => ({
      ...p,
      stalled: this.partitionStallMs > 0 && p.stalledMs >= this.partitionStallMs,
    }));
    const answer = (
      s: HealthStatus["status"],
      httpStatus: 200 | 503,
      reason: string,
    ): HealthStatus => ({
      status: s,
      httpStatus,
      reason,
      lastBeatAgoMs: lastBeat === undefined ? null : now - lastBeat,
      pipelines: this.#attached,
      rebalancingForMs,
      partitions,
    });
    if (this.#closing) return answer("closed", 503, "the health server was closed");
    const inGrace = rebalancingForMs !== null && rebalancingForMs <= this.rebalanceGraceMs;
    if (beatAge > this.livenessTimeoutMs) {
      if (inGrace) {
        return answer(
          "rebalancing",
          200,
          `rebalancing for ${rebalancingForMs} ms (grace ${this.rebalanceGraceMs} ms); ` +
            `the loop last advanced ${beatAge} ms ago`,
        );
      }
      return answer(
        "stuck",
        503,
        rebalancingForMs !== null
          ? `a rebalance has kept the loop from advancing for ${beatAge} ms (rebalancing for ` +
            `${rebalancingForMs} ms, longer than rebalanceGraceMs ${this.rebalanceGraceMs})`
          : `the loop has not advanced for ${beatAge} ms (livenessTimeoutMs ` +
            `${this.livenessTimeoutMs})`,
      );
    }
    const stalled = partitions.filter((p) => p.stalled);
    if (stalled.length > 0 && (ready || this.partitionStallFailsLiveness)) {
      return answer(
        "partition-stalled",
        503,
        `${stalled.map((p) => `${p.topic}/${p.partition}`).join(", ")}: lag with no ` +
          `committed progress for ${Math.max(...stalled.map((p) => p.stalledMs))} ms ` +
          `(partitionStallMs ${this.partitionStallMs})`,
      );
    }
    if (rebalancingForMs !== null) {
      if (inGrace) {
        return answer(
          "rebalancing",
          200,
          `rebalancing for ${rebalancingForMs} ms (grace ${this.rebalanceGraceMs} ms)`,
        );
      }
      if (ready) {
        return answer(
          "not-assigned",
          503,
          `no partitions assigned for ${rebalancingForMs} ms (longer than rebalanceGraceMs ` +
            `${this.rebalanceGraceMs}); the loop is alive`,
        );
      }
    }
    if (ready && this.#attached === 0 && (status === undefined || status.partitions.length === 0)) {
      return answer("not-assigned", 503, "no pipeline is running (no partitions assigned)");
    }
    return answer(
      "ok",
      200,
      "the loop advances" + (partitions.length > 0 ? " and every partition progresses" : ""),
    );
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Stops listening; resolves when the server has shut down. */
  close(): Promise<void> {
    return this.#closing ??= this.#server.close();
  }

  #handle(req: Request): Response {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const path = new URL(req.url).pathname;
    let status: HealthStatus;
    if (path === "/healthz") status = this.liveness();
    else if (path === "/readyz") status = this.readiness();
    else if (path === "/status" && this.#source !== undefined) {
      return Response.json(this.#source.status());
    } else {
      return new Response(
        `not found: try /healthz or /readyz${this.#source ? " or /status" : ""}\n`,
        { status: 404 },
      );
    }
    return Response.json(status, { status: status.httpStatus });
  }
}

function cannotListen(hostname: string, port: number, e: unknown): ConfigurationError {
  return new ConfigurationError(
    `health server cannot listen on ${hostname}:${port}: ${
      e instanceof Error ? e.message : e
    }; choose another port (0 picks a free one)`,
    { cause: e },
  );
}
