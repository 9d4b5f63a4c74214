/**
 * Development/CI Kafka broker: a single-node KRaft Apache Kafka broker (3.9.x pinned in
 * `scripts/kafka-broker/pom.xml`, or `KAFKA_VERSION`, e.g. 4.4.0) built from Maven Central
 * jars, bound to 127.0.0.1.
 *
 * ```sh
 * deno run -A scripts/kafka.ts up      # or: deno task kafka:up
 * deno run -A scripts/kafka.ts status
 * deno run -A scripts/kafka.ts down    # or: deno task kafka:down
 * ```
 *
 * - `up` fetches the jars once into `.kafka/lib` (Maven), writes `server.properties`,
 *   `log4j.properties` and a data dir into a fresh temp dir under `.kafka/run/`, formats
 *   the storage, starts the broker detached (it outlives this script; output goes to
 *   `.kafka/run/broker.log`, pid to `.kafka/run/broker.pid`), waits until a client can
 *   really use it (TCP, cluster metadata, group coordinator) and prints
 *   `KAFKA_BROKERS=127.0.0.1:<port>` on stdout. Progress goes to stderr. Idempotent.
 * - `down` stops that broker (SIGTERM, SIGKILL after 15 s) and deletes `.kafka/run/`.
 *   Idempotent.
 * - `status` tells whether it is up (exit code 0 when up, 1 when not).
 *
 * Environment: `KAFKA_PORT` (PLAINTEXT port, default 19092), `KAFKA_CONTROLLER_PORT`
 * (default `KAFKA_PORT + 1`), `KAFKA_SECURE_PORT` (SASL_SSL port, default `KAFKA_PORT + 2`),
 * `KAFKA_VERSION` (e.g. `4.4.0`; default: the version pinned in `pom.xml`; each version's
 * jars live in their own folder, `.kafka/lib` for the pinned one, `.kafka/lib-<version>`
 * for the others).
 *
 * Besides PLAINTEXT the broker has a SASL_SSL listener for the security tests: its
 * certificate is signed by a throw-away CA that `keytool` makes on the first run
 * (`.kafka/certs/`, `ca.pem` is what clients trust); it accepts PLAIN, SCRAM-SHA-256,
 * SCRAM-SHA-512 (users created by Kafka's storage tool, `format --add-scram`) and
 * OAUTHBEARER (Kafka's unsecured JWT validator). User and password are in
 * `scripts/kafka_env.ts` (`SECURE_USER`, `SECURE_PASSWORD`); test credentials only. `up`
 * prints `KAFKA_SECURE_BROKERS=127.0.0.1:<port>` and `KAFKA_SECURE_CA=<ca.pem>`.
 *
 * @module
 */

import process from "node:process";
import { Kafka, logLevel } from "kafkajs";
import {
  KAFKA_HOST,
  kafkaPort,
  readEnv,
  SECURE_PASSWORD,
  SECURE_USER,
  tcpAnswers,
} from "./kafka_env.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const POM = `${ROOT}/scripts/kafka-broker/pom.xml`;
const KAFKA_DIR = `${ROOT}/.kafka`;
const LIB_DIR = `${KAFKA_DIR}/lib`;
const CERT_DIR = `${KAFKA_DIR}/certs`;
/** Password of the throw-away keystores in `.kafka/certs` (test material only). */
const STORE_PASSWORD = "sluice-test-store";
const RUN_DIR = `${KAFKA_DIR}/run`;
const PID_FILE = `${RUN_DIR}/broker.pid`;
const LOG_FILE = `${RUN_DIR}/broker.log`;
const STATE_FILE = `${RUN_DIR}/broker.json`;

const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;
const POLL_MS = 200;
const LOG_TAIL_LINES = 40;
const WARMUP_TOPIC = "sluice-warmup";
const WARMUP_GROUP = "sluice-warmup";

/** JVM flags for the broker: small heap, few GC threads, fast warm-up (2-core machines). */
const BROKER_JVM_FLAGS = [
  "-Xms128m",
  "-Xmx512m",
  "-XX:+UseSerialGC",
  "-XX:TieredStopAtLevel=1",
  "-Djava.awt.headless=true",
];

