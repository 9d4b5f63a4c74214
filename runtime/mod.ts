/**
 * The runtime layer: everything Sluice needs that web standards do not give (process
 * signals, a synchronous file write for the health file, an HTTP server, module workers
 * outside the Web Worker API, the environment), for Deno, Node (≥ 20.16), Bun, browsers and
 * edge runtimes. The core (contract, strategies, processor, in-memory broker, metrics)
 * calls only these functions and web-standard APIs; `scripts/check_core.ts` enforces it.
 *
 * Where a runtime lacks a facility, the function throws an {@link UnsupportedRuntimeError}
 * that names the runtime, the feature and what to do instead.
 *
 * This module reads the runtimes' globals through `globalThis` with its own minimal types,
 * so it type-checks with the web-standard libraries only (no Deno, Node or Bun types).
 *
 * @module
 */
import { SluiceError } from "../errors.ts";

/**
 * The runtimes Sluice tells apart.
 *
 * @example Choosing by runtime
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { detectRuntime, type RuntimeName } from "@sluice/sluice/runtime";
 *
 * const runtime: RuntimeName = detectRuntime();
 * const canListen = runtime === "deno" || runtime === "node" || runtime === "bun";
 * assertEquals([runtime, canListen], ["deno", true]); // under deno test
 * ```
 */
export type RuntimeName = "deno" | "node" | "bun" | "workerd" | "browser" | "unknown";

/**
 * A feature of the runtime layer, as named in {@link UnsupportedRuntimeError}.
 *
 * @example Telling which feature was missing
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { type RuntimeFeature, UnsupportedRuntimeError } from "@sluice/sluice/runtime";
 *
 * const missing = (e: unknown): RuntimeFeature | undefined =>
 *   e instanceof UnsupportedRuntimeError ? e.feature : undefined;
 * const e = new UnsupportedRuntimeError("workerd", "workers", "use RunTaskAsync");
 * assertEquals(missing(e), "workers");
 * ```
 */
export type RuntimeFeature = "signals" | "health file" | "http server" | "workers" | "exit";

/**
 * The runtime has no such facility. `runtime` and `feature` say which; the message says
 * what to do instead.
 *
 * @example The error names the runtime and the feature
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { UnsupportedRuntimeError } from "@sluice/sluice";
 *
 * const e = new UnsupportedRuntimeError("browser", "signals", "call signalShutdown() yourself");
 * assertEquals([e.runtime, e.feature], ["browser", "signals"]);
 * ```
 */
export class UnsupportedRuntimeError extends SluiceError {
  /** The runtime this was tried on. */
  readonly runtime: RuntimeName;
  /** The missing facility. */
  readonly feature: RuntimeFeature;

  /** Creates the error; `instead` says what to do instead. */
  constructor(runtime: RuntimeName, feature: RuntimeFeature, instead: string) {
    super(
      `${feature} ${feature.endsWith("s") ? "are" : "is"} not available on ${runtime}: ${instead}`,
    );
    this.runtime = runtime;
    this.feature = feature;
  }
}

// Minimal shapes of the runtimes' globals (only what is used here).
interface DenoGlobal {
  version: { deno: string };
  addSignalListener(signal: string, handler: () => void): void;
  removeSignalListener(signal: string, handler: () => void): void;
  writeTextFileSync(path: string, data: string): void;
  serve(
    options: { hostname: string; port: number; onListen?: () => void },
    handler: (req: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
  env: { get(name: string): string | undefined };
  exit(code?: number): never;
  args?: string[];
  exitCode?: number;
}
interface NodeProcess {
  versions: { node?: string; bun?: string };
  on(event: string, handler: () => void): unknown;
  off(event: string, handler: () => void): unknown;
  env: Record<string, string | undefined>;
  exit(code?: number): never;
  getBuiltinModule?(name: string): unknown;
  argv?: string[];
  exitCode?: number;
}
interface BunGlobal {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (req: Request) => Response | Promise<Response>;
  }): { port: number; stop(closeActiveConnections?: boolean): unknown };
}

const g = globalThis as unknown as {
  Deno?: DenoGlobal;
  Bun?: BunGlobal;
  process?: NodeProcess;
  navigator?: { userAgent?: string };
  document?: unknown;
  WorkerGlobalScope?: unknown;
  Worker?: typeof Worker;
};

/**
 * The runtime this code runs on.
 *
 * @example Which runtime is this
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { detectRuntime } from "@sluice/sluice/runtime";
 *
 * assertEquals(detectRuntime(), "deno"); // under deno run or deno test
 * ```
 */
