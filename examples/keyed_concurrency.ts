/**
 * KeyedConcurrency: ledger updates for 8 accounts. Each update calls a service that takes
 * 1–30 ms. Accounts are processed in parallel (up to 8 calls at once), one account's
 * updates strictly in order — and commits only ever cover the contiguous completed prefix.
 *
 * Run: `deno run -A examples/keyed_concurrency.ts`
 */
import {
  CommitOffsets,
  CommitPolicy,
  KeyedConcurrency,
  type Message,
  type Partition,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

interface Update {
  account: string;
  seq: number;
}

const TOTAL = 400;
const broker = new LocalBroker<Update>();
const topic = broker.createTopic("ledger", 2);
const seqs = new Map<string, number>();
for (let i = 0; i < TOTAL; i++) {
  const account = `acct-${i % 8}`;
  const seq = (seqs.get(account) ?? 0) + 1;
  seqs.set(account, seq);
  broker.produce(topic, { account, seq }, { key: account });
}

const applied = new Map<string, number>(); // last seq applied per account
const completions: string[] = [];
let outOfOrderAccounts = 0;
const commits: string[] = [];
let step: KeyedConcurrency<Update, string> | undefined;

const processor = new StreamProcessor<Update>({
  consumer: broker.getConsumer("ledger"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 100 }),
  handleSignals: false,
  factory: {
    createWithPartitions(commit) {
      const recordingCommit = (offsets: ReadonlyMap<Partition, number>, force?: boolean) => {
        if (offsets.size > 0) {
          commits.push([...offsets].map(([p, o]) => `${p}<${o}`).join(" "));
        }
        commit(offsets, force);
      };
      return step = new KeyedConcurrency(
        async (m: Message<Update>) => {
          const { account, seq } = m.payload;
          await new Promise((r) => setTimeout(r, 1 + Math.random() * 29)); // the service call
          if ((applied.get(account) ?? 0) !== seq - 1) outOfOrderAccounts++;
          applied.set(account, seq);
          completions.push(`${account}#${seq}`);
          return `${account}#${seq}`;
        },
        new CommitOffsets(recordingCommit),
        { name: "ledger", key: (m) => m.payload.account, maxInFlight: 8 },
      );
    },
  },
});

const started = performance.now();
const running = processor.run({ untilCaughtUp: true });
const report = setInterval(() => {
  const w = step ? [...step.watermarks()].map(([p, o]) => `${p}<${o}`).join(" ") : "";
  console.log(
    `completed ${String(step?.completed ?? 0).padStart(3)} | in flight ${step?.inFlight ?? 0} | ` +
      `commit watermark ${w}`,
  );
}, 200);
await running;
clearInterval(report);

const seconds = (performance.now() - started) / 1000;
console.log(
  `\nfirst completions (across accounts, out of offset order): ${
    completions.slice(0, 8).join(" ")
  }`,
);
console.log("\nsummary");
console.log(`  updates applied       ${completions.length} in ${seconds.toFixed(1)} s`);
console.log(`  most calls at once    ${step!.maxObservedInFlight} (maxInFlight 8)`);
console.log(
  `  per-account order     ${
    outOfOrderAccounts === 0 ? "kept for every account" : `${outOfOrderAccounts} violations`
  }`,
);
console.log(`  sequential would take ~${(TOTAL * 15.5 / 1000).toFixed(1)} s`);
console.log(`  commits               ${commits.length}, e.g. ${commits.slice(0, 3).join(" | ")}`);
console.log(
  `  committed offsets     ${
    [...broker.committed("ledger")].map(([p, o]) => `${p}=${o}`).join(" ")
  }`,
);
