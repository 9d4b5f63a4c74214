import { PlatformaticConsumer } from "../backends/platformatic/mod.ts";
import { createTopic, testKafka, unique, testProducer } from "../tests/integration/kafka_helpers.ts";
const brokers = "127.0.0.1:19560";
const kafka = testKafka(brokers);
const topic = unique("dbg"); const group = unique("g");
await createTopic(kafka, topic, 6);
const p = testProducer(kafka); await p.connect();
await p.send({ topic, messages: Array.from({ length: 60 }, (_, i) => ({ value: String(i), partition: i % 6 })) });
const t0 = performance.now();
const log = (...a: unknown[]) => console.log(((performance.now() - t0) / 1000).toFixed(2), ...a);
const mk = (name: string) => {
  const c = new PlatformaticConsumer({ brokers, group, clientId: name, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, rebalanceTimeoutMs: 10000, maxWaitTimeMs: 100, logLevel: "nothing", groupProtocol: Deno.args[0] === "848" ? "consumer" : "classic" });
  c.subscribe([topic], {
    onAssign: (ps) => log(name, "assign", [...ps].map(([p, o]) => `${p}@${o}`).join(" ")),
    onRevoke: async (ps) => { log(name, "revoke", ps.map(String).join(" ")); const t = c.tell(); c.stageOffsets(new Map(ps.map((p) => [p, t.get(p)!]))); log(name, "committed", [...(await c.commitOffsets())].map(([p, o]) => `${p}@${o}`).join(" ")); },
  });
  let stop = false; let n = 0;
  const loop = (async () => { while (!stop) { n += (await c.poll(100)).length; } })();
  return { c, close: async () => { stop = true; await loop; await c.close(); log(name, "closed", n); } };
};
const a = mk("a"); const b = mk("b");
await new Promise(r => setTimeout(r, 8000));
log("--- c joins");
const c = mk("c");
await new Promise(r => setTimeout(r, 8000));
log("--- b leaves");
await b.close();
await new Promise(r => setTimeout(r, 8000));
await a.close(); await c.close(); await p.disconnect();
log("done");
