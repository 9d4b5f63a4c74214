/**
 * `Healthcheck`: proves the main loop is alive by touching a file from `poll()` (as
 * Arroyo's does) and, optionally, by answering `GET /healthz` and `GET /readyz`.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock.ts";
import {
  ConfigurationError,
  InvalidMessage,
  type Message,
  requireNonNegative,
  requirePositiveInteger,
  SluiceError,
} from "../types.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type HttpServerHandle, serveHttp, writeTextFileSync } from "../runtime/mod.ts";
import { type StepOptions, StreamStep } from "./bridge.ts";

/** Options of a {@link HealthServer}. */
export interface HealthServerOptions {
  /** TCP port; 0 picks a free one (read it back from `port`). Default 0. */
  port?: number;
  /** Interface to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /**
   * `/healthz` answers 503 once the loop has not beaten for this long. Keep it well above
   * the healthcheck interval and the longest expected pause of the loop (a join on
   * revoke, for example). Default 30 000 ms.
   */
  livenessTimeoutMs?: number;
  /** Clock for the heartbeat's age. Default: the system clock. */
  clock?: Clock;
}

/** What `/healthz` and `/readyz` answer, as JSON. */
export interface HealthStatus {
  /** "ok", or why not: "stale" (no heartbeat lately), "not-assigned", "closed". */
  status: "ok" | "stale" | "not-assigned" | "closed";
  /** Milliseconds since the loop last beat, or null if it never did. */
  lastBeatAgoMs: number | null;
  /** Healthcheck steps (live pipelines) attached. */
  pipelines: number;
}

