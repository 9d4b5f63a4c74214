/**
 * `Healthcheck`: proves the main loop is alive by touching a file from `poll()` (as
 * Arroyo's does) and, optionally, by answering `GET /healthz` and `GET /readyz`.
 *
 * @module
 */
import { InvalidMessage, type Message } from "../types.ts";
import { ConfigurationError, SluiceError } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { writeTextFileSync } from "../runtime/mod.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";
import { HealthServer, type HealthServerOptions } from "./health_server.ts";

/**
 * Options of a {@link Healthcheck}.
 *
 * @example Touch a file at most every 5 s and share a server
 * ```ts
 * import { CommitOffsets } from "@sluice/sluice";
 * import { Healthcheck, type HealthcheckOptions, HealthServer } from "@sluice/sluice/health";
 *
 * const server = new HealthServer({ port: 0 }); // outlives the pipelines
 * const options: HealthcheckOptions = {
 *   file: "/tmp/consumer-health",
 *   intervalMs: 5_000,
 *   http: server,
 * };
 * new Healthcheck(new CommitOffsets(() => {}), options).terminate();
 * await server.close();
 * ```
 */
export interface HealthcheckOptions extends StepOptions {
  /**
   * File to touch (create or overwrite with the current time) from `poll()`. A liveness
   * probe can check its age, e.g. `find /tmp/health -mmin -1`, or delete it and see that it
   * comes back. Optional when `http` is given.
   */
  file?: string;
  /**
   * Least time between two touches of the file (and heartbeats), in milliseconds.
   * @default 1000
   */
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
 * @example Touch a file and serve probes
 * ```ts
 * import { CommitOffsets } from "@sluice/sluice";
 * import { Healthcheck } from "@sluice/sluice/health";
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
