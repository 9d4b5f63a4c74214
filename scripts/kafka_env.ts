/**
 * Helpers for finding the Kafka broker that integration tests should use.
 *
 * Resolution order of {@link kafkaAvailability}:
 * 1. `KAFKA_BROKERS` (comma-separated `host:port` list) if it is set and non-empty;
 * 2. the local development broker started by `deno task kafka:up`, if something
 *    answers a TCP connect on `127.0.0.1:<KAFKA_PORT or 19092>`;
 * 3. otherwise `brokers: null` and a human-readable reason to print when skipping.
 *
 * Always `127.0.0.1`, never `localhost`: Deno/Node may resolve `localhost` to `::1`
 * first, while the broker listens on IPv4 loopback only.
 *
 * @module
 */

/** Loopback host the development broker binds to and advertises. */
export const KAFKA_HOST = "127.0.0.1";

/** User of the development broker's SASL_SSL listener (PLAIN, SCRAM; test credentials). */
export const SECURE_USER = "sluice";

/** Password of {@link SECURE_USER} (a throw-away test credential, not a secret). */
export const SECURE_PASSWORD = "sluice-test-password";

/** Default PLAINTEXT (client) port of the development broker. */
export const DEFAULT_KAFKA_PORT = 19092;

/** Result of {@link kafkaAvailability}. */
export interface KafkaAvailability {
  /** Comma-separated bootstrap list (`host:port,...`), or `null` when no broker is known. */
  brokers: string | null;
  /** Why `brokers` has this value, for logs and test skip messages. */
  reason: string;
}

/**
 * Reads an environment variable, treating "not set", empty, and "no env
 * permission" alike as `undefined`.
 *
 * @param name Variable name.
 * @returns The trimmed value, or `undefined`.
 */
export function readEnv(name: string): string | undefined {
  try {
    const value = Deno.env.get(name)?.trim();
    return value ? value : undefined;
  } catch {
    // Without --allow-env, Deno throws instead of returning undefined.
    return undefined;
  }
}

/**
 * The PLAINTEXT port of the development broker: `KAFKA_PORT` if it is a valid
 * port number, else {@link DEFAULT_KAFKA_PORT}.
 *
 * @returns The port number.
 * @throws {Error} If `KAFKA_PORT` is set but is not an integer in 1..65534.
 */
export function kafkaPort(): number {
  const raw = readEnv("KAFKA_PORT");
  if (raw === undefined) return DEFAULT_KAFKA_PORT;
  const port = Number(raw);
  // The controller listener uses port + 1, hence the upper bound.
  if (!Number.isInteger(port) || port < 1 || port > 65534) {
    throw new Error(`KAFKA_PORT must be an integer in 1..65534, got "${raw}"`);
  }
  return port;
}

/**
 * Tries a TCP connection and closes it straight away.
 *
 * @param hostname Host to connect to (use an IP literal such as `127.0.0.1`).
 * @param port TCP port.
 * @param timeoutMs Give up after this many milliseconds.
 * @returns `true` if the connection was accepted in time, else `false`.
 */
export async function tcpAnswers(
  hostname: string,
  port: number,
  timeoutMs = 500,
): Promise<boolean> {
  try {
    const conn = await Deno.connect({
      hostname,
      port,
      transport: "tcp",
      signal: AbortSignal.timeout(timeoutMs),
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Decides which Kafka broker, if any, integration tests should talk to.
 *
 * @returns `{ brokers, reason }`: `brokers` is `KAFKA_BROKERS` if set, else
 * `127.0.0.1:<port>` if a broker answers there (port from `KAFKA_PORT`, default
 * 19092), else `null`; `reason` explains the choice.
 *
 * @example
 * ```ts
 * const { brokers, reason } = await kafkaAvailability();
 * Deno.test({ name: "kafka round trip", ignore: brokers === null, fn: async () => {} });
 * if (brokers === null) console.warn(`skipping Kafka tests: ${reason}`);
 * ```
 */
export async function kafkaAvailability(): Promise<KafkaAvailability> {
  const fromEnv = readEnv("KAFKA_BROKERS");
  if (fromEnv !== undefined) {
    return { brokers: fromEnv, reason: `KAFKA_BROKERS is set (${fromEnv})` };
  }
  let port: number;
  try {
    port = kafkaPort();
  } catch (err) {
    return { brokers: null, reason: (err as Error).message };
  }
  const address = `${KAFKA_HOST}:${port}`;
  if (await tcpAnswers(KAFKA_HOST, port, 500)) {
    return { brokers: address, reason: `a broker answers on ${address}` };
  }
  return {
    brokers: null,
    reason: `KAFKA_BROKERS is not set and no broker answers on ${address}; ` +
      "run `deno task kafka:up`",
  };
}
