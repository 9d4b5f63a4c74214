/**
 * TLS and SASL for the Kafka backend: the option shape shared by the consumer, the
 * producer (and so the DLQ producer) and the admin helper, its validation, secrets that
 * never print, and the typed errors a user meets when connecting to a secured cluster.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import { ConfigurationError, ConsumerError } from "../../errors.ts";

/**
 * TLS towards the brokers (Kafka's `SSL` or `SASL_SSL` listeners). PEM text, not paths:
 * read the files yourself (`await Deno.readTextFile("ca.pem")`).
 *
 * @example Trusting a private CA
 * ```ts
 * import type { KafkaTlsOptions } from "@sluice/sluice/kafka";
 * const tls: KafkaTlsOptions = {
 *   ca: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
 *   servername: "kafka.internal.example.com",
 * };
 * ```
 */
export interface KafkaTlsOptions {
  /** PEM certificate(s) of the CA(s) to trust instead of the system's. */
  ca?: string | Uint8Array | readonly (string | Uint8Array)[];
  /** PEM client certificate (mutual TLS; needs `key`). */
  cert?: string | Uint8Array;
  /** PEM private key of `cert`. Never logged. */
  key?: string | Uint8Array;
  /** Passphrase of an encrypted `key`. Never logged. */
  passphrase?: string;
  /** Host name to verify the broker's certificate against (SNI), when it differs from the address. */
  servername?: string;
  /**
   * Verify the broker's certificate. `false` accepts any certificate (a man in the middle
   * too): for a throw-away test cluster only.
   * @default true
   */
  rejectUnauthorized?: boolean;
}

/**
 * SASL with a user name and password: PLAIN (only over TLS!) or SCRAM.
 *
 * @example SCRAM with the password from the environment
 * ```ts
 * import type { KafkaSaslPasswordOptions } from "@sluice/sluice/kafka";
 * const sasl: KafkaSaslPasswordOptions = {
 *   mechanism: "SCRAM-SHA-256",
 *   username: "svc",
 *   password: Deno.env.get("KAFKA_PASSWORD") ?? "",
 * };
 * ```
 */
export interface KafkaSaslPasswordOptions {
  /** Kafka's mechanism name, either case: `"SCRAM-SHA-512"` or `"scram-sha-512"`. */
  mechanism:
    | "plain"
    | "scram-sha-256"
    | "scram-sha-512"
    | "PLAIN"
    | "SCRAM-SHA-256"
    | "SCRAM-SHA-512";
  /** User name. */
  username: string;
  /** Password. Never logged nor put in an error message. */
  password: string;
}

/**
 * SASL OAUTHBEARER: a callback returns the current token (called at each authentication).
 *
 * @example A token from your identity provider
 * ```ts
 * import type { KafkaSaslOAuthBearerOptions } from "@sluice/sluice/kafka";
 * const fetchToken = async (): Promise<string> => "token"; // your identity provider
 * const sasl: KafkaSaslOAuthBearerOptions = {
 *   mechanism: "OAUTHBEARER",
 *   oauthBearerProvider: async () => ({ value: await fetchToken() }),
 * };
 * ```
 */
export interface KafkaSaslOAuthBearerOptions {
  /** `"oauthbearer"` or `"OAUTHBEARER"`. */
  mechanism: "oauthbearer" | "OAUTHBEARER";
  /** Returns a valid token (fetch or refresh it from your identity provider here). */
  oauthBearerProvider: () => Promise<{ value: string }>;
}

/**
 * SASL authentication: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
 *
 * @example Either kind of SASL in one option
 * ```ts
 * import type { KafkaSaslOptions } from "@sluice/sluice/kafka";
 * const scram: KafkaSaslOptions = {
 *   mechanism: "SCRAM-SHA-512",
 *   username: "svc-orders",
 *   password: Deno.env.get("KAFKA_PASSWORD") ?? "",
 * };
 * const oauth: KafkaSaslOptions = {
 *   mechanism: "OAUTHBEARER",
 *   oauthBearerProvider: async () => ({ value: "<a token from your identity provider>" }),
 * };
 * ```
 */