/** JVM flags for the one-shot storage format tool. */
const TOOL_JVM_FLAGS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"];

/** JVM flags for keytool: it runs 7 times on a first `up`, so start it fast. */
const KEYTOOL_JVM_FLAGS = ["-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1", "-J-Xshare:auto"];

/** What `up` records in `.kafka/run/broker.json` for `status`/`down`/re-`up`. */
interface BrokerState {
  pid: number;
  port: number;
  controllerPort: number;
  securePort?: number;
  confDir: string;
  kafkaVersion: string;
  startedAt: string;
}

/** Prints a progress line on stderr (stdout is reserved for `KAFKA_BROKERS=...`). */
function info(message: string): void {
  console.error(`kafka: ${message}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Kafka version pinned in the POM (the default). */
async function pinnedKafkaVersion(): Promise<string> {
  const pom = await Deno.readTextFile(POM);
  const match = pom.match(/<kafka\.version>\s*([^<\s]+)\s*<\/kafka\.version>/);
  if (!match) throw new Error(`no <kafka.version> property in ${POM}`);
  return match[1];
}

/** The Kafka version to run: `KAFKA_VERSION`, else the one pinned in the POM. */
async function kafkaVersion(): Promise<string> {
  const wanted = readEnv("KAFKA_VERSION");
  if (wanted === undefined) return await pinnedKafkaVersion();
  if (!/^\d+\.\d+\.\d+$/.test(wanted)) {
    throw new Error(`KAFKA_VERSION must look like 3.9.2 or 4.4.0, got "${wanted}"`);
  }
  return wanted;
}

/** Where the jars of `version` live: `.kafka/lib` for the pinned one, else `.kafka/lib-<v>`. */
async function libDir(version: string): Promise<string> {
  return version === await pinnedKafkaVersion() ? LIB_DIR : `${KAFKA_DIR}/lib-${version}`;
}

/** Runs a command to completion, capturing its output. */
async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; code: number; output: string }> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`\`${cmd}\` is not on PATH (needed to run the Kafka broker)`);
    }
    throw err;
  }
  const decoder = new TextDecoder();
  const output = decoder.decode(result.stdout) + decoder.decode(result.stderr);
  return { ok: result.success, code: result.code, output };
}

/**
 * Makes sure the broker jars for `version` are in `.kafka/lib`, running Maven if not.
 * Returns how long Maven took, or `null` when the cache was used.
 */
async function ensureJars(version: string, lib: string): Promise<number | null> {
  const marker = `${lib}/kafka_2.13-${version}.jar`;
  if (await exists(marker)) return null;
  // Another version (or a half-finished copy) would mix jars on the classpath.
  await Deno.remove(lib, { recursive: true }).catch(() => {});
  info(`downloading Kafka ${version} broker jars with Maven into ${lib} (first run only)...`);
  const started = performance.now();
  const mvn = await run("mvn", [
    "-B",
    "-q",
    "-f",
    POM,
    `-Dkafka.version=${version}`,
    "dependency:copy-dependencies",
    "-DincludeScope=runtime",
    `-DoutputDirectory=${lib}`,
  ]);
  if (!mvn.ok || !(await exists(marker))) {
    console.error(mvn.output);
    throw new Error(`Maven failed (exit ${mvn.code}) to fetch the Kafka jars into ${lib}`);
  }
  return performance.now() - started;
}

/**
 * Makes (once) the throw-away TLS material of the SASL_SSL listener with the JDK's
 * keytool: a CA; a broker key pair whose certificate (SAN 127.0.0.1, localhost) the CA
 * signs; a truststore with the CA (the listener checks client certificates against it when
 * a client sends one); a client key pair signed by the CA and a self-signed "rogue" one,
 * their keys printed as PEM by `ExportKey.java` (the JDK's source launcher). Clients trust
 * `ca.pem`; `client.pem`/`client-key.pem` and `rogue.pem`/`rogue-key.pem` are for the
 * mutual-TLS tests.
 */
