/**
 * A private single-node KRaft broker for tests that must stop, kill or restart a broker
 * (the shared development broker cannot be touched under other tests). Not a test file.
 *
 * It uses the jars of `deno task kafka:up` (`.kafka/lib`), free ports and a temporary
 * data directory; {@link PrivateBroker.kill} is a SIGKILL and {@link PrivateBroker.start}
 * after it restarts the broker on the same data. Ports come from the operating system,
 * or from `SLUICE_TEST_PORTS=<from>-<to>` when set (a range reserved for this run; ports
 * are given back by {@link PrivateBroker.remove}).
 */
import { tcpAnswers } from "../../scripts/kafka_env.ts";
import { committedOffsets, eventually, testKafka } from "./kafka_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const LIB = `${ROOT}.kafka/lib`;

/** Why a private broker cannot run here (no jars, no java), or `null` when it can. */
export async function privateBrokerMissing(): Promise<string | null> {
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

const taken = new Set<number>();

/**
 * A port nobody listens on: from `SLUICE_TEST_PORTS` (`from-to`) when set, else one the
 * operating system picks. A port of the range is not handed out again until the broker
 * holding it is removed.
 */
export function freePort(): number {
  const range = /^(\d+)-(\d+)$/.exec(Deno.env.get("SLUICE_TEST_PORTS")?.trim() ?? "");
  if (!range) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    return port;
  }
  // A random starting point: parallel test modules (separate module instances) rarely
  // try the same port first.
  const from = Number(range[1]), size = Number(range[2]) - from + 1;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const port = from + (start + i) % size;
    if (taken.has(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch {
      continue;
    }
    taken.add(port);
    return port;
  }
  throw new Error(`no free port left in SLUICE_TEST_PORTS=${range[0]}`);
}

/**
 * Registers `fn` as a test that needs a private broker: without java or the jars it is
 * ignored with a warning, or fails under `CI=true` (a skipped suite is a failure there).
 */
export function privateBrokerTest(
  name: string,
  fn: () => Promise<void>,
  missing: string | null,
): void {
  if (missing === null) {
    Deno.test(name, fn);
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`cannot run a private Kafka broker under CI: ${missing}`);
    });
  } else {
    console.warn(`KAFKA INTEGRATION TEST SKIPPED (${name}): ${missing}`);
    Deno.test({ name, ignore: true, fn: () => {} });
  }
}

/** A private single-node KRaft broker, child of this process. */
export class PrivateBroker {
  /** The PLAINTEXT (client) port. */
  readonly port: number = freePort();
  /** The CONTROLLER port. */
  readonly controllerPort: number = freePort();
  #dir = "";
  #proc: Deno.ChildProcess | undefined;

  /** `127.0.0.1:<port>`, for `brokers`. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Whether the broker process is running. */
  get running(): boolean {
    return this.#proc !== undefined;
  }

  /** Writes the configuration into a new temporary directory and formats the storage. */
  async format(): Promise<void> {
    this.#dir = await Deno.makeTempDir({ prefix: "sluice-kafka-private-" });
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

  /** Starts the broker (on the data it has, after a kill) and waits until it listens. */
  async start(timeoutMs = 90_000): Promise<void> {
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
      timeoutMs,
      200,
    );
  }

  /**
   * Waits until the broker serves group requests (the first one creates
   * `__consumer_offsets`) and, when given, creates `topic` with `partitions` partitions.
   */
  async ready(topic?: string, partitions = 1, timeoutMs = 60_000): Promise<void> {
    const kafka = testKafka(this.address);
    await eventually(
      async () => {
        try {
          await committedOffsets(kafka, "warm-up", "none").catch(() => new Map());
          if (topic !== undefined) {
            const admin = kafka.admin();
            await admin.connect();
            try {
              const existing = await admin.listTopics();
              if (!existing.includes(topic)) {
                await admin.createTopics({
                  topics: [{ topic, numPartitions: partitions }],
                  waitForLeaders: true,
                });
              }
            } finally {
              await admin.disconnect();
            }
          }
          return true;
        } catch {
          return false;
        }
      },
      "the private broker to accept a topic",
      timeoutMs,
      500,
    );
  }

  /** SIGKILL: no clean shutdown; the data directory stays for a restart. */
  async kill(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (!p) return;
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
    await p.status;
  }

  /** Kills the broker, deletes its data directory and gives its ports back. */
  async remove(): Promise<void> {
    await this.kill();
    taken.delete(this.port);
    taken.delete(this.controllerPort);
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
