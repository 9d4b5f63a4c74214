/**
 * Liveness and readiness for a consumer: a `Healthcheck` step touches a file from the
 * main loop and serves `/healthz` and `/readyz` on an ephemeral port. The example
 * fetches both once while the consumer runs, then shuts down.
 * Run: `deno run -A examples/health.ts`
 */
import { CommitOffsets, StreamProcessor } from "../mod.ts";
import { Healthcheck, HealthServer } from "../health.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const broker = new LocalBroker<string>();
const topic = broker.createTopic("events", 2);
for (let i = 0; i < 100; i++) broker.produce(topic, `event ${i}`);

const file = await Deno.makeTempFile({ prefix: "sluice-health-" });
// One server for the whole process, shared by every pipeline the processor creates, so
// the endpoint stays up across rebalances.
const server = new HealthServer({ port: 0, livenessTimeoutMs: 5000 });
console.log(`health endpoints on http://127.0.0.1:${server.port} (file ${file})`);

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("health-demo"),
  topics: [topic],
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new Healthcheck(new CommitOffsets(commit), { file, intervalMs: 100, http: server }),
  },
});
// Watching the processor: its loop counts as a heartbeat between pipelines, rebalances get
// a grace period, partitions' progress is checked, and /status serves processor.status().
server.watch(processor);

const before = await fetch(`http://127.0.0.1:${server.port}/readyz`);
console.log(`before run:  GET /readyz  -> ${before.status} ${await before.text()}`);

const run = processor.run();
while (broker.committed("health-demo").size < 2) await new Promise((r) => setTimeout(r, 10));
await new Promise((r) => setTimeout(r, 150));

for (const path of ["/healthz", "/readyz", "/status"]) {
  const res = await fetch(`http://127.0.0.1:${server.port}${path}`);
  console.log(`while running: GET ${path.padEnd(8)} -> ${res.status} ${await res.text()}`);
}
const stat = await Deno.stat(file);
console.log(`healthcheck file last touched ${Date.now() - stat.mtime!.getTime()} ms ago`);

processor.signalShutdown();
await run;
const after = await fetch(`http://127.0.0.1:${server.port}/readyz`);
console.log(`after shutdown: GET /readyz -> ${after.status} ${await after.text()}`);
await server.close();
await Deno.remove(file);
console.log("server closed; done");
