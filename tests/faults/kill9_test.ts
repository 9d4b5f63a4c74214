/**
 * Fault injection, quick variant: (a) kill -9 of a random member every 2-5 s, restarted at once.
 * Separate member processes, judged from their logs and the broker's sampled committed
 * offsets (see harness.ts and docs/fault-testing.md). The long variant: `deno task faults`.
 */
import { faultTest } from "./fault_test_helpers.ts";
import { kill9 } from "./scenarios.ts";

faultTest(kill9);
