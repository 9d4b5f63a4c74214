/**
 * Fault injection, quick variant: (d) one partition: a backpressured member holding a big poll, another member joins for 4 s.
 * Separate member processes, judged from their logs and the broker's sampled committed
 * offsets (see harness.ts and docs/fault-testing.md). The long variant: `deno task faults`.
 */
import { faultTest } from "./fault_test_helpers.ts";
import { handback } from "./scenarios.ts";

faultTest(handback);
