/**
 * What per-key ordering costs: `KeyedConcurrency` (at most one call per key at a time)
 * against unkeyed `RunTaskAsync` at the same concurrency, LocalBroker → step →
 * CommitOffsets under the StreamProcessor, with keys drawn from a Zipf distribution (a few
 * hot keys, a long tail: with all-distinct keys, key ordering would be free) and a sweep of
 * simulated I/O latency per message (0, 100 and 1 000 µs by default).
 *
 * Run: `deno run -A bench/keyed.ts [--quick] [--messages N] [--repeat N] [--keys K]
 * [--zipf S] [--concurrency C] [--work 0,100,1000]`
 *
 * The work is a wait, not CPU: a call asks a simulated device to answer after the given
 * number of microseconds (the device checks its queue on `MessageChannel` turns, so waits
 * under a millisecond are possible; 0 µs calls do not wait at all). Both steps use the
 * same device, so the comparison is fair even though the device itself costs some CPU
 * while calls are waiting. Figures: best and median msg/s of interleaved rounds, CPU ns
 * per message (this process, all threads), and the ideal rate of each variant (messages
 * over the time the work alone takes at that concurrency; for the keyed step also bounded
 * by the hottest key, whose messages run one at a time). `KEYED_DEBUG=1` also prints each
 * run's processor stats.
 *
 * @module
 */