export type KafkaSaslOptions = KafkaSaslPasswordOptions | KafkaSaslOAuthBearerOptions;

/**
 * Authentication failed: wrong user name or password, a mechanism the cluster does not
 * enable, or a token the broker rejects. `mechanism` is Kafka's name of it
 * (`"SCRAM-SHA-512"`). Not retried: the same credentials fail the same way.
 *
 * @example Catching it around the first poll
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { KafkaAuthenticationError } from "@sluice/sluice/kafka";
 *
 * // Stands in for `consumer.poll()` against a cluster that rejects the credentials.
 * const poll = (): Promise<never> =>
 *   Promise.reject(new KafkaAuthenticationError("SASL authentication failed", "SCRAM-SHA-512"));
 * let hint = "";
 * try {
 *   await poll();
 * } catch (e) {
 *   if (!(e instanceof KafkaAuthenticationError)) throw e;
 *   hint = `check the ${e.mechanism} user and password`;
 * }
 * assertEquals(hint, "check the SCRAM-SHA-512 user and password");
 * ```
 */
export class KafkaAuthenticationError extends ConsumerError {
  /** The SASL mechanism that failed, in Kafka's spelling (`"PLAIN"`, `"SCRAM-SHA-256"`...). */
  readonly mechanism: string;
  /** Creates the error; `mechanism` is Kafka's name of the mechanism. */
  constructor(message: string, mechanism: string, options?: ErrorOptions) {
    super(message, options);
    this.mechanism = mechanism;
  }
}

/**
 * The TLS connection failed: the broker's certificate is not trusted (unknown CA,
 * self-signed, expired, wrong host name), or one side speaks TLS and the other does not.
 * Not retried.
 *
 * @example Catching it around the first poll
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { KafkaTlsError } from "@sluice/sluice/kafka";
 *
 * // Stands in for `consumer.poll()` against a broker whose certificate is not trusted.
 * const poll = (): Promise<never> => Promise.reject(new KafkaTlsError("TLS handshake failed"));
 * let hint = "";
 * try {
 *   await poll();
 * } catch (e) {
 *   if (!(e instanceof KafkaTlsError)) throw e;
 *   hint = "give the broker's CA as ssl: { ca }";
 * }
 * assertEquals(hint, "give the broker's CA as ssl: { ca }");
 * ```
 */
export class KafkaTlsError extends ConsumerError {}

const REDACTED = "[redacted]";

/** @internal A secret string that prints as `[redacted]` (toString, JSON, inspect). */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  /** The secret itself, for kafkajs. */
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [Symbol.for("Deno.customInspect")](): string {
    return REDACTED;
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return REDACTED;
  }
}

/** @internal Validated TLS options (`key` and `passphrase` redacted). */
export interface ResolvedTls {
  ca?: string[];
  cert?: string;
  key?: Secret;
  passphrase?: Secret;
  servername?: string;
  rejectUnauthorized: boolean;
}

/** @internal Validated SASL options (the password redacted). */
export type ResolvedSasl =
  | { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: Secret }
  | { mechanism: "oauthbearer"; oauthBearerProvider: () => Promise<{ value: string }> };

/** Kafka's spelling of a mechanism, for messages. */
export function kafkaMechanismName(mechanism: string): string {
  return mechanism.toUpperCase();
}