export function detectRuntime(): RuntimeName {
  if (typeof g.Deno?.version?.deno === "string") return "deno";
  if (g.Bun !== undefined) return "bun";
  if (typeof g.process?.versions?.node === "string") return "node";
  if (g.navigator?.userAgent === "Cloudflare-Workers") return "workerd";
  if (g.document !== undefined || g.WorkerGlobalScope !== undefined) return "browser";
  return "unknown";
}

function nodeModule<T>(name: string, runtime: RuntimeName, feature: RuntimeFeature): T {
  const mod = g.process?.getBuiltinModule?.(name);
  if (mod === undefined) {
    throw new UnsupportedRuntimeError(
      runtime,
      feature,
      `process.getBuiltinModule("${name}") is missing; use Node >= 20.16 or Bun >= 1.1.30`,
    );
  }
  return mod as T;
}

/**
 * True when {@link onShutdownSignals} can install handlers here (Deno, Node, Bun).
 *
 * @example Falling back where there are no signals
 * ```ts
 * import { hasSignals } from "@sluice/sluice/runtime";
 * if (!hasSignals()) console.log("call signalShutdown() from your own event");
 * ```
 */
export function hasSignals(): boolean {
  const rt = detectRuntime();
  return rt === "deno" || rt === "node" || rt === "bun";
}

/**
 * The process signals Sluice handles: both ask for a graceful shutdown.
 *
 * @example An exit code per signal
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { onShutdownSignals, type ShutdownSignal } from "@sluice/sluice/runtime";
 *
 * const exitCode = (signal: ShutdownSignal) => signal === "SIGINT" ? 130 : 143;
 * const remove = onShutdownSignals((signal) => console.error(`${signal}: ${exitCode(signal)}`));
 * remove();
 * assertEquals(exitCode("SIGTERM"), 143);
 * ```
 */
export type ShutdownSignal = "SIGINT" | "SIGTERM";

/**
 * Calls `handler` with the signal's name on SIGINT and SIGTERM; returns the function that
 * removes the handlers. Throws an {@link UnsupportedRuntimeError} where there are no
 * process signals (browsers, edge runtimes): there, call the processor's
 * `signalShutdown()` from your own event (e.g. `pagehide`, a request's abort signal).
 *
 * @example Installing and removing the handlers
 * ```ts
 * import { onShutdownSignals } from "@sluice/sluice/runtime";
 * const remove = onShutdownSignals((signal) => console.log(`${signal}: shutting down`));
 * remove();
 * ```
 */
export function onShutdownSignals(handler: (signal: ShutdownSignal) => void): () => void {
  const rt = detectRuntime();
  const signals: ShutdownSignal[] = ["SIGINT", "SIGTERM"];
  const added: Array<[ShutdownSignal, () => void]> = [];
  if (rt === "deno") {
    const deno = g.Deno!;
    for (const s of signals) {
      const listener = () => handler(s);
      try {
        deno.addSignalListener(s, listener);
        added.push([s, listener]);
      } catch { /* not supported on this platform (SIGTERM on Windows) */ }
    }
    return () => {
      for (const [s, listener] of added) deno.removeSignalListener(s, listener);
    };
  }
  if (rt === "node" || rt === "bun") {
    const proc = g.process!;
    for (const s of signals) {
      const listener = () => handler(s);
      proc.on(s, listener);
      added.push([s, listener]);
    }
    return () => {
      for (const [s, listener] of added) proc.off(s, listener);
    };
  }
  throw new UnsupportedRuntimeError(
    rt,
    "signals",
    "pass handleSignals: false and call processor.signalShutdown() from your own event " +
      "(pagehide, an AbortSignal, the end of the request)",
  );
}

/**
 * Ends the process at once with `code` (Deno, Node, Bun). Throws an
 * {@link UnsupportedRuntimeError} where there is no process to end (browsers, edge
 * runtimes).
 *
 * @example Exiting with a code (ends the process)
 * ```ts ignore
 * import { exitProcess } from "@sluice/sluice/runtime";
 * exitProcess(130); // as after a second Ctrl-C
 * ```
 */
export function exitProcess(code: number): never {
  const target = g.Deno ?? g.process;
  if (target === undefined || typeof target.exit !== "function") {
    throw new UnsupportedRuntimeError(
      detectRuntime(),
      "exit",
      "there is no process to end here; stop the work with processor.signalShutdown()",
    );
  }
  return target.exit(code);
}

