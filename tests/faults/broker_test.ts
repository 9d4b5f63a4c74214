/**
 * Fault injection, quick variant: (c) the broker killed with kill -9 and restarted on its data.
 * Separate member processes, judged from their logs and the broker's sampled committed
 * offsets (see harness.ts and docs/fault-testing.md). The long variant: `deno task faults`.
 */
import { faultTest } from "./fault_test_helpers.ts";
import { broker } from "./scenarios.ts";

faultTest(broker);
