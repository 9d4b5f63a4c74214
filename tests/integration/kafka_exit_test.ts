/**
 * Kafka backend: every process ends by itself, promptly, once `run()` returned or start-up
 * failed (DESIGN.md invariant 9), and kafkajs's own log says nothing at ERROR for what is
 * expected (a rebalance, a broker that is down). Judged from outside: a child process
 * (`kafka_exit_child.ts`) is timed from the line it prints when `run()` ended to its exit,
 * and its stderr is read.
 */
import { assert, assertEquals } from "@std/assert";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  createTopic,
  deleteTopics,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";
import { PrivateBroker, privateBrokerMissing, privateBrokerTest } from "./private_broker.ts";

/** A port of this suite's range where nothing listens (KAFKA_PORT + 12). */
const DEAD_PORT = Number(Deno.env.get("KAFKA_PORT") ?? 19092) + 12;
/** The most a process may take to exit once `run()` ended. */
const EXIT_WITHIN_MS = 12_000;

/** A running child: its stdout lines as they come (with when), its stderr, its end. */
class Child {
  readonly lines: { text: string; at: number }[] = [];
  readonly #proc: Deno.ChildProcess;
  readonly done: Promise<{ code: number; at: number; stderr: string }>;

  constructor(args: string[], deadlineMs: number) {
    const proc = this.#proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        new URL("./kafka_exit_child.ts", import.meta.url).pathname,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(deadlineMs),
    }).spawn();
    const out = (async () => {
      let rest = "";
      for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        for (const text of parts) this.lines.push({ text, at: performance.now() });
      }
    })();
    const err = new Response(proc.stderr).text();
    this.done = (async () => {
      const status = await proc.status;
      const at = performance.now();
      await out;
      return { code: status.code, at, stderr: await err };
    })();
  }

  line(prefix: string): { text: string; at: number } | undefined {
    return this.lines.find((l) => l.text.startsWith(prefix));
  }

  processed(): number {
    const l = this.lines.findLast((l) => l.text.startsWith("PROCESSED "));
    return l === undefined ? 0 : Number(l.text.split(" ")[1]);
  }

  kill(signal: Deno.Signal): void {
    this.#proc.kill(signal);
  }
}

/** Lines of `stderr` a user would read as errors: kafkajs ERROR lines and stack frames. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => /\bERROR\b/.test(l) || /^\s+at /.test(l));
}

Deno.test("kafka: a process whose consumer cannot connect exits by itself soon after the ConsumerError, without ERROR lines", async () => {
  const child = new Child([`127.0.0.1:${DEAD_PORT}`, "t", "g", "2000"], 90_000);
  const end = await child.done;
  const failed = child.line("FAILED");
  assert(failed !== undefined, `no FAILED line: ${JSON.stringify(child.lines)} ${end.stderr}`);
  assertEquals(failed.text, "FAILED ConsumerError");
  const ms = end.at - failed.at;
  console.log(`exited ${Math.round(ms)} ms after the connect timeout`);
  assert(ms < EXIT_WITHIN_MS, `the process lived ${Math.round(ms)} ms after run() failed`);
  assertEquals(errorLines(end.stderr), [], "no ERROR lines or stacks");
});

kafkaTest(
  "kafka: a rebalance prints no ERROR lines (kafkajs's log goes through Sluice's)",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-quiet");
    const group = unique("g");
    await createTopic(kafka, topic, 4);
    const printed: string[] = [];
    const { error, warn } = console;
    console.error = (...a: unknown[]) => void printed.push(`error: ${a.join(" ")}`);
    console.warn = (...a: unknown[]) => void printed.push(`warn: ${a.join(" ")}`);
    const members: {
      consumer: KafkaConsumer;
      running: Promise<void>;
      p: StreamProcessor<KafkaPayload>;
    }[] = [];
    let processed = 0;
    const start = () => {
      // The default log level ("error"): what a user sees.
      const consumer = new KafkaConsumer({ brokers, group, ...FAST, logLevel: "error" });
      const p = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask(() => processed++, new CommitOffsets(commit)),
        },
      });
      const m = { consumer, p, running: p.run() };
      members.push(m);
      return m;
    };
    try {
      await produceNumbers(kafka, topic, 2000);
      const a = start();
      await eventually(() => a.consumer.assignment.length === 4, "A owns all partitions", 30_000);
      const b = start();
      await eventually(
        () => a.consumer.assignment.length === 2 && b.consumer.assignment.length === 2,
        "A and B sharing the partitions",
        30_000,
      );
      b.p.signalShutdown();
      await b.running;
      await eventually(() => a.consumer.assignment.length === 4, "A owning all again", 30_000);
      await eventually(() => processed >= 2000, "everything processed", 30_000);
      assert(a.consumer.stats.rebalances >= 2, JSON.stringify(a.consumer.stats));
    } finally {
      for (const m of members) m.p.signalShutdown();
      await Promise.allSettled(members.map((m) => m.running));
      console.error = error;
      console.warn = warn;
      await deleteTopics(kafka, [topic]);
    }
    const errors = printed.filter((l) => l.startsWith("error:") || /\bERROR\b/.test(l));
    assertEquals(errors, [], `printed: ${printed.join("\n")}`);
  },
);

privateBrokerTest(
  "kafka: after a broker restart, a process exits by itself soon after run() returned",
  async () => {
    // Ports from SLUICE_TEST_PORTS when set (see private_broker.ts).
    const broker = new PrivateBroker();
    await broker.format();
    await broker.start();
    const brokers = broker.address;
    const kafka = testKafka(brokers);
    const topic = unique("sluice-exit");
    let child: Child | undefined;
    try {
      await eventually(
        async () => {
          try {
            await createTopic(kafka, topic, 2);
            return true;
          } catch {
            return false;
          }
        },
        "the private broker to accept a topic",
        60_000,
        500,
      );
      await produceNumbers(kafka, topic, 1000);
      child = new Child([brokers, topic, unique("g"), "10000"], 150_000);
      const c = child;
      await eventually(() => c.processed() >= 1000, "the child processing", 60_000);
      await broker.kill();
      await broker.start();
      await produceNumbers(kafka, topic, 1000, 1000);
      await eventually(() => c.processed() >= 2000, "processing after the restart", 90_000);
      c.kill("SIGTERM");
      const end = await c.done;
      const returned = c.line("RETURNED");
      assert(returned !== undefined, `run() did not return: ${end.stderr}`);
      const ms = end.at - returned.at;
      console.log(`exited ${Math.round(ms)} ms after run() returned (broker restarted)`);
      assert(ms < EXIT_WITHIN_MS, `the process lived ${Math.round(ms)} ms after run() returned`);
      assertEquals(errorLines(end.stderr), [], "no ERROR lines or stacks");
    } finally {
      try {
        child?.kill("SIGKILL");
      } catch { /* exited */ }
      await child?.done.catch(() => {});
      await broker.remove();
    }
  },
  await privateBrokerMissing(),
);