/**
 * Writes `text` to the file at `path` synchronously (creating or replacing it). Throws an
 * {@link UnsupportedRuntimeError} where there is no file system (browsers, edge runtimes):
 * there, use a health HTTP endpoint of your host instead of a health file.
 *
 * @example Writing a health file
 * ```ts
 * import { writeTextFileSync } from "@sluice/sluice/runtime";
 * writeTextFileSync("/tmp/sluice-example-health", new Date().toISOString());
 * ```
 */
export function writeTextFileSync(path: string, text: string): void {
  const rt = detectRuntime();
  if (rt === "deno") return g.Deno!.writeTextFileSync(path, text);
  if (rt === "node" || rt === "bun") {
    const fs = nodeModule<{ writeFileSync(p: string, d: string): void }>(
      "node:fs",
      rt,
      "health file",
    );
    return fs.writeFileSync(path, text);
  }
  throw new UnsupportedRuntimeError(
    rt,
    "health file",
    "there is no file system here; drop the Healthcheck's file option (use its http option " +
      "where the runtime can serve, or your platform's own health probe)",
  );
}

/**
 * A running HTTP server of {@link serveHttp}.
 *
 * @example Waiting for the server, then closing it
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { type HttpServerHandle, serveHttp } from "@sluice/sluice/runtime";
 *
 * const handler = () => new Response("ok");
 * const server: HttpServerHandle = serveHttp({ hostname: "127.0.0.1", port: 0 }, handler);
 * await server.ready; // rejects if the port is taken (Node)
 * assertEquals(server.port > 0, true);
 * await server.close();
 * ```
 */
