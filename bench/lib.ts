/**
 * Shared helpers of the benchmarks: command-line flags, CPU and memory readings, machine
 * notes, percentiles and markdown tables.
 *
 * @module
 */
import process from "node:process";

/** Flags every benchmark understands. */
export interface BenchFlags {
  /** Small sizes and short windows, for a smoke run (`--quick`). */
  quick: boolean;
  /** Messages per throughput run (`--messages N`). */
  messages: number;
  /** Repeats per measurement; the best is reported (`--repeat N`). */
  repeat: number;
  /** Seconds of the backpressure window (`--seconds N`). */
  seconds: number;
  /** Also print the results as one line of JSON after the tables (`--json`). */
  json: boolean;
}

/** Parses `--quick`, `--messages N`, `--repeat N`, `--seconds N`, `--json`. */
export function parseFlags(args: readonly string[]): BenchFlags {
  const quick = args.includes("--quick");
  const num = (name: string, dflt: number): number => {
    const i = args.indexOf(name);
    if (i < 0) return dflt;
    const v = Number(args[i + 1]);
    if (!Number.isFinite(v) || v <= 0) {
      throw new Error(`${name} needs a positive number, got ${JSON.stringify(args[i + 1])}`);
    }
    return v;
  };
  return {
    quick,
    messages: Math.round(num("--messages", quick ? 200_000 : 1_000_000)),
    repeat: Math.round(num("--repeat", quick ? 1 : 3)),
    seconds: num("--seconds", quick ? 3 : 10),
    json: args.includes("--json"),
  };
}

/** The flags as they should be passed on to a child benchmark. */
export function flagsToArgs(f: BenchFlags): string[] {
  const out = ["--messages", String(f.messages), "--repeat", String(f.repeat)];
  out.push("--seconds", String(f.seconds));
  if (f.quick) out.push("--quick");
  if (f.json) out.push("--json");
  return out;
}

/** CPU time used by this process so far, in seconds (user + system). */
export function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** A memory reading, in bytes. */
export interface MemorySample {
  /** Resident set size. */
  rss: number;
  /** V8 heap in use. */
  heapUsed: number;
}

/** Current memory use. */
export function memory(): MemorySample {
  const m = Deno.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

/** Asks V8 for a full collection when `--v8-flags=--expose-gc` is on; otherwise a no-op. */
export function gc(): void {
  const f = (globalThis as { gc?: () => void }).gc;
  if (f) f();
}

/** Whether {@link gc} actually collects. */
export function gcAvailable(): boolean {
  return typeof (globalThis as { gc?: () => void }).gc === "function";
}

/** Machine notes printed with every table: cores, runtime, load average. */
export function machineNotes(): string {
  const [l1, l5, l15] = Deno.loadavg();
  let cpu = "";
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpu = info.match(/model name\s*:\s*(.*)/)?.[1]?.trim() ?? "";
  } catch { /* not Linux */ }
  return `machine: ${navigator.hardwareConcurrency} cores${cpu ? ` (${cpu})` : ""}, ` +
    `${Deno.build.os}/${Deno.build.arch}, deno ${Deno.version.deno}, v8 ${Deno.version.v8}, ` +
    `load average ${l1.toFixed(2)} ${l5.toFixed(2)} ${l15.toFixed(2)}`;
}

/** The p-th percentile (0..100) of `values` (sorted in place), nearest-rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  values.sort((a, b) => a - b);
  const rank = Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1));
  return values[rank];
}

/** Formats an integer with thin groups: 1234567 → "1 234 567". */
export function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, " ");
}

/** Formats a rate in messages per second: "5.12 M/s", "812 k/s". */
export function fmtRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(0)} k/s`;
  return `${perSecond.toFixed(0)} /s`;
}

/** Formats bytes as MiB with one decimal. */
export function fmtMiB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Formats a ratio as "1.23×" or a percentage when `percent` is set. */
export function fmtRatio(r: number, percent = false): string {
  if (!Number.isFinite(r)) return "—";
  return percent ? `${(r * 100).toFixed(1)}%` : `${r.toFixed(2)}×`;
}

/** A pass/fail mark against a budget. */
export function verdict(ok: boolean | undefined): string {
  return ok === undefined ? "" : ok ? "✅ meets" : "❌ misses";
}

/** Prints a markdown table (readable as text too). */
export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (c ?? "").padEnd(widths[i])).join(" | ") + " |";
  console.log(`\n### ${title}\n`);
  console.log(line(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of rows) console.log(line(r));
}

/** The median of `values` (not modified). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Yields a macrotask turn (no 1–4 ms timer clamp). */
export function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Sleeps `ms` milliseconds on a real timer. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs `script` in a fresh Deno process with `args` and returns the JSON value on the last
 * line of its output: how benchmarks keep one run's garbage and JIT state out of another's
 * figures. `runtimeArgs` go before the script (default: `--v8-flags=--expose-gc`); `env` is
 * added to the child's environment.
 */
export async function runChildJson<T>(
  script: string | URL,
  args: string[],
  options: { runtimeArgs?: string[]; env?: Record<string, string> } = {},
): Promise<T> {
  const path = typeof script === "string" ? script : script.pathname;
  const runtimeArgs = options.runtimeArgs ?? ["--v8-flags=--expose-gc"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...runtimeArgs, path, ...args],
    env: options.env,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${path} ${args.join(" ")} failed (exit ${out.code})`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}
