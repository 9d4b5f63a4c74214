/**
 * The @platformatic/kafka backend's error mapping (backends/platformatic/errors.ts), without
 * a broker: a SASL or TLS failure reads as it does from the kafkajs backend.
 */
import { assertEquals, assertInstanceOf } from "@std/assert";
import {
  isRebalanceError,
  isTransient,
  securityError,
} from "../../../backends/platformatic/errors.ts";
import { classifyConnectError } from "../../../backends/kafka/_client.ts";
import {
  KafkaAuthenticationError,
  KafkaTlsError,
  resolveSasl,
} from "../../../backends/kafka/security.ts";

const BROKERS = "127.0.0.1:9093";
const sasl = resolveSasl({ mechanism: "SCRAM-SHA-512", username: "svc", password: "pw" });

Deno.test("platformatic errors: a SASL failure is the kafkajs backend's KafkaAuthenticationError, in its words", () => {
  const plt = securityError(
    new Error("Cannot connect to any broker.", {
      cause: Object.assign(new Error("invalid credentials."), { code: "PLT_KFK_AUTHENTICATION" }),
    }),
    { brokers: [BROKERS], sasl },
  );
  const kafkajs = classifyConnectError(
    Object.assign(new Error("SASL SCRAM SHA512 authentication failed: invalid credentials"), {
      name: "KafkaJSSASLAuthenticationError",
    }),
    BROKERS,
    sasl,
  );
  assertInstanceOf(plt, KafkaAuthenticationError);
  assertInstanceOf(kafkajs, KafkaAuthenticationError);
  assertEquals(plt.message, kafkajs.message);
  assertEquals(plt.mechanism, "SCRAM-SHA-512");
});

Deno.test("platformatic errors: an untrusted certificate is the kafkajs backend's KafkaTlsError, in its words", () => {
  const cert = () =>
    Object.assign(new Error("self-signed certificate in certificate chain"), {
      code: "SELF_SIGNED_CERT_IN_CHAIN",
    });
  const plt = securityError(new Error("Cannot connect to any broker.", { cause: cert() }), {
    brokers: [BROKERS],
    sasl: undefined,
  });
  const kafkajs = classifyConnectError(
    new Error("Connection error", { cause: cert() }),
    BROKERS,
    undefined,
  );
  assertInstanceOf(plt, KafkaTlsError);
  assertInstanceOf(kafkajs, KafkaTlsError);
  assertEquals(plt.message, kafkajs.message);
});

Deno.test("platformatic errors: rebalances and passing failures are found however deeply nested", () => {
  const nested = (flag: Record<string, unknown>) =>
    new AggregateError([new Error("x"), Object.assign(new Error("y"), flag)], "outer");
  assertEquals(isRebalanceError(nested({ needsRejoin: true })), true);
  assertEquals(isRebalanceError(nested({ rebalanceInProgress: true })), true);
  assertEquals(isTransient(new Error("z", { cause: nested({ canRetry: true }) })), true);
  assertEquals(isTransient(nested({ hasStaleMetadata: true })), true);
  assertEquals([isRebalanceError(new Error("w")), isTransient("boom")], [false, false]);
});