export interface HttpServerHandle {
  /** The bound port (under Node, the requested one until `ready` resolves). */
  readonly port: number;
  /** Resolves once listening; rejects if listening failed (e.g. the port is taken). */
  readonly ready: Promise<void>;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Serves `handler` on `hostname:port` (0 picks a free port). Deno and Bun listen at once
 * (a taken port throws here); Node listens asynchronously (a taken port rejects `ready`).
 * Request bodies are not passed under Node (the health probes need none). Throws an
 * {@link UnsupportedRuntimeError} where a program cannot listen (browsers, edge runtimes).
 *
 * @example Serving a health probe on a free port
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { serveHttp } from "@sluice/sluice/runtime";
 *
 * const server = serveHttp({ hostname: "127.0.0.1", port: 0 }, () => new Response("ok"));
 * await server.ready;
 * const res = await fetch(`http://127.0.0.1:${server.port}/`);
 * assertEquals(await res.text(), "ok");
 * await server.close();
 * ```
 */
export function serveHttp(
  options: { hostname: string; port: number },
  handler: (req: Request) => Response | Promise<Response>,
): HttpServerHandle {
  const rt = detectRuntime();
  const { hostname, port } = options;
  if (rt === "deno") {
    const server = g.Deno!.serve({ hostname, port, onListen: () => {} }, handler);
    let closing: Promise<void> | undefined;
    return {
      port: server.addr.port,
      ready: Promise.resolve(),
      close: () => closing ??= server.shutdown(),
    };
  }
  if (rt === "bun") {
    const server = g.Bun!.serve({ hostname, port, fetch: handler });
    let closing: Promise<void> | undefined;
    return {
      port: server.port,
      ready: Promise.resolve(),
      close: () => closing ??= Promise.resolve(server.stop(true)).then(() => {}),
    };
  }
  if (rt === "node") return serveNode(hostname, port, handler);
  throw new UnsupportedRuntimeError(
    rt,
    "http server",
    "a program cannot listen here; drop the Healthcheck's http option and answer health " +
      "requests from your platform's own handler (e.g. the worker's fetch handler)",
  );
}

interface NodeIncoming {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
}
interface NodeOutgoing {
  writeHead(status: number, headers: Record<string, string>): void;
  end(body?: Uint8Array): void;
}
interface NodeServer {
  listen(port: number, hostname: string): void;
  once(event: string, fn: (arg: unknown) => void): void;
  address(): { port: number } | string | null;
  close(cb: () => void): void;
  closeAllConnections?(): void;
}

function serveNode(
  hostname: string,
  port: number,
  handler: (req: Request) => Response | Promise<Response>,
): HttpServerHandle {
  const http = nodeModule<{
    createServer(fn: (req: NodeIncoming, res: NodeOutgoing) => void): NodeServer;
  }>("node:http", "node", "http server");
  const server = http.createServer((req, res) => {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === "string") headers.set(k, v);
    }
    const request = new Request(`http://${hostname}:${port}${req.url ?? "/"}`, {
      method: req.method ?? "GET",
      headers,
    });
    Promise.resolve()
      .then(() => handler(request))
      .then(async (response) => {
        const out: Record<string, string> = {};
        response.headers.forEach((v, k) => out[k] = v);
        res.writeHead(response.status, out);
        res.end(new Uint8Array(await response.arrayBuffer()));
      })
      .catch((e) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(
          new TextEncoder().encode(`internal error: ${e instanceof Error ? e.message : e}\n`),
        );
      });
  });
  let bound = port;
  const ready = new Promise<void>((resolve, reject) => {
    server.once("listening", () => {
      const addr = server.address();
      if (addr !== null && typeof addr === "object") bound = addr.port;
      resolve();
    });
    server.once("error", reject);
  });
  server.listen(port, hostname);
  let closing: Promise<void> | undefined;
  return {
    get port() {
      return bound;
    },
    ready,
    close: () =>
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

/**
 * What {@link createModuleWorker} returns: the part of the Web `Worker` Sluice uses.
 *
 * @example A round trip to a worker
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createModuleWorker, type ModuleWorker } from "@sluice/sluice/runtime";
 *
 * const source = "self.onmessage = (e) => self.postMessage(e.data * 2);";
 * const url = `data:text/javascript,${encodeURIComponent(source)}`;
 * const worker: ModuleWorker = createModuleWorker(url, "doubler");
 * const reply = new Promise((resolve) => worker.onmessage = (e) => resolve(e.data));
 * worker.postMessage(21);
 * assertEquals(await reply, 42);
 * worker.terminate();
 * ```
 */
export interface ModuleWorker {
  /** Messages from the worker. */
  onmessage: ((event: MessageEvent) => void) | null;
  /** An uncaught error in the worker. */
  onerror: ((event: ErrorEvent) => void) | null;
  /** A message from the worker that could not be deserialized. */
  onmessageerror: ((event: MessageEvent) => void) | null;
  /** Sends `message`, transferring `transfer`. */
  postMessage(message: unknown, transfer?: Transferable[]): void;
  /** Stops the worker. */
  terminate(): void;
}

/**
 * True when {@link createModuleWorker} can start workers here (Deno, Node, Bun, browsers).
 *
 * @example Choosing a strategy by runtime
 * ```ts
 * import { hasWorkers } from "@sluice/sluice/runtime";
 * console.log(hasWorkers() ? "RunTaskInWorkers" : "RunTaskAsync");
 * ```
 */
export function hasWorkers(): boolean {
  const rt = detectRuntime();
  return rt === "node" || g.Worker !== undefined;
}

/**
 * Starts a module worker running `url`: a Web Worker (`type: "module"`) where the runtime
 * has them (Deno, Bun, browsers), a `worker_threads` Worker under Node (the module then runs
 * with {@link workerScope} as its messaging scope). Throws an {@link UnsupportedRuntimeError}
 * where neither exists (edge runtimes such as workerd).
 *
 * @example Starting a worker from a module file
 * ```ts ignore
 * import { createModuleWorker } from "@sluice/sluice/runtime";
 * const w = createModuleWorker(new URL("./worker.ts", import.meta.url).href, "w0");
 * w.onmessage = (e) => console.log(e.data);
 * w.postMessage("hello");
 * ```
 */
export function createModuleWorker(url: string, name: string): ModuleWorker {
  const rt = detectRuntime();
  if (rt === "node") return nodeWorker(url, name);
  if (g.Worker !== undefined) return new g.Worker(url, { type: "module", name });
  throw new UnsupportedRuntimeError(
    rt,
    "workers",
    "there are no workers here; use RunTaskAsync (concurrent async work on this thread) " +
      "instead of RunTaskInWorkers",
  );
}

interface NodeWorkerThread {
  on(event: string, fn: (arg: unknown) => void): void;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  terminate(): unknown;
}

function nodeWorker(url: string, name: string): ModuleWorker {
  const wt = nodeModule<{
    Worker: new (url: URL, options: { name: string }) => NodeWorkerThread;
  }>("node:worker_threads", "node", "workers");
  const thread = new wt.Worker(new URL(url), { name });
  const worker: ModuleWorker = {
    onmessage: null,
    onerror: null,
    onmessageerror: null,
    postMessage: (message, transfer) => thread.postMessage(message, transfer),
    terminate: () => void thread.terminate(),
  };
  thread.on("message", (data) => worker.onmessage?.(new MessageEvent("message", { data })));
  thread.on("messageerror", () => worker.onmessageerror?.(new MessageEvent("messageerror")));
  thread.on("error", (error) => {
    const message = error instanceof Error ? error.message : String(error);
    // Node 20 has no ErrorEvent: a plain object with what the Web one offers here.
    worker.onerror?.({ message, error, preventDefault() {} } as unknown as ErrorEvent);
  });
  return worker;
}

/**
 * The messaging scope of a worker started by {@link createModuleWorker}.
 *
 * @example Worker code written against the scope, tried with a stub
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { WorkerScope } from "@sluice/sluice/runtime";
 *
 * // In the worker module: serve(workerScope()).
 * function serve(scope: WorkerScope): void {
 *   scope.onmessage = (e) => scope.postMessage(String(e.data).toUpperCase());
 * }
 * const sent: unknown[] = [];
 * const stub: WorkerScope = { postMessage: (m) => void sent.push(m), onmessage: null };
 * serve(stub);
 * stub.onmessage?.(new MessageEvent("message", { data: "hi" }));
 * assertEquals(sent, ["HI"]);
 * ```
 */
export interface WorkerScope {
  /** Sends `message` to the parent. */
  postMessage(message: unknown): void;
  /** Receives the parent's messages (set it once). */
  onmessage: ((event: MessageEvent) => void) | null;
}

/**
 * Inside a worker: the scope to message the parent through (`self` in a Web Worker,
 * `parentPort` under Node's `worker_threads`).
 *
 * @example An echo worker
 * ```ts ignore
 * import { workerScope } from "@sluice/sluice/runtime";
 * const scope = workerScope();
 * scope.onmessage = (e) => scope.postMessage(e.data);
 * ```
 */
export function workerScope(): WorkerScope {
  if (detectRuntime() === "node") {
    const wt = nodeModule<{
      parentPort: { postMessage(m: unknown): void; on(e: string, fn: (d: unknown) => void): void };
    }>("node:worker_threads", "node", "workers");
    const port = wt.parentPort;
    return {
      postMessage: (m) => port.postMessage(m),
      set onmessage(fn: (event: MessageEvent) => void) {
        port.on("message", (data) => fn(new MessageEvent("message", { data })));
      },
    };
  }
  return globalThis as unknown as WorkerScope;
}

/**
 * Replaces the runtime's process exit function (`Deno.exit`, `process.exit`) by `wrap(real)`,
 * where there is one; returns false where there is none or it cannot be replaced. The
 * worker side of `RunTaskInWorkers` uses it to announce an exit before it happens.
 *
 * @example Announcing an exit
 * ```ts ignore
 * import { wrapExit } from "@sluice/sluice/runtime";
 * wrapExit((exit) => (code) => {
 *   console.log("exiting with", code);
 *   return exit(code);
 * });
 * ```
 */
export function wrapExit(
  wrap: (real: (code?: number) => never) => (code?: number) => never,
): boolean {
  const target = g.Deno ?? g.process;
  if (target === undefined || typeof target.exit !== "function") return false;
  const real = target.exit.bind(target);
  try {
    Object.defineProperty(target, "exit", {
      configurable: true,
      writable: true,
      value: wrap(real),
    });
    return true;
  } catch {
    return false;
  }
}

/**
 * An environment variable, or undefined where it is unset or the runtime has no
 * environment (browsers, edge runtimes without bindings) or denies access to it.
 *
 * @example An option from the environment with a fallback
 * ```ts
 * import { env } from "@sluice/sluice/runtime";
 * const brokers = env("KAFKA_BROKERS") ?? "127.0.0.1:9092";
 * console.log(brokers);
 * ```
 */
export function env(name: string): string | undefined {
  try {
    if (g.Deno !== undefined) return g.Deno.env.get(name);
    return g.process?.env?.[name];
  } catch {
    return undefined; // no permission
  }
}

/**
 * The command-line arguments of a script (after the script's own name), or an empty list
 * where the runtime has none (browsers, edge runtimes).
 *
 * @example An optional argument with a default
 * ```ts
 * import { commandLineArgs } from "@sluice/sluice/runtime";
 * const [url = "http://127.0.0.1:8080/status"] = commandLineArgs();
 * console.log(url);
 * ```
 */
export function commandLineArgs(): string[] {
  if (g.Deno !== undefined) return [...(g.Deno.args ?? [])];
  return g.process?.argv?.slice(2) ?? [];
}

/**
 * Sets the exit code the process ends with once it has nothing left to do (Deno, Node,
 * Bun); does nothing where there is no process.
 *
 * @example Ending successfully
 * ```ts
 * import { setExitCode } from "@sluice/sluice/runtime";
 * setExitCode(0);
 * ```
 */
export function setExitCode(code: number): void {
  const target = g.Deno ?? g.process;
  if (target !== undefined) target.exitCode = code;
}
