/**
 * The worker side of `RunTaskInWorkers`: loaded as a module Web Worker, it imports the
 * user's module by URL and runs one of its exports on every payload of every batch it is
 * sent, answering with the results in order. Not meant to be imported.
 *
 * Protocol (all messages are plain, structured-cloneable objects):
 * - in: `{ t: "init", module, exportName }`, then `{ t: "batch", id, payloads }`;
 * - out: `{ t: "result", id, results, invalid }` (invalid: `[index, reason][]`),
 *   `{ t: "error", id, index, name, message, stack }`, `{ t: "init-error", message }`,
 *   `{ t: "exit", code }` (the user's code called `Deno.exit`).
 *
 * @module
 */
import { workerScope, wrapExit } from "../../runtime/mod.ts";

type UserFunction = (payload: unknown) => unknown;

const scope = workerScope();
let loaded: Promise<UserFunction> | undefined;
let chain: Promise<void> = Promise.resolve();

// A worker that calls Deno.exit() (process.exit() under Node) disappears without any event
// on the parent's side: announce it first, so the step can fail with a clear error instead
// of waiting. Where it cannot be replaced (or there is none), the batch timeout still applies.
wrapExit((realExit) => (code?: number): never => {
  try {
    scope.postMessage({ t: "exit", code: code ?? 0 });
  } catch { /* nothing more to do */ }
  return realExit(code);
});

function describe(error: unknown): { name: string; message: string; stack?: string } {
  if (error instanceof Error) {
    return { name: error.name, message: error.message, stack: error.stack };
  }
  return { name: "Error", message: String(error) };
}

async function load(module: string, exportName: string): Promise<UserFunction> {
  const mod = await import(module);
  const fn = mod[exportName];
  if (typeof fn !== "function") {
    throw new Error(
      `module ${module} has no function export named "${exportName}" ` +
        `(exports: ${Object.keys(mod).join(", ") || "none"})`,
    );
  }
  return fn as UserFunction;
}

async function runBatch(id: number, payloads: unknown[]): Promise<void> {
  let fn: UserFunction;
  try {
    fn = await loaded!;
  } catch {
    return; // init-error was already reported
  }
  const results = new Array(payloads.length);
  const invalid: Array<[number, string]> = [];
  for (let i = 0; i < payloads.length; i++) {
    try {
      let r = fn(payloads[i]);
      if (
        r !== null && typeof r === "object" && typeof (r as Promise<unknown>).then === "function"
      ) {
        r = await r;
      }
      results[i] = r;
    } catch (e) {
      if (e instanceof Error && e.name === "InvalidMessage") {
        const reason = (e as Error & { reason?: unknown }).reason;
        invalid.push([i, typeof reason === "string" ? reason : e.message]);
        results[i] = undefined;
        continue;
      }
      scope.postMessage({ t: "error", id, index: i, ...describe(e) });
      return;
    }
  }
  try {
    scope.postMessage({ t: "result", id, results, invalid });
  } catch (e) {
    const d = describe(e);
    scope.postMessage({
      t: "error",
      id,
      index: -1,
      name: d.name,
      message: `a result is not structured-cloneable (${d.message}); return plain data`,
    });
  }
}

scope.onmessage = (event: MessageEvent) => {
  const msg = event.data as
    | { t: "init"; module: string; exportName: string }
    | { t: "batch"; id: number; payloads: unknown[] };
  if (msg.t === "init") {
    loaded = load(msg.module, msg.exportName);
    loaded.catch((e) => scope.postMessage({ t: "init-error", ...describe(e) }));
  } else if (msg.t === "batch") {
    chain = chain.then(() => runBatch(msg.id, msg.payloads));
  }
};