async function ensureCerts(): Promise<{ keystore: string; truststore: string }> {
  const keystore = `${CERT_DIR}/broker.p12`;
  const truststore = `${CERT_DIR}/truststore.p12`;
  const done = `${CERT_DIR}/rogue-key.pem`; // written last
  if (await exists(done)) return { keystore, truststore };
  await Deno.remove(CERT_DIR, { recursive: true }).catch(() => {});
  await Deno.mkdir(CERT_DIR, { recursive: true });
  const started = performance.now();
  const at = (name: string) => `${CERT_DIR}/${name}`;
  const ca = at("ca.p12");
  const caPem = at("ca.pem");
  const store = ["-storetype", "PKCS12", "-storepass", STORE_PASSWORD];
  const key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "3650"];
  const genkey = (alias: string, file: string, dname: string, ...extra: string[]) =>
    ["-genkeypair", "-alias", alias, ...key, "-dname", dname, ...extra, "-keystore", file]
      .concat(store);
  const certreq = (
    alias: string,
    file: string,
  ) => ["-certreq", "-alias", alias, "-file", at(`${alias}.csr`), "-keystore", file, ...store];
  const sign = (alias: string, ...ext: string[]) => [
    "-gencert",
    "-alias",
    "ca",
    "-rfc",
    "-validity",
    "3650",
    "-infile",
    at(`${alias}.csr`),
    "-outfile",
    at(`${alias}.pem`),
    ...ext.flatMap((e) => ["-ext", e]),
    "-keystore",
    ca,
    ...store,
  ];
  const importCert = (
    alias: string,
    file: string,
    into: string,
  ) => ["-importcert", "-noprompt", "-alias", alias, "-file", file, "-keystore", into, ...store];
  // Stages run one after the other; the commands inside a stage are independent.
  const stages: string[][][] = [[
    genkey("ca", ca, "CN=Sluice test CA", "-ext", "bc:c"),
    genkey("broker", keystore, `CN=${KAFKA_HOST}`),
    genkey("client", at("client.p12"), "CN=sluice-test-client"),
    genkey("rogue", at("rogue.p12"), "CN=sluice-rogue-client"),
  ], [
    ["-exportcert", "-rfc", "-alias", "ca", "-file", caPem, "-keystore", ca, ...store],
    ["-exportcert", "-rfc", "-alias", "rogue", "-file", at("rogue.pem")]
      .concat("-keystore", at("rogue.p12"), ...store),
    certreq("broker", keystore),
    certreq("client", at("client.p12")),
  ], [
    sign(
      "broker",
      `SAN=ip:${KAFKA_HOST},dns:localhost`,
      "KU=digitalSignature,keyEncipherment",
      "EKU=serverAuth",
    ),
    sign("client", "KU=digitalSignature,keyEncipherment", "EKU=clientAuth"),
    importCert("ca", caPem, keystore),
    importCert("ca", caPem, truststore),
  ], [
    importCert("broker", at("broker.pem"), keystore),
  ]];
  const fail = async (what: string, r: { code: number; output: string }) => {
    console.error(r.output);
    await Deno.remove(CERT_DIR, { recursive: true }).catch(() => {});
    throw new Error(`${what} failed (exit ${r.code}) making ${CERT_DIR}`);
  };
  for (const stage of stages) {
    const results = await Promise.all(
      stage.map((args) => run("keytool", [...KEYTOOL_JVM_FLAGS, ...args])),
    );
    const failed = results.findIndex((r) => !r.ok);
    if (failed >= 0) await fail(`keytool ${stage[failed][0]}`, results[failed]);
  }
  // rogue-key.pem last: its presence says the whole set is complete.
  const exported = await run("java", [
    ...TOOL_JVM_FLAGS,
    `${ROOT}/scripts/kafka-broker/ExportKey.java`,
    STORE_PASSWORD,
    ...["client", "rogue"].flatMap((a) => [at(`${a}.p12`), a, at(`${a}-key.pem`)]),
  ]);
  if (!exported.ok || !(await exists(done))) await fail("ExportKey.java", exported);
  info(`certificates: made with keytool in ${seconds(performance.now() - started)}`);
  return { keystore, truststore };
}

