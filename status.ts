/**
 * The status view in a terminal: polls a running consumer's `/status` (served by a
 * `HealthServer` that watches the processor) and redraws {@link renderStatus}'s screen.
 *
 * ```sh
 * deno run --allow-net jsr:@sluice/sluice/status http://127.0.0.1:8080/status
 * deno run --allow-net jsr:@sluice/sluice/status --once http://127.0.0.1:8080/status
 * ```
 *
 * Options: `--every <ms>` (default 1000), `--once` (print one screen and exit),
 * `--line` (one log line per poll instead of a redrawn screen).
 *
 * @module
 */
import { type ProcessorStatus, renderStatus, renderStatusLine } from "./metrics/status.ts";
import { ConfigurationError, SluiceError } from "./errors.ts";
import { commandLineArgs, onShutdownSignals, setExitCode } from "./runtime/mod.ts";

export { type ProcessorStatus, renderStatus, renderStatusLine } from "./metrics/status.ts";

/**
 * Fetches a processor's status from a `HealthServer`'s `/status` endpoint. Throws a
 * {@link SluiceError} saying what went wrong when the server does not answer with one.
 *
 * @example Show a remote processor's status
 * ```ts
 * import { fetchStatus, renderStatus } from "@sluice/sluice/status";
 * async function show(url = "http://127.0.0.1:8080/status"): Promise<void> {
 *   console.log(renderStatus(await fetchStatus(url)));
 * }
 * ```
 */
export async function fetchStatus(
  url: string | URL,
  signal?: AbortSignal,
): Promise<ProcessorStatus> {
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    throw new SluiceError(
      `cannot reach ${url}: ${e instanceof Error ? e.message : e}; is the consumer running ` +
        `with a HealthServer that watches its processor (new HealthServer({ processor }))?`,
      { cause: e },
    );
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new SluiceError(
      `${url} answered ${res.status}; the status is served at /status by a HealthServer ` +
        `given the processor (new HealthServer({ port, processor }) or server.watch(processor))`,
    );
  }
  const body = await res.json();
  if (typeof body !== "object" || body === null || !Array.isArray(body.steps)) {
    throw new SluiceError(`${url} did not answer with a processor status`);
  }
  return body as ProcessorStatus;
}

/** Options of {@link main}. */
interface Args {
  url: string;
  everyMs: number;
  once: boolean;
  line: boolean;
}

function parseArgs(args: readonly string[]): Args {
  const out: Args = { url: "", everyMs: 1000, once: false, line: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--once") out.once = true;
    else if (a === "--line") out.line = true;
    else if (a === "--every") {
      const n = Number(args[++i]);
      if (!Number.isFinite(n) || n <= 0) {
        throw new ConfigurationError(`--every needs milliseconds > 0, got ${args[i]}`);
      }
      out.everyMs = n;
    } else if (a.startsWith("--")) {
      throw new ConfigurationError(`unknown option ${a}; use --every <ms>, --once or --line`);
    } else out.url = a;
  }
  if (!out.url) {
    throw new ConfigurationError(
      "usage: deno run --allow-net jsr:@sluice/sluice/status [--every ms] [--once] [--line] " +
        "http://host:port/status",
    );
  }
  return out;
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(commandLineArgs());
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    setExitCode(2);
    return;
  }
  const stop = new AbortController();
  const removeSignals = onShutdownSignals(() => stop.abort());
  try {
    while (!stop.signal.aborted) {
      const status = await fetchStatus(args.url, stop.signal);
      if (args.once) {
        console.log(renderStatus(status));
        return;
      }
      if (args.line) console.log(renderStatusLine(status));
      else {
        // Clear the screen and move home, then draw.
        console.log(`\x1b[2J\x1b[H${renderStatus(status)}`);
      }
      await new Promise((r) => setTimeout(r, args.everyMs));
    }
  } catch (e) {
    if (stop.signal.aborted) return;
    console.error(e instanceof Error ? e.message : e);
    setExitCode(1);
  } finally {
    removeSignals();
  }
}

if (import.meta.main) await main();
