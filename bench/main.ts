/**
 * `deno task bench`: every benchmark, each in a fresh process so CPU and memory figures of
 * one do not leak into another, each printing its tables with baselines and ratios from
 * the same run.
 *
 * Flags: `--quick` (200 k messages, 3 s windows, one repeat), `--only a,b` (names below),
 * `--messages N`, `--repeat N`, `--seconds N`. Arroyo (Python) is measured when
 * `$ARROYO_PYTHON` (or `python3`) can `import arroyo`; Kafka when `KAFKA_BROKERS` is set or
 * the development broker answers (`deno task kafka:up`).
 *
 * @module
 */
import { kafkaAvailability } from "../scripts/kafka_env.ts";
import { flagsToArgs, machineNotes, parseFlags } from "./lib.ts";

/** A benchmark script and whether it must exist. */
interface Bench {
  name: string;
  file: string;
  /** Written by another part of the project; skipped with a note when absent. */
  optional?: boolean;
  /** Needs a Kafka broker. */
  kafka?: boolean;
}

const BENCHES: Bench[] = [
  { name: "inmemory", file: "inmemory.ts" },
  { name: "backpressure", file: "backpressure.ts" },
  { name: "backlog", file: "broker_backlog.ts" },
  { name: "latency", file: "latency.ts" },
  { name: "workers", file: "workers.ts", optional: true },
  { name: "metrics", file: "metrics.ts", optional: true },
  { name: "fetch-decode", file: "fetch_decode.ts" },
  { name: "kafka", file: "kafka.ts", optional: true, kafka: true },
  { name: "kafka-backpressure", file: "kafka_backpressure.ts", optional: true, kafka: true },
];

function exists(url: URL): boolean {
  try {
    return Deno.statSync(url).isFile;
  } catch {
    return false;
  }
}

async function main(): Promise<number> {
  const args = Deno.args;
  const flags = parseFlags(args);
  const onlyAt = args.indexOf("--only");
  const only = onlyAt >= 0 ? new Set(args[onlyAt + 1]?.split(",")) : undefined;
  if (only) {
    for (const n of only) {
      if (!BENCHES.some((b) => b.name === n)) {
        console.error(
          `--only: unknown benchmark "${n}"; choose from ${BENCHES.map((b) => b.name).join(", ")}`,
        );
        return 2;
      }
    }
  }
  console.log(`# Sluice benchmarks (${new Date().toISOString()})\n`);
  console.log(`command: deno task bench ${args.join(" ")}`.trimEnd());
  console.log(machineNotes());
  console.log(
    `settings: ${flags.messages} messages, best of ${flags.repeat}, ${flags.seconds} s windows` +
      (flags.quick ? " (--quick)" : ""),
  );

  let failed = 0;
  for (const b of BENCHES) {
    if (only && !only.has(b.name)) continue;
    const url = new URL(`./${b.file}`, import.meta.url);
    if (!exists(url)) {
      if (b.optional) {
        console.log(`\n## ${b.name}: skipped (bench/${b.file} is not in this tree)`);
        continue;
      }
      console.error(`bench/${b.file} is missing`);
      failed++;
      continue;
    }
    const env: Record<string, string> = {};
    if (b.kafka) {
      const { brokers, reason } = await kafkaAvailability();
      if (brokers === null) {
        console.log(`\n## ${b.name}: skipped (${reason})`);
        continue;
      }
      env.KAFKA_BROKERS = brokers;
    }
    const child = new Deno.Command(Deno.execPath(), {
      // --expose-gc lets the backpressure benchmark measure retained heap after a full GC.
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        url.pathname,
        ...flagsToArgs(flags),
        // bench/kafka.ts reads `--name=value` options.
        ...(b.kafka ? [`--messages=${flags.messages}`] : []),
      ],
      env,
      stdout: "inherit",
      stderr: "inherit",
    });
    const { code } = await child.output();
    if (code !== 0) {
      console.error(`\n${b.name} failed with exit code ${code}`);
      failed++;
    }
  }
  console.log(`\n${machineNotes()} (at the end)`);
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
