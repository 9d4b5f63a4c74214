/** kafkajs's log routed through Sluice's (backends/kafka/log.ts), without a broker. */
import { assertEquals, assertStringIncludes } from "@std/assert";
import { KafkajsLog } from "../../../backends/kafka/log.ts";

function capture(fn: () => void): { warn: string[]; error: string[] } {
  const out = { warn: [] as string[], error: [] as string[] };
  const { warn, error } = console;
  console.warn = (...a: unknown[]) => void out.warn.push(a.join(" "));
  console.error = (...a: unknown[]) => void out.error.push(a.join(" "));
  try {
    fn();
  } finally {
    console.warn = warn;
    console.error = error;
  }
  return out;
}

const entry = (level: number, message: string, extra: Record<string, unknown> = {}) => ({
  namespace: "Connection",
  level,
  label: "ERROR",
  log: { timestamp: "t", logger: "kafkajs", message, stack: "Error: x\n    at y", ...extra },
});

Deno.test("kafkajs log: transient errors are one warning per window, counted; others are errors without stacks", () => {
  let counted = 0;
  const log = new KafkajsLog(() => counted++);
  const write = log.creator(1);
  const out = capture(() => {
    for (let i = 0; i < 50; i++) {
      write(entry(1, "Response Heartbeat(key: 12, version: 3)", {
        error: "The group is rebalancing, so a rejoin is needed",
      }));
      write(entry(1, "Connection error: connect ECONNREFUSED 127.0.0.1:9092"));
    }
    write(entry(1, "Response SaslAuthenticate", { error: "Authentication failed" }));
  });
  assertEquals(counted, 100);
  assertEquals(log.counts, { transient: 100, errors: 1 });
  assertEquals(out.warn.length, 1, out.warn.join("\n"));
  assertStringIncludes(out.warn[0], "rebalancing");
  assertEquals(out.error.length, 1);
  assertStringIncludes(out.error[0], "Authentication failed");
  for (const line of [...out.warn, ...out.error]) {
    assertEquals(/\bERROR\b|\n\s+at /.test(line), false, line);
  }
});
