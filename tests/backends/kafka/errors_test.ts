/**
 * Which kafkajs errors make a commit worth retrying (no broker needed): the shapes kafkajs
 * really throws during a broker outage are transient; authorization and bad input are not.
 */
import { assert } from "@std/assert";
import kafkajs from "kafkajs";
import { isTransientKafkaError } from "../../../backends/kafka/errors.ts";

type Ctor = new (e: unknown, options?: unknown) => Error;
const NonRetriable = kafkajs.KafkaJSNonRetriableError as unknown as Ctor;
const RetriesExceeded = kafkajs.KafkaJSNumberOfRetriesExceeded as unknown as Ctor;
const Protocol = kafkajs.KafkaJSProtocolError as unknown as Ctor;
// Exported by kafkajs, missing from its type declarations.
const untyped = kafkajs as unknown as Record<string, Ctor>;
const ConnectionClosed = untyped.KafkaJSConnectionClosedError;
const NoBrokerAvailable = untyped.KafkaJSNoBrokerAvailableError;

function protocolError(type: string, code: number, retriable: boolean): Error {
  return new Protocol({ message: `${type} from the broker`, type, code, retriable });
}

const refused = new kafkajs.KafkaJSConnectionError("Connection error: connect ECONNREFUSED");

Deno.test("kafka commit errors: outage-shaped errors are transient", () => {
  const transient: [string, unknown][] = [
    ["a refused connection", refused],
    // kafkajs's retrier wraps an error its callback bailed on, keeping it as the cause.
    ["a refused connection wrapped by bail()", new NonRetriable(refused, { cause: refused })],
    [
      "retries exhausted on a refused connection",
      new RetriesExceeded(refused, { retryCount: 5, retryTime: 1000 }),
    ],
    ["a closed connection", new ConnectionClosed("Closed connection")],
    ["no broker reachable at all", new NoBrokerAvailable("No broker available")],
    ["a request timeout", new kafkajs.KafkaJSRequestTimeoutError("Request timed out")],
    ["a coordinator still loading", protocolError("COORDINATOR_LOAD_IN_PROGRESS", 14, true)],
    ["no coordinator yet", protocolError("COORDINATOR_NOT_AVAILABLE", 15, true)],
  ];
  for (const [what, e] of transient) assert(isTransientKafkaError(e), `${what} is transient`);
});

Deno.test("kafka commit errors: authorization, bad input and bugs are not transient", () => {
  const self = new Error("loops");
  (self as { cause?: unknown }).cause = self;
  const fatal: [string, unknown][] = [
    ["an authorization failure", protocolError("GROUP_AUTHORIZATION_FAILED", 30, false)],
    ["an offset kafkajs refuses", new NonRetriable("Invalid offset, expected a long")],
    // kafkajs retries any error not marked otherwise; running out says nothing by itself.
    [
      "retries exhausted on an unexplained error",
      new RetriesExceeded(new kafkajs.KafkaJSError("unexpected"), { retryCount: 5, retryTime: 9 }),
    ],
    ["a bug in our code", new TypeError("x is undefined")],
    ["an error that is its own cause", self],
    ["a thrown string", "boom"],
    ["undefined", undefined],
  ];
  for (const [what, e] of fatal) assert(!isTransientKafkaError(e), `${what} is not transient`);
});
