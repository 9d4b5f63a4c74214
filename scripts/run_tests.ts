/**
 * The test command (`deno task test`): runs the whole suite, with the Kafka integration
 * tests against a real broker whenever one is configured (`KAFKA_BROKERS`) or can be
 * started here (Java and Maven present: `scripts/kafka.ts up`, stopped afterwards). When
 * neither holds it says so loudly; under `CI=true` the Kafka suites then fail.
 *
 * Prints the runner's own summary and a plain `N passed, M failed` line.
 *
 * Usage: deno run -A scripts/run_tests.ts [extra `deno test` arguments, e.g. a file]
 */

const deno = Deno.execPath();
const root = new URL("..", import.meta.url).pathname;

async function succeeds(cmd: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

function banner(text: string): void {
  const line = "!".repeat(Math.min(100, text.length + 4));
  console.warn(`\n${line}\n! ${text}\n${line}\n`);
}

const env: Record<string, string> = {};
let startedBroker = false;
let brokers = Deno.env.get("KAFKA_BROKERS")?.trim() || "";
if (brokers) {
  console.log(`Kafka integration tests: using KAFKA_BROKERS=${brokers}`);
} else if (await succeeds("java", ["-version"]) && await succeeds("mvn", ["-v"])) {
  console.log("Kafka integration tests: starting a local broker (scripts/kafka.ts up)...");
  const up = await new Deno.Command(deno, {
    args: ["run", "-A", "scripts/kafka.ts", "up"],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const out = new TextDecoder().decode(up.stdout);
  const found = out.match(/KAFKA_BROKERS=(\S+)/);
  if (up.success && found) {
    brokers = found[1];
    // The same broker's SASL_SSL listener, for the security tests.
    for (const name of ["KAFKA_SECURE_BROKERS", "KAFKA_SECURE_CA"]) {
      const value = out.match(new RegExp(`${name}=(\\S+)`))?.[1];
      if (value) env[name] = value;
    }
    // A broker that was already running (a developer's `deno task kafka:up`) is left running.
    startedBroker = !out.includes("KAFKA_ALREADY_UP=1");
    console.log(
      `Kafka integration tests: broker ${
        startedBroker ? "ready" : "already running"
      } at ${brokers}`,
    );
  } else {
    banner("KAFKA INTEGRATION TESTS WILL BE SKIPPED: the local broker failed to start (see above)");
  }
} else {
  banner(
    "KAFKA INTEGRATION TESTS WILL BE SKIPPED: KAFKA_BROKERS is not set and Java/Maven are not " +
      "available to start a local broker",
  );
}
if (brokers) env.KAFKA_BROKERS = brokers;

const extra = Deno.args.length > 0 ? Deno.args : [];
const child = new Deno.Command(deno, {
  args: ["test", "-A", "--parallel", ...(extra.length > 0 ? extra : ["tests/"])],
  cwd: root,
  env: { ...env, NO_COLOR: "1", KAFKAJS_NO_PARTITIONER_WARNING: "1" },
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Tee the runner's output and keep its tail to read the summary line.
let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
}
const status = await child.status;

if (startedBroker) {
  await new Deno.Command(deno, {
    args: ["run", "-A", "scripts/kafka.ts", "down"],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
}

const summary = [
  ...tail.matchAll(/(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g),
]
  .at(-1);
if (summary) console.log(`\n${summary[1]} passed, ${summary[2]} failed`);
else console.log("\n0 passed, 1 failed (no test summary was printed; see the output above)");
Deno.exit(status.code === 0 && summary ? 0 : status.code || 1);