/**
 * A small HTTP server (`Deno.serve`, `Bun.serve` or Node's `http`) answering liveness and readiness probes:
 *
 * - `GET /healthz`: 200 while the main loop beat within `livenessTimeoutMs` (counted from
 *   the server's start before the first beat), else 503;
 * - `GET /readyz`: 200 when, in addition, a pipeline is attached (partitions assigned) and
 *   not closing, else 503.
 *
 * A {@link Healthcheck} step given `http: { port }` starts its own server and closes it
 * on `join`/`terminate`. To keep one endpoint across rebalances (pipelines come and go),
 * create a `HealthServer` once, pass it as `http` to the step of every pipeline, and
 * `close()` it at shutdown.
 *
 * @example
 * ```ts
 * import { HealthServer } from "@sluice/sluice";
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
  readonly #clock: Clock;
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

  /** The liveness answer now. */
  liveness(): HealthStatus {
    const now = this.#clock.now();
    const since = this.#lastBeat ?? this.#startedAt;
    return {
      status: this.#closing ? "closed" : now - since <= this.livenessTimeoutMs ? "ok" : "stale",
      lastBeatAgoMs: this.#lastBeat === undefined ? null : now - this.#lastBeat,
      pipelines: this.#attached,
    };
  }

  /** The readiness answer now. */
  readiness(): HealthStatus {
    const live = this.liveness();
    if (live.status === "ok" && this.#attached === 0) live.status = "not-assigned";
    return live;
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
    else return new Response("not found: try /healthz or /readyz\n", { status: 404 });
    return Response.json(status, { status: status.status === "ok" ? 200 : 503 });
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

/** Options of a {@link Healthcheck}. */
export interface HealthcheckOptions extends StepOptions {
  /**
   * File to touch (create or overwrite with the current time) from `poll()`. A liveness
   * probe can check its age, e.g. `find /tmp/health -mmin -1`, or delete it and see that it
   * comes back. Optional when `http` is given.
   */
  file?: string;
  /** Least time between two touches of the file (and heartbeats). Default 1000 ms. */
  intervalMs?: number;
  /**
   * Serve `/healthz` and `/readyz`: options for a server this step owns (closed on
   * `join`/`terminate`), or a shared {@link HealthServer} that outlives the pipeline.
   */
  http?: HealthServerOptions | HealthServer;
}

/**
 * Passes every message on unchanged, and on each `poll()` (after polling the next step,
 * which must not throw) touches `file` and beats the HTTP server's heartbeat, at most
 * once per `intervalMs`. The first poll touches at once. Touching happens only from
 * the main loop's `poll()`, so a blocked or dead loop stops touching, and the probes
 * notice.
 *
 * @example
 * ```ts
 * import { CommitOffsets, Healthcheck } from "@sluice/sluice";
 * const step = new Healthcheck(new CommitOffsets(() => {}), {
 *   file: "/tmp/consumer-health",
 *   intervalMs: 1000,
 *   http: { port: 0, livenessTimeoutMs: 30_000 },
 * });
 * console.log(`probes on http://127.0.0.1:${step.port}/healthz`);
 * step.terminate();
 * await step.server?.close();
 * ```
 */
export class Healthcheck<T> extends StreamStep<T, T> {
  /** The file touched, if any. */
  readonly file: string | undefined;
  /** Least time between touches, in milliseconds. */
  readonly intervalMs: number;
  /** The HTTP server, if any. */
  readonly server: HealthServer | undefined;
  /** Times the file was touched (heartbeats). */
  touches = 0;

  readonly #ownsServer: boolean;
  readonly #detach: (() => void) | undefined;
  #lastTouch: number | undefined;

  /** Creates the step (and starts its HTTP server, if asked to). */
  constructor(next: ProcessingStrategy<T>, options: HealthcheckOptions = {}) {
    super("healthcheck", next, options);
    if (!next) {
      throw new ConfigurationError(`step "${this.name}": Healthcheck needs a next step`);
    }
    if (options.file !== undefined && (typeof options.file !== "string" || !options.file)) {
      throw new ConfigurationError(`step "${this.name}": file must be a non-empty path`);
    }
    if (options.file === undefined && options.http === undefined) {
      throw new ConfigurationError(
        `step "${this.name}": give a file to touch, http options, or both`,
      );
    }
    this.file = options.file;
    this.intervalMs = requirePositiveInteger(
      `step "${this.name}": intervalMs`,
      options.intervalMs ?? 1000,
    );
    if (options.http instanceof HealthServer) {
      this.server = options.http;
      this.#ownsServer = false;
    } else if (options.http !== undefined) {
      this.server = new HealthServer({ clock: this.clock, ...options.http });
      this.#ownsServer = true;
    } else this.#ownsServer = false;
    this.#detach = this.server?.attach();
  }

  /** The HTTP server's bound port, if it serves. */
  get port(): number | undefined {
    return this.server?.port;
  }

  /** Passes messages on unchanged. */
  protected process(batch: Message<T>[]): void | Promise<void> {
    return this.emitAll(batch);
  }

  /** Polls the pipeline; if that did not throw, touches the file when it is due. */
  override poll(): void {
    super.poll();
    const now = this.clock.now();
    if (this.#lastTouch !== undefined && now - this.#lastTouch < this.intervalMs) return;
    this.#lastTouch = now;
    if (this.file !== undefined) {
      try {
        writeTextFileSync(this.file, `${new Date(now).toISOString()}\n`);
      } catch (e) {
        if (e instanceof SluiceError) throw e; // UnsupportedRuntimeError: no file system here
        throw new SluiceError(
          `step "${this.name}": cannot touch healthcheck file ${this.file}: ${
            e instanceof Error ? e.message : e
          }; check that its directory exists and is writable`,
          { cause: e },
        );
      }
    }
    this.server?.beat();
    this.touches++;
  }

  /** Stops accepting messages; `/readyz` answers 503 from now on. */
  override close(): void {
    this.#detach?.();
    super.close();
  }

  /** Joins the pipeline, then closes the server this step owns. */
  override async join(timeoutMs?: number): Promise<void> {
    this.#detach?.();
    try {
      await super.join(timeoutMs);
    } catch (e) {
      // After an invalid message the processor joins again: keep serving until then.
      if (!(e instanceof InvalidMessage) && this.#ownsServer) await this.server!.close();
      throw e;
    }
    if (this.#ownsServer) await this.server!.close();
  }

  /** Abandons the pipeline and starts closing the server this step owns (see `server.close()`). */
  override terminate(): void {
    this.#detach?.();
    super.terminate();
    if (this.#ownsServer) this.server!.close();
  }
}