const TLS_KEYS = ["ca", "cert", "key", "passphrase", "servername", "rejectUnauthorized"];
const SASL_PASSWORD_KEYS = ["mechanism", "username", "password"];
const SASL_OAUTH_KEYS = ["mechanism", "oauthBearerProvider"];
const MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function unknownKeys(
  where: string,
  value: Record<string, unknown>,
  valid: readonly string[],
  hints: Record<string, string> = {},
): void {
  const bad = Object.keys(value).filter((k) => !valid.includes(k));
  if (bad.length === 0) return;
  const parts = bad.map((k) => {
    const hint = hints[k] ?? valid.find((v) => v.toLowerCase() === k.toLowerCase());
    return hint ? `"${k}" (did you mean ${hint}?)` : `"${k}"`;
  });
  throw new ConfigurationError(
    `unknown ${where} option${bad.length > 1 ? "s" : ""} ${parts.join(", ")}; ` +
      `valid ones: ${valid.join(", ")}`,
  );
}

function pemText(name: string, v: unknown, secret: boolean): string {
  const text = v instanceof Uint8Array ? new TextDecoder().decode(v) : v;
  if (typeof text !== "string" || !text.includes("-----BEGIN")) {
    const got = secret
      ? (typeof text === "string" ? "a string without a PEM header" : typeof v)
      : JSON.stringify(typeof text === "string" ? text.slice(0, 60) : typeof v);
    throw new ConfigurationError(
      `${name} must be PEM text ("-----BEGIN ..."), not a file path; got ${got}. Read the ` +
        `file yourself, e.g. ${
          name.replace("ssl.", "")
        }: await Deno.readTextFile("/path/to/file.pem")`,
    );
  }
  return text;
}

/** @internal Validates `ssl`; never echoes `key` or `passphrase`. */
export function resolveTls(ssl: unknown): false | true | ResolvedTls {
  if (ssl === undefined || ssl === false) return false;
  if (ssl === true) return true;
  if (!isRecord(ssl)) {
    throw new ConfigurationError(
      `ssl must be true (trust the system's CAs) or an object { ca, cert, key, passphrase, ` +
        `servername, rejectUnauthorized }, got ${typeof ssl}`,
    );
  }
  unknownKeys("ssl", ssl, TLS_KEYS, {
    certificate: "cert",
    privateKey: "key",
    serverName: "servername",
    checkServerIdentity: "servername (or kafkajs.client.socketFactory for custom checks)",
    verify: "rejectUnauthorized",
  });
  const out: ResolvedTls = { rejectUnauthorized: true };
  if (ssl.ca !== undefined) {
    const list = Array.isArray(ssl.ca) ? ssl.ca : [ssl.ca];
    if (list.length === 0) throw new ConfigurationError("ssl.ca is empty; give a PEM certificate");
    out.ca = list.map((c) => pemText("ssl.ca", c, false));
  }
  if (ssl.cert !== undefined) out.cert = pemText("ssl.cert", ssl.cert, false);
  if (ssl.key !== undefined) out.key = new Secret(pemText("ssl.key", ssl.key, true));
  if ((out.cert === undefined) !== (out.key === undefined)) {
    throw new ConfigurationError(
      "ssl.cert and ssl.key go together (mutual TLS needs the certificate and its key)",
    );
  }
  if (ssl.passphrase !== undefined) {
    if (typeof ssl.passphrase !== "string") {
      throw new ConfigurationError(`ssl.passphrase must be a string, got ${typeof ssl.passphrase}`);
    }
    out.passphrase = new Secret(ssl.passphrase);
  }
  if (ssl.servername !== undefined) {
    if (typeof ssl.servername !== "string" || ssl.servername === "") {
      throw new ConfigurationError(
        `ssl.servername must be a host name, got ${JSON.stringify(ssl.servername)}`,
      );
    }
    out.servername = ssl.servername;
  }
  if (ssl.rejectUnauthorized !== undefined) {
    if (typeof ssl.rejectUnauthorized !== "boolean") {
      throw new ConfigurationError(
        `ssl.rejectUnauthorized must be true or false, got ${
          JSON.stringify(ssl.rejectUnauthorized)
        }`,
      );
    }
    out.rejectUnauthorized = ssl.rejectUnauthorized;
  }
  return out;
}

