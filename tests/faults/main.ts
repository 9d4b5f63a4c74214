/**
 * The long fault-injection runs (`deno task faults`): the issue's sizes, several runs per
 * scenario, a results table, evidence for every failed check. Exits 1 when a run failed.
 *
 * Usage:
 *   deno task faults [--runs N] [--scenario all|kill9|churn|broker|handback[,...]]
 *                    [--quick] [--keep-logs] [--quiet]
 *
 * Set `SLUICE_TEST_PORTS=<from>-<to>` to keep the private brokers' ports in a range.
 */
import { HEADER, row, type Verdict } from "./harness.ts";
import { runScenario, SCENARIOS } from "./scenarios.ts";
import { privateBrokerMissing } from "../integration/private_broker.ts";

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const runs = Number(arg("--runs") ?? "3");
const which = (arg("--scenario") ?? "all").split(",");
const names = which.includes("all") ? Object.keys(SCENARIOS) : which;
const unknown = names.filter((n) => !(n in SCENARIOS));
if (unknown.length > 0 || !Number.isInteger(runs) || runs < 1) {
  console.error(
    `usage: deno task faults [--runs N>=1] [--scenario all|${
      Object.keys(SCENARIOS).join("|")
    }[,...]] [--quick] [--keep-logs] [--quiet]` +
      (unknown.length > 0 ? `; unknown scenario ${unknown.join(", ")}` : ""),
  );
  Deno.exit(2);
}
const missing = await privateBrokerMissing();
if (missing !== null) {
  console.error(`cannot run a private Kafka broker: ${missing}`);
  Deno.exit(2);
}
const size = Deno.args.includes("--quick") ? "quick" : "long";
const verbose = !Deno.args.includes("--quiet");
const keepLogs = Deno.args.includes("--keep-logs");

const results: [Verdict, number][] = [];
for (const name of names) {
  const scenario = SCENARIOS[name];
  for (let i = 1; i <= runs; i++) {
    console.log(`\n== ${name} (${scenario.title}), ${size}, run ${i} of ${runs}`);
    const v = await runScenario(scenario, size, { verbose, keepLogs });
    results.push([v, i]);
    console.log(HEADER);
    console.log(row(v, i));
    for (const e of v.evidence) console.log(`  ${e}`);
    if (keepLogs) console.log(`  logs: ${v.logDir}`);
  }
}
console.log(`\n${HEADER}`);
for (const [v, i] of results) console.log(row(v, i));
const failed = results.filter(([v]) => !v.ok).length;
console.log(`\n${results.length - failed} passed, ${failed} failed`);
Deno.exitCode = failed === 0 ? 0 : 1;