import {
  CommitOffsets,
  CommitPolicy,
  KeyedConcurrency,
  type Message,
  RunTaskAsync,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import { cpuSeconds, fmtRate, machineNotes, median, printTable, turn } from "./lib.ts";

function num(name: string, dflt: number): number {
  const i = Deno.args.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(Deno.args[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} needs a number >= 0`);
  return v;
}

const QUICK = Deno.args.includes("--quick");
const MESSAGES = Math.round(num("--messages", QUICK ? 5_000 : 20_000));
const REPEAT = Math.round(num("--repeat", QUICK ? 1 : 3));
const KEYS = Math.round(num("--keys", 1000));
const ZIPF = num("--zipf", 1.0);
const CONCURRENCY = Math.round(num("--concurrency", 32));
const wi = Deno.args.indexOf("--work");
const WORK_US = wi >= 0 ? Deno.args[wi + 1].split(",").map(Number) : [0, 100, 1000];

/** Keys 0..k-1 with P(key i) proportional to 1 / (i + 1)^s, drawn by a seeded generator. */
export function zipfKeys(n: number, k: number, s: number, seed = 42): Uint32Array {
  const cdf = new Float64Array(k);
  let sum = 0;
  for (let i = 0; i < k; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  let x = seed >>> 0;
  const out = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    // xorshift32: the same keys in every run.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const u = (x / 4294967296) * sum;
    let lo = 0;
    let hi = k - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    out[j] = lo;
  }
  return out;
}

/**
 * A simulated I/O device: `wait(us)` resolves once `us` microseconds have passed. It
 * checks its queue on a `MessageChannel` turn (a macrotask without the timers' 1 ms
 * clamp), and sleeps on a timer when the next answer is more than 2 ms away.
 */
class Device {
  #due: Array<{ at: number; resolve: () => void }> = [];
  #running = false;
  readonly #channel = new MessageChannel();
  #tick: (() => void) | undefined;
  constructor() {
    this.#channel.port1.onmessage = () => this.#tick?.();
  }
  wait(us: number): Promise<void> {
    return new Promise((resolve) => {
      this.#due.push({ at: performance.now() + us / 1000, resolve });
      if (!this.#running) {
        this.#running = true;
        this.#loop();
      }
    });
  }
  #turn(): Promise<void> {
    return new Promise((r) => {
      this.#tick = r;
      this.#channel.port2.postMessage(0);
    });
  }
  async #loop(): Promise<void> {
    while (this.#due.length > 0) {
      let next = Infinity;
      for (const d of this.#due) next = Math.min(next, d.at);
      const wait = next - performance.now();
      if (wait > 2) await new Promise((r) => setTimeout(r, wait - 1));
      else await this.#turn();
      const now = performance.now();
      const keep: Array<{ at: number; resolve: () => void }> = [];
      for (const d of this.#due) d.at <= now ? d.resolve() : keep.push(d);
      this.#due = keep;
    }
    this.#running = false;
  }
  close(): void {
    this.#channel.port1.close();
    this.#channel.port2.close();
  }
}

interface Job {
  key: number;
}

type Variant = "keyed" | "unkeyed";

async function runOnce(
  variant: Variant,
  keys: Uint32Array,
  workUs: number,
): Promise<{ rate: number; cpuNs: number }> {
  const broker = new LocalBroker<Job>();
  const topic = broker.createTopic("keyed", 1);
  for (let i = 0; i < keys.length; i++) broker.produce(topic, { key: keys[i] });
  const device = new Device();
  const group = `keyed-${crypto.randomUUID().slice(0, 8)}`;
  let done = 0;
  const total = keys.length;
  const fn = async (m: Message<Job>) => {
    if (workUs > 0) await device.wait(workUs);
    if (++done === total) processor.signalShutdown();
    return m.payload.key;
  };
  const processor: StreamProcessor<Job> = new StreamProcessor<Job>({
    consumer: broker.getConsumer(group),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    handleSignals: false,
    // Not 0: with every message polled and calls still waiting, a 0 ms poll would spin the
    // processor loop against the device; 5 ms costs at most 5 ms at the end of a run.
    pollTimeoutMs: 5,
    factory: {
      createWithPartitions: (commit) =>
        variant === "keyed"
          ? new KeyedConcurrency(fn, new CommitOffsets(commit), {
            key: (m) => m.payload.key,
            maxInFlight: CONCURRENCY,
          })
          : new RunTaskAsync(fn, new CommitOffsets(commit), { concurrency: CONCURRENCY }),
    },
  });
  const c0 = cpuSeconds();
  const t0 = performance.now();
  await processor.run();
  device.close();
  if (Deno.env.get("KEYED_DEBUG")) console.error(variant, workUs, JSON.stringify(processor.stats));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - c0;
  if (done !== total) throw new Error(`${variant}: ${done} of ${total} processed`);
  const committed = broker.committed(group).get(broker.partitions(topic)[0]);
  if (committed !== total) throw new Error(`${variant}: committed ${committed} of ${total}`);
  return { rate: total / seconds, cpuNs: cpu * 1e9 / total };
}

if (import.meta.main) {
  const keys = zipfKeys(MESSAGES, KEYS, ZIPF);
  const counts = new Map<number, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  const hottest = Math.max(...counts.values());
  console.log(
    `\n## Keyed concurrency: ${MESSAGES} messages, ${counts.size} distinct keys of ${KEYS} ` +
      `(Zipf s=${ZIPF}; hottest key ${(100 * hottest / MESSAGES).toFixed(1)}% of messages), ` +
      `concurrency ${CONCURRENCY}, best of ${REPEAT}\n`,
  );
  console.log(machineNotes());
  // Warm-up: both paths once, small.
  const warm = zipfKeys(Math.min(MESSAGES, 2000), KEYS, ZIPF, 7);
  await runOnce("keyed", warm, 0);
  await runOnce("unkeyed", warm, 0);
  const rows: string[][] = [];
  for (const us of WORK_US) {
    const r: Record<Variant, { rate: number[]; cpu: number[] }> = {
      keyed: { rate: [], cpu: [] },
      unkeyed: { rate: [], cpu: [] },
    };
    for (let i = 0; i < REPEAT; i++) {
      for (const v of (i % 2 === 0 ? ["unkeyed", "keyed"] : ["keyed", "unkeyed"]) as Variant[]) {
        const x = await runOnce(v, keys, us);
        r[v].rate.push(x.rate);
        r[v].cpu.push(x.cpuNs);
        await turn();
      }
    }
    // Ideal rates: the work alone at this concurrency; keyed also serialises the hottest key.
    const idealUnkeyed = us === 0 ? Infinity : CONCURRENCY * 1e6 / us;
    const idealKeyed = us === 0
      ? Infinity
      : Math.min(idealUnkeyed, MESSAGES / (hottest * us / 1e6));
    for (const v of ["unkeyed", "keyed"] as Variant[]) {
      const ideal = v === "keyed" ? idealKeyed : idealUnkeyed;
      rows.push([
        String(us),
        v === "keyed" ? "KeyedConcurrency (maxInFlight)" : "RunTaskAsync (concurrency)",
        fmtRate(Math.max(...r[v].rate)),
        fmtRate(median(r[v].rate)),
        median(r[v].cpu).toFixed(0),
        Number.isFinite(ideal) ? fmtRate(ideal) : "—",
        v === "keyed"
          ? `${(100 * median(r.keyed.rate) / median(r.unkeyed.rate)).toFixed(1)}%`
          : "100%",
      ]);
    }
  }
  printTable(
    `LocalBroker → step → CommitOffsets, concurrency ${CONCURRENCY}, Zipf s=${ZIPF} over ${KEYS} keys`,
    [
      "work µs/msg",
      "step",
      "msg/s (best)",
      "msg/s (median)",
      "CPU ns/msg (median)",
      "ideal msg/s",
      "vs unkeyed (medians)",
    ],
    rows,
  );
}