/** @internal Validates `sasl`; never echoes the password. */
export function resolveSasl(sasl: unknown): ResolvedSasl | undefined {
  if (sasl === undefined) return undefined;
  if (!isRecord(sasl)) {
    throw new ConfigurationError(
      `sasl must be an object like { mechanism: "SCRAM-SHA-512", username, password }, got ${typeof sasl}`,
    );
  }
  const raw = sasl.mechanism;
  const mechanism = typeof raw === "string" ? raw.toLowerCase() : "";
  if (!MECHANISMS.includes(mechanism.toUpperCase())) {
    throw new ConfigurationError(
      `sasl.mechanism must be one of ${MECHANISMS.join(", ")}, got ${JSON.stringify(raw)}` +
        (mechanism === "aws" ? " (AWS IAM is not supported; use SCRAM or OAUTHBEARER)" : ""),
    );
  }
  if (mechanism === "oauthbearer") {
    unknownKeys("sasl (OAUTHBEARER)", sasl, SASL_OAUTH_KEYS, {
      token: "oauthBearerProvider",
      username: "oauthBearerProvider (OAUTHBEARER takes a token, not a user)",
      password: "oauthBearerProvider (OAUTHBEARER takes a token, not a password)",
    });
    if (typeof sasl.oauthBearerProvider !== "function") {
      throw new ConfigurationError(
        "sasl.oauthBearerProvider must be a function returning Promise<{ value: token }> " +
          "(OAUTHBEARER)",
      );
    }
    return {
      mechanism: "oauthbearer",
      oauthBearerProvider: sasl.oauthBearerProvider as () => Promise<{ value: string }>,
    };
  }
  unknownKeys(`sasl (${mechanism.toUpperCase()})`, sasl, SASL_PASSWORD_KEYS, {
    user: "username",
    userName: "username",
    pass: "password",
    secret: "password",
  });
  if (typeof sasl.username !== "string" || sasl.username === "") {
    throw new ConfigurationError(
      `sasl.username must be a non-empty string for ${mechanism.toUpperCase()}`,
    );
  }
  if (typeof sasl.password !== "string" || sasl.password === "") {
    // The password itself is never echoed, not even a wrong-typed one.
    throw new ConfigurationError(
      `sasl.password must be a non-empty string for ${mechanism.toUpperCase()} ` +
        `(got ${sasl.password === "" ? "an empty string" : typeof sasl.password})`,
    );
  }
  return {
    mechanism: mechanism as "plain" | "scram-sha-256" | "scram-sha-512",
    username: sasl.username,
    password: new Secret(sasl.password),
  };
}

/** @internal The kafkajs `ssl` value (secrets revealed: for kafkajs only). */
export function kafkajsSsl(ssl: false | true | ResolvedTls): boolean | tls.ConnectionOptions {
  if (typeof ssl === "boolean") return ssl;
  const out: tls.ConnectionOptions = { rejectUnauthorized: ssl.rejectUnauthorized };
  if (ssl.ca) out.ca = ssl.ca;
  if (ssl.cert) out.cert = ssl.cert;
  if (ssl.key) out.key = ssl.key.reveal();
  if (ssl.passphrase) out.passphrase = ssl.passphrase.reveal();
  if (ssl.servername) out.servername = ssl.servername;
  return out;
}

/** @internal The kafkajs `sasl` value (password revealed: for kafkajs only). */
export function kafkajsSasl(sasl: ResolvedSasl | undefined): Record<string, unknown> | undefined {
  if (sasl === undefined) return undefined;
  if (sasl.mechanism === "oauthbearer") {
    return { mechanism: "oauthbearer", oauthBearerProvider: sasl.oauthBearerProvider };
  }
  return { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password.reveal() };
}

// ---- connecting -----------------------------------------------------------------------

