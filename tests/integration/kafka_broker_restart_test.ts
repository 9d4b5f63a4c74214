/**
 * Kafka backend against a broker that restarts mid-run: the consumer reconnects and
 * continues without losing a message.
 *
 * The shared development broker cannot be restarted under other tests, so this test
 * starts a private single-node broker of its own (same jars, `.kafka/lib`, from
 * `deno task kafka:up`) on free ports with a temporary data directory, stops it with
 * SIGKILL while the consumer runs, and starts it again on the same data. It needs `java`
 * and the jars; without them it is skipped with a warning (and fails under CI).
 */
import { assert, assertEquals } from "@std/assert";
import {
  CommitOffsets,
  CommitPolicy,
  ManualClock,
  type Message,
  RunTask,
  StreamProcessor,
} from "../../mod.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
  createTopic,
  endOffsets,
  eventually,
  FAST,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";
import { tcpAnswers } from "../../scripts/kafka_env.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const LIB = `${ROOT}.kafka/lib`;

async function javaAndJars(): Promise<string | null> {
  try {
    const jars = [...Deno.readDirSync(LIB)].filter((e) => e.name.startsWith("kafka_2.13-"));
    if (jars.length === 0) return `no Kafka jars in ${LIB}; run \`deno task kafka:up\` once`;
  } catch {
    return `no ${LIB}; run \`deno task kafka:up\` once (it downloads the broker jars)`;
  }
  try {
    const r = await new Deno.Command("java", { args: ["-version"], stdout: "null", stderr: "null" })
      .output();
    return r.success ? null : "`java -version` failed";
  } catch {
    return "`java` is not on PATH";
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A private single-node KRaft broker, child of this process. */
class PrivateBroker {
  readonly port = freePort();
  readonly controllerPort = freePort();
  #dir = "";
  #proc: Deno.ChildProcess | undefined;

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async format(): Promise<void> {
    this.#dir = await Deno.makeTempDir({ prefix: "sluice-kafka-restart-" });
    await Deno.writeTextFile(
      `${this.#dir}/server.properties`,
      [
        "process.roles=broker,controller",
        "node.id=1",
        `controller.quorum.voters=1@127.0.0.1:${this.controllerPort}`,
        `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}`,
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        `log.dirs=${this.#dir}/data`,
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=1",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=1000",
        "num.network.threads=2",
        "num.io.threads=2",
        "auto.create.topics.enable=false",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(
      `${this.#dir}/log4j.properties`,
      "log4j.rootLogger=ERROR, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n" +
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n",
    );
    const id = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))
      .replaceAll("+", "A").replaceAll("/", "B").replace(/=+$/, "");
    const r = await new Deno.Command("java", {
      args: [
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        `-Dlog4j.configuration=file:${this.#dir}/log4j.properties`,
        "-cp",
        `${LIB}/*`,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        id,
        "-c",
        `${this.#dir}/server.properties`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`storage format failed: ${new TextDecoder().decode(r.stderr)}`);
  }

  async start(): Promise<void> {
    this.#proc = new Deno.Command("java", {
      args: [
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        `-Dlog4j.configuration=file:${this.#dir}/log4j.properties`,
        `-Dkafka.logs.dir=${this.#dir}/logs`,
        "-cp",
        `${LIB}/*`,
        "kafka.Kafka",
        `${this.#dir}/server.properties`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await eventually(
      () => tcpAnswers("127.0.0.1", this.port, 500),
      "the private broker to listen",
      90_000,
      200,
    );
  }

  async kill(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (!p) return;
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
    await p.status;
  }

  async remove(): Promise<void> {
    await this.kill();
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

const missing = await javaAndJars();
if (missing !== null && Deno.env.get("CI") === "true") {
  Deno.test("kafka: broker restart mid-run", () => {
    throw new Error(`cannot run a private Kafka broker under CI: ${missing}`);
  });
} else if (missing !== null) {
  console.warn(`KAFKA INTEGRATION TESTS SKIPPED (broker restart): ${missing}`);
  Deno.test({ name: "kafka: broker restart mid-run", ignore: true, fn: () => {} });
} else {
  Deno.test("kafka: the broker restarts mid-run; the consumer reconnects and continues without loss", async () => {
    const broker = new PrivateBroker();
    await broker.format();
    await broker.start();
    const brokers = broker.address;
    const kafka = testKafka(brokers);
    const topic = unique("sluice-broker-restart");
    const group = unique("g");
    const N1 = 3000;
    const N2 = 3000;
    let running: Promise<void> | undefined;
    let processor: StreamProcessor<KafkaPayload> | undefined;
    try {
      // Warm up the group coordinator (creates __consumer_offsets), then the topic.
      await eventually(
        async () => {
          try {
            await committedOffsets(kafka, "warm-up", "none").catch(() => new Map());
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
      await produceNumbers(kafka, topic, N1);
      const decoder = new TextDecoder();
      const seen = new Uint8Array(N1 + N2);
      let distinct = 0;
      const consumer = new KafkaConsumer({
        brokers,
        group,
        ...FAST,
        retry: { initialRetryTimeMs: 200, retries: 5, maxRetryTimeMs: 1000 },
      });
      // The commit policy runs on a manual clock: nothing is committed until the test moves
      // it, so the test decides that a commit is attempted while the broker is down.
      const clock = new ManualClock();
      processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        clock,
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              const v = Number(decoder.decode(m.payload.value as Uint8Array));
              if (seen[v]++ === 0) distinct++;
              return v;
            }, new CommitOffsets(commit)),
        },
      });
      running = processor.run();
      // Fail at once (not at the deadline) if the processor stops, and say where it was.
      let stopped: string | undefined;
      running.then(
        () => stopped = "run() returned",
        (e) => stopped = `run() failed: ${e instanceof Error ? e.stack : e}`,
      );
      const p = processor;
      const state = () =>
        `${distinct} of ${N1 + N2} distinct messages seen; consumer ${
          JSON.stringify(consumer.stats)
        }; processor ${JSON.stringify(p.stats)}`;
      const until = (condition: () => boolean) => () => {
        if (stopped) throw new Error(`${stopped}; ${state()}`);
        return condition();
      };
      await eventually(until(() => distinct === N1), "the first messages", 60_000, 50, state);
      await broker.kill();
      // The commit due now finds no broker: it must fail without stopping the processor
      // (the offsets are kept for the next commit).
      await clock.advance(1000);
      await eventually(
        until(() => consumer.stats.commitsFailed > 0),
        "a commit attempted while the broker is down",
        60_000,
        50,
        state,
      );
      await broker.start();
      await produceNumbers(kafka, topic, N2, N1);
      await eventually(
        until(() => distinct === N1 + N2),
        "every message processed after the restart",
        120_000,
        50,
        state,
      );
      // Commits resume (the clock moves on) and cover everything, the offsets of the
      // failed commit included.
      const ends = await endOffsets(kafka, topic);
      await eventually(
        async () => {
          await clock.advance(250);
          const committed = await committedOffsets(kafka, group, topic);
          return [...ends].every(([i, end]) => committed.get(i) === end);
        },
        "commits to reach the end offsets after the restart",
        30_000,
        300,
        state,
      );
      assert(processor.stats.commitsIncomplete >= 1, state());
      processor.signalShutdown();
      await running;
      running = undefined;
      assertEquals(distinct, N1 + N2, "nothing lost");
      assert(seen.every((n) => n >= 1));
    } finally {
      processor?.signalShutdown();
      await running?.catch(() => {});
      await broker.remove();
    }
  });
}