/** The SASL_SSL listener: TLS with `keystore`, PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER. */
function secureListenerProperties(keystore: string, truststore: string): string[] {
  const prefix = "listener.name.sasl_ssl";
  const quote = (s: string) => JSON.stringify(s);
  return [
    "# SASL_SSL listener for the security tests (throw-away credentials).",
    "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
    `${prefix}.ssl.keystore.type=PKCS12`,
    `${prefix}.ssl.keystore.location=${keystore}`,
    `${prefix}.ssl.keystore.password=${STORE_PASSWORD}`,
    `${prefix}.ssl.key.password=${STORE_PASSWORD}`,
    // A client certificate is optional, but one that is sent must be signed by the CA.
    `${prefix}.ssl.client.auth=requested`,
    `${prefix}.ssl.truststore.type=PKCS12`,
    `${prefix}.ssl.truststore.location=${truststore}`,
    `${prefix}.ssl.truststore.password=${STORE_PASSWORD}`,
    `${prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule ` +
    `required user_${SECURE_USER}=${quote(SECURE_PASSWORD)};`,
    `${prefix}.scram-sha-256.sasl.jaas.config=` +
    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    `${prefix}.scram-sha-512.sasl.jaas.config=` +
    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    // No server callback handler: Kafka's unsecured validator (unsigned JWTs, `sub` claim).
    `${prefix}.oauthbearer.sasl.jaas.config=` +
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
  ];
}

function serverProperties(
  port: number,
  controllerPort: number,
  securePort: number,
  keystore: string,
  truststore: string,
  dataDir: string,
): string {
  return [
    "# Written by scripts/kafka.ts: single-node KRaft broker for tests. Not for production.",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@${KAFKA_HOST}:${controllerPort}`,
    `listeners=PLAINTEXT://${KAFKA_HOST}:${port},CONTROLLER://${KAFKA_HOST}:${controllerPort},` +
    `SASL_SSL://${KAFKA_HOST}:${securePort}`,
    `advertised.listeners=PLAINTEXT://${KAFKA_HOST}:${port},SASL_SSL://${KAFKA_HOST}:${securePort}`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=PLAINTEXT",
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
    ...secureListenerProperties(keystore, truststore),
    `log.dirs=${dataDir}`,
    "# Internal topics sized for one broker, or the group coordinator never comes up.",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=1",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "transaction.state.log.num.partitions=1",
    "# Test speed.",
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=1000",
    "num.network.threads=2",
    "num.io.threads=2",
    "# Tests create their topics explicitly (a typo fails fast instead of auto-creating).",
    "auto.create.topics.enable=false",
    "num.partitions=1",
    "default.replication.factor=1",
    "min.insync.replicas=1",
    "delete.topic.enable=true",
    "",
  ].join("\n");
}

/** log4j 1.x (reload4j) config: WARN and above, plus the "Kafka Server started" line. */
function log4jProperties(): string {
  return [
    "log4j.rootLogger=WARN, stdout",
    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
    "log4j.logger.kafka=WARN",
    "log4j.logger.org.apache.kafka=WARN",
    "log4j.logger.org.apache.zookeeper=WARN",
    "log4j.logger.kafka.server.KafkaRaftServer=INFO",
    "",
  ].join("\n");
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (22 chars). */
function randomClusterId(): string {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = btoa(String.fromCharCode(...bytes))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
    // Like Kafka's own Uuid.randomUuid: an id starting with "-" looks like a CLI flag.
    if (!id.startsWith("-")) return id;
  }
}

/** Linux process state of `pid`: running (anything but zombie/dead) or gone. */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await readTextOrNull(`/proc/${pid}/stat`);
  if (stat === null) return false;
  // Format: "pid (comm) S ..."; comm may contain spaces and parens.
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X" && state !== "x";
}

