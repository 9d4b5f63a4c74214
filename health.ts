/**
 * Health for orchestrators: the `Healthcheck` step (a pipeline that moves is alive) and the
 * `HealthServer` that answers liveness, readiness and `/status` over HTTP from a processor's
 * status. Import from `@sluice/sluice/health`.
 *
 * @example
 * ```ts
 * import { CommitOffsets, StreamProcessor } from "@sluice/sluice";
 * import { Healthcheck, HealthServer } from "@sluice/sluice/health";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("g"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new Healthcheck(new CommitOffsets(commit)) },
 *   handleSignals: false,
 * });
 * const server = new HealthServer({ processor, port: 0 });
 * await server.close();
 * ```
 *
 * @module
 */
export { Healthcheck, type HealthcheckOptions } from "./strategies/healthcheck.ts";
export {
  HealthServer,
  type HealthServerOptions,
  type HealthSource,
  type HealthStatus,
  type PartitionHealth,
} from "./strategies/health_server.ts";
