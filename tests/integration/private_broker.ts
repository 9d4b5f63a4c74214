/**
 * A private single-node KRaft broker for tests that kill and restart it (the shared
 * development broker cannot be restarted under other tests). Not a test file itself.
 */
import { eventually } from "./kafka_helpers.ts";
import { tcpAnswers } from "../../scripts/kafka_env.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const LIB = `${ROOT}.kafka/lib`;

/** Null when `java` and the broker jars are there, else why not. */
export async function javaAndJars(): Promise<string | null> {
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
export class PrivateBroker {
  /** Free ports are picked when none are given. */
  constructor(readonly port = freePort(), readonly controllerPort = freePort()) {}
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