/** True if `pid` is alive and is a Kafka broker JVM (guards against pid reuse). */
async function isKafkaBroker(pid: number): Promise<boolean> {
  if (!(await isAlive(pid))) return false;
  const cmdline = await readTextOrNull(`/proc/${pid}/cmdline`);
  return cmdline !== null && cmdline.split("\0").includes("kafka.Kafka");
}

/** Resident set size of `pid` in MiB, or null if unknown. */
async function rssMiB(pid: number): Promise<number | null> {
  const status = await readTextOrNull(`/proc/${pid}/status`);
  const match = status?.match(/^VmRSS:\s+(\d+)\s+kB/m);
  return match ? Math.round(Number(match[1]) / 1024) : null;
}

async function readState(): Promise<BrokerState | null> {
  const pidText = await readTextOrNull(PID_FILE);
  if (pidText === null) return null;
  const pid = Number(pidText.trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const json = await readTextOrNull(STATE_FILE);
  if (json !== null) {
    try {
      const state = JSON.parse(json) as BrokerState;
      if (state.pid === pid) return state;
    } catch {
      // Fall through to defaults.
    }
  }
  const port = kafkaPort();
  return {
    pid,
    port,
    controllerPort: port + 1,
    confDir: "",
    kafkaVersion: "?",
    startedAt: "?",
  };
}

/** The broker recorded in `.kafka/run`, if its process is alive and its port answers. */
async function runningBroker(): Promise<BrokerState | null> {
  const state = await readState();
  if (state === null || !(await isKafkaBroker(state.pid))) return null;
  return (await tcpAnswers(KAFKA_HOST, state.port, 1000)) ? state : null;
}

async function lastLogLines(n: number): Promise<string> {
  const text = await readTextOrNull(LOG_FILE);
  if (text === null) return `(no ${LOG_FILE})`;
  const lines = text.replace(/\n$/, "").split("\n");
  return lines.slice(-n).join("\n");
}

/**
 * Starts `argv` in its own session, detached from this process: it survives this
 * script's exit and terminal hang-ups. Returns its pid (`setsid` and `nohup` exec in
 * place, so `$!` is the JVM's pid).
 */
async function spawnDetached(argv: string[], logFile: string): Promise<number> {
  const script = 'log="$1"; shift; setsid nohup "$@" >"$log" 2>&1 </dev/null & echo "$!"';
  const result = await run("bash", ["-c", script, "kafka-broker", logFile, ...argv]);
  const pid = Number(result.output.trim());
  if (!result.ok || !Number.isInteger(pid) || pid <= 0) {
    throw new Error(`could not start the broker: ${result.output.trim()}`);
  }
  return pid;
}

/** Sends `signal` to `pid`, ignoring "no such process". */
function signalPid(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** SIGTERM, wait up to 15 s, then SIGKILL — this pid only. */
async function stopPid(pid: number): Promise<void> {
  if (!(await isKafkaBroker(pid))) return;
  signalPid(pid, "SIGTERM");
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!(await isAlive(pid))) return;
    await sleep(POLL_MS);
  }
  info(`pid ${pid} still running after ${seconds(STOP_TIMEOUT_MS)}; sending SIGKILL`);
  signalPid(pid, "SIGKILL");
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && (await isAlive(pid))) await sleep(POLL_MS);
}

