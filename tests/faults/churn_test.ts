/**
 * Fault injection, quick variant: (b) members joining and leaving gracefully every 1-3 s.
 * Separate member processes, judged from their logs and the broker's sampled committed
 * offsets (see harness.ts and docs/fault-testing.md). The long variant: `deno task faults`.
 */
import { faultTest } from "./fault_test_helpers.ts";
import { churn } from "./scenarios.ts";

faultTest(churn);