/** What kafkajs passes to a socket factory. */
interface SocketFactoryArgs {
  host: string;
  port: number;
  ssl: tls.ConnectionOptions | null | undefined;
  onConnect: () => void;
}
/** @internal kafkajs's socket factory shape. */
export type SocketFactory = (args: SocketFactoryArgs) => net.Socket;

const CERT_CODES =
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL|HOSTNAME|ALTNAME/;

/** @internal A TLS failure retrying cannot fix (untrusted certificate, host name mismatch...). */
export function isTlsFailure(e: Error & { code?: unknown }): boolean {
  const code = typeof e.code === "string" ? e.code : "";
  return CERT_CODES.test(code) || /certificate|secure TLS connection|SSL routines/i.test(e.message);
}

/**
 * @internal The error for failed SASL credentials (both Kafka backends): names the
 * mechanism, the user and the brokers, never the password.
 */
export function saslFailedError(
  mechanism: string,
  sasl: ResolvedSasl | undefined,
  brokers: string,
  detail: string,
  cause: unknown,
): KafkaAuthenticationError {
  const who = sasl && "username" in sasl ? ` as user "${sasl.username}"` : "";
  return new KafkaAuthenticationError(
    `SASL ${mechanism} authentication${who} at ${brokers} failed: ${detail}; check the ` +
      "credentials and that the cluster enables this mechanism for them",
    mechanism,
    { cause },
  );
}

/**
 * @internal The error for a TLS failure retrying cannot fix (both Kafka backends): the
 * broker's certificate is not trusted at `where` (an address, or the brokers).
 */
export function untrustedCertificateError(
  where: string,
  e: Error & { code?: unknown },
  cause: unknown,
): KafkaTlsError {
  return new KafkaTlsError(
    `TLS handshake with the Kafka broker at ${where} failed: ${e.message}` +
      `${typeof e.code === "string" && e.code ? ` (${e.code})` : ""}; the broker's ` +
      "certificate is not trusted: give its CA as ssl: { ca: <PEM text> } (the system's CAs " +
      "are used otherwise), and check that its certificate names the host you connect to " +
      "(ssl.servername)",
    { cause },
  );
}

/**
 * @internal Watches the sockets of one kafkajs client, so that a connection failure
 * kafkajs would retry until the deadline (an untrusted certificate, a plaintext client at a
 * TLS listener) fails at once with a typed error, and a timeout names what went wrong.
 */
export class ConnectionWatch {
  /** The latest socket error, for the timeout message. */
  last: Error | undefined;
  /** Rejects with the first failure that retrying cannot fix. */
  readonly fatal: Promise<never>;
  #reject!: (e: Error) => void;

  /** The client connects with TLS. */
  readonly tlsEnabled: boolean;

  constructor(tlsEnabled: boolean) {
    this.tlsEnabled = tlsEnabled;
    this.fatal = new Promise<never>((_, reject) => this.#reject = reject);
    this.fatal.catch(() => {}); // observed by connect(); never an unhandled rejection
  }

  /** Wraps `inner` (or kafkajs's behaviour: net or tls.connect) to watch each socket. */
  socketFactory(inner?: unknown): SocketFactory {
    const own = typeof inner === "function" ? inner as SocketFactory : undefined;
    return (args) => {
      const socket = own ? own(args) : defaultSocket(args);
      const address = `${args.host}:${args.port}`;
      socket.once("error", (e: Error & { code?: string }) => {
        this.last = e;
        try {
          this.#onError(e, args, address);
        } catch {
          // A listener must never throw: kafkajs handles the error itself anyway.
        }
      });
      if (!args.ssl) {
        // A TLS listener answers a Kafka request with a TLS record (alert 0x15 or
        // handshake 0x16, version 3.x) and closes; kafkajs would retry until the deadline.
        socket.once("data", (chunk: Uint8Array) => {
          if ((chunk[0] === 0x15 || chunk[0] === 0x16) && chunk[1] === 0x03) {
            this.#reject(
              new KafkaTlsError(
                `the Kafka broker at ${address} speaks TLS but this client does not: set ` +
                  "ssl: true (or ssl: { ca }) and, for a SASL_SSL listener, sasl",
              ),
            );
          }
        });
      }
      return socket;
    };
  }

