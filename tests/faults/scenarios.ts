/**
 * The fault scenarios of issue 13, each in a quick size (for `deno task test`) and a long
 * one (the sizes, for `deno task faults`). Not a test file; see
 * docs/fault-testing.md.
 */
import { between, FaultRun, type RunOptions, type Verdict } from "./harness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The sizes of one scenario run. */
export interface Sizes {
  messages: number;
  /** Records a second each member processes at most. */
  rate: number;
  /** (a) kills; (b) churn seconds; (c) outage ms range; (d) unused. */
  faults: number;
  /** (c) broker outage [min, max] ms. */
  outageMs?: [number, number];
  settleMs: number;
}

/** A scenario: its sizes and what it does between set-up and judgement. */
export interface Scenario {
  name: string;
  title: string;
  partitions: number;
  quick: Sizes;
  long: Sizes;
  /** Extra member settings. */
  member?: Partial<RunOptions["member"]>;
  /** The fault phase; leaves the members that should finish the work running. */
  faults(run: FaultRun, sizes: Sizes): Promise<number>;
}

/**
 * Members process their share of a two-second window at once, then hold back until the
 * window ends and pause after the default second of it: a rebalance often reaches a member
 * that is backpressured and about to pause.
 */
const SLOW_WINDOWS = { windowMs: 2000, pauseAfterMs: 1000 };

/** (a) 3 members, 6 partitions; kill -9 of a random member every 2-5 s, restarted at once. */
export const kill9: Scenario = {
  name: "kill9",
  title: "kill -9 of a random member every 2-5 s, restarted at once",
  partitions: 6,
  quick: { messages: 9000, rate: 400, faults: 3, settleMs: 90_000 },
  long: { messages: 100_000, rate: 800, faults: 10, settleMs: 180_000 },
  member: SLOW_WINDOWS,
  async faults(run, sizes) {
    for (let i = 0; i < 3; i++) run.spawn();
    await run.awaitProgress(2000, 60_000);
    for (let k = 0; k < sizes.faults; k++) {
      await sleep(between(2000, 5000));
      run.superviseTo(3);
      const live = run.live();
      const victim = live[Math.floor(Math.random() * live.length)];
      await run.kill(victim);
      run.spawn();
    }
    return 3;
  },
};

/** (b) Members join and leave gracefully every 1-3 s for T s (between 1 and 4 members). */
export const churn: Scenario = {
  name: "churn",
  title: "members join and leave gracefully every 1-3 s",
  partitions: 6,
  quick: { messages: 9000, rate: 400, faults: 12, settleMs: 90_000 },
  long: { messages: 100_000, rate: 700, faults: 60, settleMs: 180_000 },
  member: SLOW_WINDOWS,
  async faults(run, sizes) {
    for (let i = 0; i < 2; i++) run.spawn();
    await run.awaitProgress(2000, 60_000);
    const until = Date.now() + sizes.faults * 1000;
    while (Date.now() < until) {
      await sleep(between(1000, 3000));
      const live = run.live();
      const join = live.length <= 1 || (live.length < 4 && Math.random() < 0.5);
      if (join) run.spawn();
      else run.leave(live[Math.floor(Math.random() * live.length)]);
    }
    return 2;
  },
};

/** (c) The broker is killed (kill -9), stays down 15-25 s and restarts on its data. */
export const broker: Scenario = {
  name: "broker",
  title: "broker kill -9, down, restarted on its data dir",
  partitions: 6,
  quick: { messages: 9000, rate: 400, faults: 1, outageMs: [7000, 9000], settleMs: 120_000 },
  long: {
    messages: 100_000,
    rate: 800,
    faults: 1,
    outageMs: [15_000, 25_000],
    settleMs: 120_000,
  },
  member: SLOW_WINDOWS,
  async faults(run, sizes) {
    for (let i = 0; i < 3; i++) run.spawn();
    await run.awaitProgress(2000, 60_000);
    await sleep(between(1000, 3000));
    await run.broker.kill();
    const down = between(...sizes.outageMs!);
    run.say(`broker killed (kill -9), down for ${(down / 1000).toFixed(1)} s`);
    await sleep(down);
    await run.broker.start();
    run.say("broker restarted on its data");
    return 3;
  },
};

/**
 * (d) One partition: member A is backpressured while it holds most of a 5 000-message
 * poll (it processed `faults` records and holds back until released); member B joins,
 * stays 4 s, leaves; then A is released. A must resume at the committed offset.
 */
export const handback: Scenario = {
  name: "handback",
  title: "one partition: a backpressured member holding a big poll, another joins 4 s",
  partitions: 1,
  // `rate` is B's: B processes a few hundred records, far fewer than A had polled.
  quick: { messages: 20_000, rate: 100, faults: 2048, settleMs: 90_000 },
  long: { messages: 20_000, rate: 100, faults: 2048, settleMs: 120_000 },
  // A few record batches per fetch, so a second fetch round waits in kafkajs while the first
  // is handed out; a pause that comes late (after the rebalance began).
  member: { maxPollMessages: 5000, maxBytesPerPartition: 64 * 1024, pauseAfterMs: 3000 },
  async faults(run, sizes) {
    // The round-robin assigner gives the partition to the member whose id sorts first: B
    // while it is in the group, so the partition goes to B and comes back to A.
    const a = run.spawn({ clientId: "sluice-fault-2-A", rate: 0, holdAfter: sizes.faults }, "A");
    await run.awaitProgress(sizes.faults, 60_000);
    await sleep(1000);
    const b = run.spawn({ clientId: "sluice-fault-1-B" }, "B");
    // B is in the group once its pipeline was created for its assignment (or after 20 s).
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const text = await Deno.readTextFile(b.log).catch(() => "");
      if (text.includes("A ")) break;
      await sleep(100);
    }
    await sleep(4000);
    await run.leave(b);
    // The partition comes back to A, which is released once it has it again.
    await sleep(1000);
    if (!a.exited) a.proc.kill("SIGUSR2");
    run.say("A released (SIGUSR2)");
    return 1;
  },
};

/** All scenarios by name. */
export const SCENARIOS: Record<string, Scenario> = { kill9, churn, broker, handback };

/** Runs one scenario once and returns its verdict. */
export async function runScenario(
  scenario: Scenario,
  size: "quick" | "long",
  options: { verbose?: boolean; keepLogs?: boolean } = {},
): Promise<Verdict> {
  const sizes = scenario[size];
  const run = new FaultRun({
    scenario: scenario.name,
    partitions: scenario.partitions,
    messages: sizes.messages,
    member: { rate: sizes.rate, ...scenario.member },
    settleMs: sizes.settleMs,
    exitMs: 20_000,
    verbose: options.verbose,
    keepLogs: options.keepLogs,
  });
  try {
    await run.setUp();
    const want = await scenario.faults(run, sizes);
    await run.settle(want);
    await run.stopAll();
    return await run.judge();
  } finally {
    await run.tearDown();
  }
}
