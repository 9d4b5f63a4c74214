/**
 * Registers the quick variant of a fault scenario as a test (not a test file itself).
 * It needs java and the broker jars (a private broker per scenario); without them it is
 * ignored with a warning, and fails under `CI=true`, like the other Kafka suites.
 */
import { HEADER, row } from "./harness.ts";
import { runScenario, type Scenario } from "./scenarios.ts";
import { privateBrokerMissing, privateBrokerTest } from "../integration/private_broker.ts";

const missing = await privateBrokerMissing();

/** `faults: <name>`: one quick run; fails with the evidence when a check fails. */
export function faultTest(scenario: Scenario): void {
  privateBrokerTest(
    `faults: ${scenario.title}: nothing lost, nothing committed ahead, every member exits`,
    async () => {
      const v = await runScenario(scenario, "quick");
      console.log(`${HEADER}\n${row(v, 1)}`);
      if (!v.ok) {
        throw new Error(
          `fault scenario ${scenario.name} failed:\n${HEADER}\n${row(v, 1)}\n${
            v.evidence.map((e) => `  ${e}`).join("\n")
          }`,
        );
      }
    },
    missing,
  );
}