/** Rejects with `what` timing out if `promise` does not settle before `deadline`. */
function beforeDeadline<T>(promise: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: deadline reached`)),
      Math.max(0, deadline - Date.now()),
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `attempt` every 200 ms until it returns without throwing, the broker process
 * dies, or the deadline passes.
 */
async function retryUntil<T>(
  what: string,
  pid: number,
  deadline: number,
  attempt: () => Promise<T>,
): Promise<T> {
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    if (!(await isAlive(pid))) throw new Error(`broker process ${pid} exited while ${what}`);
    try {
      return await beforeDeadline(attempt(), deadline, what);
    } catch (err) {
      lastError = err;
    }
    await sleep(POLL_MS);
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
  throw new Error(`timed out after ${seconds(READY_TIMEOUT_MS)} ${what}${detail}`);
}

/** Waits until clients can really use the broker; returns per-phase durations. */
async function waitReady(pid: number, port: number, deadline: number): Promise<string> {
  const address = `${KAFKA_HOST}:${port}`;
  const phases: string[] = [];
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    phases.push(`${name} ${seconds(now - t)}`);
    t = now;
  };

  // 1. In 3.9 KRaft the PLAINTEXT acceptor opens only once the broker is unfenced.
  await retryUntil("waiting for the PLAINTEXT port", pid, deadline, async () => {
    if (!(await tcpAnswers(KAFKA_HOST, port, 1000))) throw new Error(`${address} refused`);
  });
  lap("port");

  const kafka = new Kafka({
    clientId: "sluice-kafka-up",
    brokers: [address],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    requestTimeout: 5000,
    retry: { initialRetryTime: 100, retries: 3 },
  });
  const admin = kafka.admin();
  try {
    // 2. Metadata lists exactly our one broker.
    await retryUntil("waiting for cluster metadata", pid, deadline, async () => {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length !== 1) {
        throw new Error(`describeCluster lists ${cluster.brokers.length} brokers`);
      }
    });
    lap("metadata");

    // 3. A topic exists with a leader (fetchOffsets needs a real topic).
    await retryUntil("creating the warm-up topic", pid, deadline, async () => {
      await admin.createTopics({
        topics: [{ topic: WARMUP_TOPIC, numPartitions: 1, replicationFactor: 1 }],
        waitForLeaders: true,
      });
      const topics = await admin.listTopics();
      if (!topics.includes(WARMUP_TOPIC)) throw new Error(`${WARMUP_TOPIC} not listed yet`);
    });
    lap("topic");

    // 4. FindCoordinator makes the broker create __consumer_offsets; until then answers
    //    are COORDINATOR_NOT_AVAILABLE. Afterwards the first real JoinGroup is fast.
    await retryUntil("warming up the group coordinator", pid, deadline, async () => {
      await admin.fetchOffsets({ groupId: WARMUP_GROUP, topics: [WARMUP_TOPIC] });
    });
    lap("coordinator");
  } finally {
    await admin.disconnect().catch(() => {});
  }
  return phases.join(", ");
}

async function up(): Promise<number> {
  const existing = await runningBroker();
  if (existing !== null) {
    const rss = await rssMiB(existing.pid);
    info(
      `already up: pid ${existing.pid}, ${KAFKA_HOST}:${existing.port}, ` +
        `Kafka ${existing.kafkaVersion}, RSS ${rss ?? "?"} MiB, started ${existing.startedAt}`,
    );
    const wanted = await kafkaVersion();
    if (existing.kafkaVersion !== wanted) {
      throw new Error(
        `a Kafka ${existing.kafkaVersion} broker is already up on ${KAFKA_HOST}:${existing.port}, ` +
          `not ${wanted}; stop it (\`kafka.ts down\`) or use another KAFKA_PORT`,
      );
    }
    console.log(`KAFKA_BROKERS=${KAFKA_HOST}:${existing.port}`);
    printSecure(existing.securePort);
    // For callers that stop what they started (scripts/run_tests.ts): this one they did not.
    console.log("KAFKA_ALREADY_UP=1");
    return 0;
  }

  // A stale run (dead process, or a broker whose port no longer answers): clear it out.
  const stale = await readState();
  if (stale !== null) {
    info(`cleaning up a stale broker run (pid ${stale.pid})`);
    await stopPid(stale.pid);
  }
  await Deno.remove(RUN_DIR, { recursive: true }).catch(() => {});

  const port = kafkaPort();
  const controllerPort = Number(readEnv("KAFKA_CONTROLLER_PORT") ?? port + 1);
  if (!Number.isInteger(controllerPort) || controllerPort < 1 || controllerPort > 65535) {
    throw new Error(`bad controller port ${controllerPort}`);
  }
  const securePort = Number(readEnv("KAFKA_SECURE_PORT") ?? port + 2);
  if (!Number.isInteger(securePort) || securePort < 1 || securePort > 65535) {
    throw new Error(`bad KAFKA_SECURE_PORT ${securePort}`);
  }
  for (const p of [port, controllerPort, securePort]) {
    if (await tcpAnswers(KAFKA_HOST, p, 500)) {
      throw new Error(
        `${KAFKA_HOST}:${p} is already in use by something that is not our broker; ` +
          "stop it or choose other ports with KAFKA_PORT",
      );
    }
  }

  const version = await kafkaVersion();
  const lib = await libDir(version);
  const mavenMs = await ensureJars(version, lib);
  info(
    mavenMs === null
      ? `jars: cached in ${lib.slice(ROOT.length + 1)} (Kafka ${version})`
      : `jars: fetched in ${seconds(mavenMs)}`,
  );
  const { keystore, truststore } = await ensureCerts();

  await Deno.mkdir(RUN_DIR, { recursive: true });
  const confDir = await Deno.makeTempDir({ dir: RUN_DIR, prefix: "broker-" });
  const dataDir = `${confDir}/data`;
  const logsDir = `${confDir}/logs`;
  await Deno.mkdir(dataDir);
  await Deno.mkdir(logsDir);
  const serverProps = `${confDir}/server.properties`;
  const log4jProps = `${confDir}/log4j.properties`;
  await Deno.writeTextFile(
    serverProps,
    serverProperties(port, controllerPort, securePort, keystore, truststore, dataDir),
  );
  await Deno.writeTextFile(log4jProps, log4jProperties());
  const classpath = `${lib}/*`; // expanded by java itself, not by a shell
  const log4jFlag = `-Dlog4j.configuration=file:${log4jProps}`;

  const formatStarted = performance.now();
  const format = await run("java", [
    ...TOOL_JVM_FLAGS,
    log4jFlag,
    "-cp",
    classpath,
    "kafka.tools.StorageTool",
    "format",
    "--cluster-id",
    randomClusterId(),
    "--config",
    serverProps,
    "--ignore-formatted",
    // The SCRAM users of the SASL_SSL listener, written into the cluster metadata.
    ...["SCRAM-SHA-256", "SCRAM-SHA-512"].flatMap((m) => [
      "--add-scram",
      `${m}=[name=${SECURE_USER},password=${SECURE_PASSWORD}]`,
    ]),
  ]);
  if (!format.ok) {
    console.error(format.output);
    throw new Error(`formatting the storage failed (exit ${format.code})`);
  }
  info(`format: ${seconds(performance.now() - formatStarted)}`);

  const startMs = performance.now();
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const pid = await spawnDetached([
    "java",
    ...BROKER_JVM_FLAGS,
    log4jFlag,
    `-Dkafka.logs.dir=${logsDir}`,
    "-cp",
    classpath,
    "kafka.Kafka",
    serverProps,
  ], LOG_FILE);
  await Deno.writeTextFile(PID_FILE, `${pid}\n`);
  const state: BrokerState = {
    pid,
    port,
    controllerPort,
    securePort,
    confDir,
    kafkaVersion: version,
    startedAt: new Date().toISOString(),
  };
  await Deno.writeTextFile(STATE_FILE, JSON.stringify(state, null, 2) + "\n");
  info(`started pid ${pid} (log: .kafka/run/broker.log); waiting until ready...`);

  try {
    const phases = await waitReady(pid, port, deadline);
    const rss = await rssMiB(pid);
    info(
      `ready in ${seconds(performance.now() - startMs)} after start (${phases}); ` +
        `RSS ${rss ?? "?"} MiB`,
    );
  } catch (err) {
    info(`broker did not become ready: ${(err as Error).message}`);
    console.error(`--- last ${LOG_TAIL_LINES} lines of ${LOG_FILE} ---`);
    console.error(await lastLogLines(LOG_TAIL_LINES));
    console.error("---");
    await stopPid(pid);
    await Deno.remove(PID_FILE).catch(() => {});
    info(
      `broker pid ${pid} is stopped; kept ${RUN_DIR} for inspection (\`kafka.ts down\` removes it)`,
    );
    return 1;
  }
  console.log(`KAFKA_BROKERS=${KAFKA_HOST}:${port}`);
  printSecure(securePort);
  return 0;
}