  /** A TLS failure retrying cannot fix: fail the connect at once with what to change. */
  #onError(e: Error & { code?: string }, args: SocketFactoryArgs, address: string): void {
    if (args.ssl && isTlsFailure(e) && !/before secure TLS/.test(e.message)) {
      const peerAlert = /received fatal alert|_ALERT_/i.test(`${e.message} ${e.code ?? ""}`);
      const hasCert = typeof args.ssl === "object" && args.ssl.cert !== undefined;
      this.#reject(
        peerAlert
          ? new KafkaTlsError(
            `the Kafka broker at ${address} refused the TLS handshake: ${e.message}` +
              `${e.code ? ` (${e.code})` : ""}; ${
                hasCert
                  ? "it does not trust the client certificate (ssl.cert): it must be " +
                    "signed by a CA in the broker's truststore"
                  : "it may require a client certificate (ssl.cert and ssl.key)"
              }`,
            { cause: e },
          )
          : untrustedCertificateError(address, e, e),
      );
    }
  }
}

function defaultSocket({ host, port, ssl, onConnect }: SocketFactoryArgs): net.Socket {
  // As kafkajs's default does: TLS when `ssl` is set, SNI = the broker's host name (never
  // an IP address), keep-alive probes after a minute.
  const sni = net.isIP(host) ? {} : { servername: host };
  const socket = ssl
    ? tls.connect(Object.assign({ host, port }, sni, ssl), onConnect)
    : net.connect({ host, port }, onConnect);
  socket.setKeepAlive(true, 60_000);
  return socket;
}

/** Kafka's name of the failing mechanism, from kafkajs's message ("SASL SCRAM SHA512 ..."). */
function mechanismOf(e: Error, configured: ResolvedSasl | undefined): string {
  if (configured) return kafkaMechanismName(configured.mechanism);
  const m = /SASL (\S+(?: SHA\d+)?)/.exec(e.message);
  return m ? m[1].replace(/ /g, "-").replace(/SHA(\d)/, "SHA-$1") : "SASL";
}

/** @internal `e`, then the errors it wraps (`cause`), while they are errors: at most 10. */
export function* chain(e: unknown): Generator<Error & { code?: unknown }> {
  const seen = new Set<unknown>();
  while (e instanceof Error && !seen.has(e) && seen.size < 10) {
    seen.add(e);
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/**
 * @internal The typed error for a kafkajs connect failure caused by SASL or TLS (no secrets
 * in it), or undefined when `e` is no such failure.
 */
export function connectSecurityError(
  e: unknown,
  brokers: string,
  sasl: ResolvedSasl | undefined,
): KafkaAuthenticationError | KafkaTlsError | undefined {
  for (const c of chain(e)) {
    if (c.name === "KafkaJSSASLAuthenticationError") {
      const detail = c.message.replace(/^SASL .*? authentication failed: /, "");
      return saslFailedError(mechanismOf(c, sasl), sasl, brokers, detail, e);
    }
    if ((c as { type?: unknown }).type === "ILLEGAL_SASL_STATE" && sasl) {
      const mechanism = kafkaMechanismName(sasl.mechanism);
      return new KafkaAuthenticationError(
        `the Kafka listener at ${brokers} does not take SASL (${c.message}): drop sasl, or ` +
          "connect to the cluster's SASL_SSL (or SASL_PLAINTEXT) port",
        mechanism,
        { cause: e },
      );
    }
    if (isTlsFailure(c) && !/before secure TLS/.test(c.message)) {
      return untrustedCertificateError(brokers, c, e);
    }
  }
  return undefined;
}