/** Prints where the SASL_SSL listener is and the CA its clients trust (stdout). */
function printSecure(securePort: number | undefined): void {
  if (securePort === undefined) return;
  console.log(`KAFKA_SECURE_BROKERS=${KAFKA_HOST}:${securePort}`);
  console.log(`KAFKA_SECURE_CA=${CERT_DIR}/ca.pem`);
}

async function down(): Promise<number> {
  const state = await readState();
  if (state !== null && (await isKafkaBroker(state.pid))) {
    const started = performance.now();
    await stopPid(state.pid);
    if (await isAlive(state.pid)) {
      info(`pid ${state.pid} would not die`);
      return 1;
    }
    info(`stopped pid ${state.pid} in ${seconds(performance.now() - started)}`);
  } else {
    info("no broker running");
  }
  await Deno.remove(RUN_DIR, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  return 0;
}

async function status(): Promise<number> {
  const state = await readState();
  if (state === null) {
    info("down (no .kafka/run/broker.pid)");
    return 1;
  }
  if (!(await isKafkaBroker(state.pid))) {
    info(`down (pid ${state.pid} is not running; \`kafka.ts down\` cleans up)`);
    return 1;
  }
  const rss = await rssMiB(state.pid);
  const answers = await tcpAnswers(KAFKA_HOST, state.port, 1000);
  info(
    `${answers ? "up" : "starting or unhealthy (port not answering)"}: pid ${state.pid}, ` +
      `${KAFKA_HOST}:${state.port}, Kafka ${state.kafkaVersion}, RSS ${rss ?? "?"} MiB, ` +
      `started ${state.startedAt}`,
  );
  return answers ? 0 : 1;
}

/**
 * Entry point: dispatches `up`, `down` or `status`.
 *
 * @param args Command-line arguments (the first one is the subcommand).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command] = args;
  try {
    switch (command) {
      case "up":
        return await up();
      case "down":
        return await down();
      case "status":
        return await status();
      default:
        console.error("usage: deno run -A scripts/kafka.ts up|down|status");
        return 2;
    }
  } catch (err) {
    info(`error: ${(err as Error).message}`);
    return 1;
  }
}

/**
 * kafkajs 2.2.4's request queue calls `setTimeout(fn, throttledUntil - Date.now())` with
 * `throttledUntil = -1`, i.e. a hugely negative delay. Deno 2.9 follows Node 24 and prints
 * a one-off `TimeoutNegativeWarning` for that (the delay is clamped to 1 ms, so it is
 * harmless). Drop just that warning to keep this script's output readable.
 */
function hideKafkajsNegativeTimeoutWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  const isNegativeTimeout = (warning: unknown, rest: unknown[]): boolean => {
    if (warning instanceof Error) return warning.name === "TimeoutNegativeWarning";
    const [typeOrOptions] = rest;
    if (typeof typeOrOptions === "string") return typeOrOptions === "TimeoutNegativeWarning";
    return (typeOrOptions as { type?: string } | undefined)?.type === "TimeoutNegativeWarning";
  };
  (process as { emitWarning: (...args: unknown[]) => void }).emitWarning = (
    warning: unknown,
    ...rest: unknown[]
  ) => {
    if (!isNegativeTimeout(warning, rest)) emitWarning(warning, ...rest);
  };
}

if (import.meta.main) {
  hideKafkajsNegativeTimeoutWarning();
  // Exit explicitly: kafkajs may leave sockets/timers that would keep the event loop alive.
  Deno.exit(await main(Deno.args));
}
