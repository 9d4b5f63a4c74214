/**
 * The fault-injection harness (not a test file): a private broker, a topic filled by an
 * idempotent producer, group members as separate processes (`member.ts`), faults injected
 * from outside, the broker's committed offsets sampled every ~200 ms, and a verdict judged
 * only from what can be seen outside the members: their log files, the samples and how
 * each process ended. See docs/fault-testing.md.
 */
import type { Admin, Kafka } from "kafkajs";
import { endOffsets, produceNumbers, testKafka } from "../integration/kafka_helpers.ts";
import { PrivateBroker } from "../integration/private_broker.ts";
import type { MemberConfig } from "./member.ts";

const MEMBER = new URL("./member.ts", import.meta.url).pathname;

/** How one member process ended. */
export interface MemberEnd {
  id: string;
  /** `killed` (kill -9 by the harness), `left` (exited after SIGTERM), `stuck` (did not exit
   * in time after SIGTERM, then killed), `crashed` (exited without being asked). */
  how: "killed" | "left" | "stuck" | "crashed";
  code: number | null;
  /** Milliseconds from SIGTERM to exit (for `left` and `stuck`). */
  exitMs?: number;
}

/** A running member process. */
export interface Member {
  id: string;
  log: string;
  proc: Deno.ChildProcess;
  startedAt: number;
  /** Set when the harness sent SIGTERM or SIGKILL. */
  asked?: "term" | "kill";
  ended?: Promise<MemberEnd>;
  status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

/** Sizes and timings every scenario shares. */
export interface RunOptions {
  /** Scenario name, for output. */
  scenario: string;
  partitions: number;
  messages: number;
  /** Member settings (brokers, topic, group and log are filled in). */
  member: Omit<MemberConfig, "brokers" | "topic" | "group" | "log">;
  /** Longest wait for the committed offsets to reach the end after the faults. */
  settleMs: number;
  /** Longest wait for a member to exit after SIGTERM. */
  exitMs: number;
  /** Print progress lines. */
  verbose?: boolean;
  /** Keep the log directory (its path is in the verdict). */
  keepLogs?: boolean;
}

/** A committed-offsets sample. */
interface Sample {
  t: number;
  committed: Map<number, number>;
}

/** The judgement of one run. */
export interface Verdict {
  scenario: string;
  produced: number;
  /** Distinct offsets processed by someone. */
  processed: number;
  /** Records processed more than once (total records - distinct). */
  duplicated: number;
  /** Produced offsets nobody processed. */
  lost: number;
  /** Highest (committed - contiguous processed prefix) over all samples; <= 0 is right. */
  maxCommittedAhead: number;
  /** Pairs of processing windows of one partition in two processes that overlap in time. */
  overlaps: number;
  /** Records handed out within one assignment not right after the previous one (or not at
   * the assignment's start offset): forward jumps, the contiguity invariant. */
  jumps: number;
  /** Members that did not exit by themselves in time after SIGTERM. */
  stuck: number;
  /** Members that exited without being asked (`run()` failed; restarted by the harness so
   * the run goes on, but a failure: a fault must not stop a member). */
  crashed: number;
  /** The committed offsets did not reach the end offsets within `settleMs`. */
  stalled: boolean;
  samples: number;
  members: number;
  durationMs: number;
  /** Human-readable evidence for every failed check (capped). */
  evidence: string[];
  logDir: string;
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Uniform random milliseconds in [lo, hi]. */
export function between(lo: number, hi: number): number {
  return lo + Math.random() * (hi - lo);
}

/** One run of a scenario: owns the broker, the members, the sampler and the logs. */
export class FaultRun {
  readonly broker: PrivateBroker = new PrivateBroker();
  readonly topic: string = `faults-${crypto.randomUUID().slice(0, 8)}`;
  readonly group: string = `g-${crypto.randomUUID().slice(0, 8)}`;
  readonly members: Member[] = [];
  readonly ends: MemberEnd[] = [];
  #dir = "";
  #kafka: Kafka | undefined;
  #samples: Sample[] = [];
  #sampling = false;
  #sampler: Promise<void> | undefined;
  #produced = new Map<number, number>();
  #started = 0;
  #seq = 0;
  #stalled = false;

  constructor(readonly options: RunOptions) {}

  /** Log lines of progress when `verbose`. */
  say(text: string): void {
    if (this.options.verbose) {
      console.log(
        `[${this.options.scenario} +${((Date.now() - this.#started) / 1000).toFixed(1)}s] ${text}`,
      );
    }
  }

  /** Starts the broker, creates and fills the topic, starts sampling. */
  async setUp(): Promise<void> {
    this.#started = Date.now();
    this.#dir = await Deno.makeTempDir({ prefix: `sluice-faults-${this.options.scenario}-` });
    await this.broker.format();
    await this.broker.start();
    await this.broker.ready(this.topic, this.options.partitions);
    this.#kafka = testKafka(this.broker.address);
    await produceNumbers(this.#kafka, this.topic, this.options.messages, 0, 2000);
    this.#produced = await endOffsets(this.#kafka, this.topic);
    const total = [...this.#produced.values()].reduce((a, b) => a + b, 0);
    if (total !== this.options.messages) {
      throw new Error(`produced ${this.options.messages} messages but the topic holds ${total}`);
    }
    this.say(`broker ${this.broker.address}, topic ${this.topic}: ${total} messages`);
    this.#sampling = true;
    this.#sampler = this.#sample();
  }

  async #sample(): Promise<void> {
    let admin: Admin | undefined;
    while (this.#sampling) {
      const next = sleep(200);
      try {
        if (admin === undefined) {
          admin = this.#kafka!.admin({ retry: { retries: 0 } });
          await admin.connect();
        }
        const res = await admin.fetchOffsets({ groupId: this.group, topics: [this.topic] });
        const t = Date.now();
        this.#samples.push({
          t,
          committed: new Map(res[0].partitions.map((p) => [p.partition, Number(p.offset)])),
        });
      } catch {
        // The broker is down or restarting: no sample this time.
        const a = admin;
        admin = undefined;
        await a?.disconnect().catch(() => {});
      }
      await next;
    }
    await admin?.disconnect().catch(() => {});
  }

  /** The latest committed offsets (partition → offset), or undefined before any sample. */
  latest(): Map<number, number> | undefined {
    return this.#samples.at(-1)?.committed;
  }

  /** Starts a member process. */
  spawn(overrides: Partial<MemberConfig> = {}, name = "m"): Member {
    const id = `${name}${++this.#seq}`;
    const log = `${this.#dir}/${id}.log`;
    const config: MemberConfig = {
      brokers: this.broker.address,
      topic: this.topic,
      group: this.group,
      log,
      ...this.options.member,
      ...overrides,
    };
    const proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", MEMBER, JSON.stringify(config)],
      env: { KAFKAJS_NO_PARTITIONER_WARNING: "1", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = Deno.openSync(`${log}.out`, { append: true, create: true });
    // Both streams into one file, each line prefixed by its stream.
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) out.writeSync(chunk);
    };
    const pumps = Promise.all([pump(proc.stdout), pump(proc.stderr)]).catch(() => {});
    const member: Member = {
      id,
      log,
      proc,
      startedAt: Date.now(),
      status: proc.status.then(async (s) => {
        await pumps;
        out.close();
        return s;
      }),
      exited: false,
    };
    member.status.then((s) => {
      member.exited = true;
      if (member.asked === undefined) {
        this.say(`${id} exited without being asked (code ${s.code})`);
        this.ends.push({ id, how: "crashed", code: s.code });
      }
    });
    this.members.push(member);
    this.say(`${id} started`);
    return member;
  }

  /** Members still running and not asked to stop. */
  live(): Member[] {
    return this.members.filter((m) => !m.exited && m.asked === undefined);
  }

  /** kill -9. */
  async kill(m: Member): Promise<void> {
    m.asked = "kill";
    try {
      m.proc.kill("SIGKILL");
    } catch { /* already gone */ }
    const s = await m.status;
    this.ends.push({ id: m.id, how: "killed", code: s.code });
    this.say(`${m.id} killed (kill -9)`);
  }

  /**
   * SIGTERM, then a bounded wait for the process to exit by itself (SIGKILL after
   * `exitMs`, counted as stuck). Returns at once; `m.ended` settles when it is over.
   */
  leave(m: Member): Promise<MemberEnd> {
    if (m.ended) return m.ended;
    m.asked = "term";
    const t0 = Date.now();
    try {
      m.proc.kill("SIGTERM");
    } catch { /* already gone */ }
    this.say(`${m.id} asked to leave (SIGTERM)`);
    m.ended = (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((r) => {
        timer = setTimeout(() => r("timeout"), this.options.exitMs);
      });
      const first = await Promise.race([m.status, timedOut]);
      clearTimeout(timer);
      let end: MemberEnd;
      if (first === "timeout") {
        try {
          m.proc.kill("SIGKILL");
        } catch { /* gone */ }
        const s = await m.status;
        end = { id: m.id, how: "stuck", code: s.code, exitMs: Date.now() - t0 };
        this.say(`${m.id} did not exit within ${this.options.exitMs} ms of SIGTERM: killed`);
      } else {
        end = { id: m.id, how: "left", code: first.code, exitMs: Date.now() - t0 };
        this.say(`${m.id} exited ${end.exitMs} ms after SIGTERM (code ${first.code})`);
      }
      this.ends.push(end);
      return end;
    })();
    return m.ended;
  }

  /** Restarts members that crashed (a supervisor would), keeping `want` running. */
  superviseTo(want: number): void {
    while (this.live().length < want) this.spawn();
  }

  /** Records processed so far, all members together (duplicates included). */
  async processedRecords(): Promise<number> {
    let n = 0;
    for (const m of this.members) {
      const text = await Deno.readTextFile(m.log).catch(() => "");
      for (let i = text.indexOf("P "); i >= 0; i = text.indexOf("\nP ", i + 1)) n++;
    }
    return n;
  }

  /** Waits until the members processed at least `records` records in all. */
  async awaitProgress(records: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while ((await this.processedRecords()) < records) {
      if (Date.now() > deadline) throw new Error(`fewer than ${records} records in ${ms} ms`);
      await sleep(100);
    }
  }

  /**
   * Waits (at most `settleMs`) until the committed offsets reach the end offsets, keeping
   * `want` members running (crashed ones are restarted).
   */
  async settle(want: number): Promise<void> {
    const deadline = Date.now() + this.options.settleMs;
    const done = () => {
      const c = this.latest();
      return c !== undefined && [...this.#produced].every(([p, end]) => c.get(p) === end);
    };
    while (!done()) {
      if (Date.now() > deadline) {
        this.#stalled = true;
        this.say(`committed offsets did not reach the end within ${this.options.settleMs} ms`);
        return;
      }
      this.superviseTo(want);
      await sleep(200);
    }
    this.say("committed offsets reached the end");
  }

  /** Asks every running member to leave and waits for all of them. */
  async stopAll(): Promise<void> {
    for (const m of this.members) if (!m.exited && m.asked === undefined) this.leave(m);
    await Promise.all(this.members.map((m) => m.ended ?? m.status));
  }

  /** Stops sampling, judges, cleans up. Always call (in `finally`). */
  async tearDown(): Promise<void> {
    this.#sampling = false;
    await this.#sampler;
    for (const m of this.members) {
      if (!m.exited) {
        m.asked ??= "kill";
        try {
          m.proc.kill("SIGKILL");
        } catch { /* gone */ }
        await m.status;
      }
    }
    await this.broker.remove();
    if (!this.options.keepLogs && this.#dir) {
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    }
  }

  /** Reads the logs and judges the run. Call after {@link stopAll}. */
  async judge(): Promise<Verdict> {
    const logs: { id: string; text: string }[] = [];
    for (const m of this.members) {
      logs.push({ id: m.id, text: await Deno.readTextFile(m.log).catch(() => "") });
    }
    const v = judgeLogs({
      scenario: this.options.scenario,
      produced: this.#produced,
      logs,
      samples: this.#samples,
      ends: this.ends,
      stalled: this.#stalled,
    });
    v.durationMs = Date.now() - this.#started;
    v.members = this.members.length;
    v.logDir = this.options.keepLogs ? this.#dir : "(removed)";
    return v;
  }
}

interface Rec {
  t: number;
  p: number;
  o: number;
  epoch: number;
}

interface Epoch {
  t: number;
  /** Partition → start offset, as the `A` line gave it. */
  starts: Map<number, number>;
  line: string;
}

/** Judges a run from the member logs, the committed-offset samples and the exits. */
export function judgeLogs(input: {
  scenario: string;
  produced: Map<number, number>;
  logs: { id: string; text: string }[];
  samples: Sample[];
  ends: MemberEnd[];
  stalled: boolean;
}): Verdict {
  const { produced } = input;
  const evidence: string[] = [];
  const note = (s: string) => {
    if (evidence.length < 40) evidence.push(s);
  };
  const firstT = new Map<number, Float64Array>();
  const counts = new Map<number, Uint32Array>();
  for (const [p, end] of produced) {
    firstT.set(p, new Float64Array(end).fill(Infinity));
    counts.set(p, new Uint32Array(end));
  }
  let records = 0;
  let jumps = 0;
  const perProc = new Map<string, { recs: Rec[]; epochs: Epoch[] }>();
  // Processing windows: process, epoch, partition -> first and last time.
  const windows = new Map<number, { id: string; epoch: number; from: number; to: number }[]>();
  for (const { id, text } of input.logs) {
    const recs: Rec[] = [];
    const epochs: Epoch[] = [{ t: 0, starts: new Map(), line: "(none)" }];
    const last = new Map<number, number>(); // partition -> last offset in this epoch
    const win = new Map<number, { id: string; epoch: number; from: number; to: number }>();
    const closeWindows = () => {
      for (const [p, w] of win) {
        let list = windows.get(p);
        if (!list) windows.set(p, list = []);
        list.push(w);
      }
      win.clear();
    };
    for (const line of text.split("\n")) {
      if (line.startsWith("P ")) {
        const [, ts, ps, os] = line.split(" ");
        const t = Number(ts), p = Number(ps), o = Number(os);
        const epoch = epochs.length - 1;
        recs.push({ t, p, o, epoch });
        records++;
        const ft = firstT.get(p);
        if (ft === undefined || o >= ft.length) {
          note(`${id}: processed p${p} offset ${o}, which was never produced`);
          continue;
        }
        if (t < ft[o]) ft[o] = t;
        counts.get(p)![o]++;
        const prev = last.get(p);
        const expected = prev === undefined ? epochs[epoch].starts.get(p) : prev + 1;
        if (expected !== undefined && expected >= 0 && o > expected) {
          jumps++;
          note(
            `${id}: p${p} jumped from ${
              prev === undefined ? `its assigned start ${expected}` : `offset ${prev}`
            } to ${o} within one assignment (${epochs[epoch].line}) at ${
              new Date(t).toISOString()
            }`,
          );
        }
        last.set(p, o);
        const w = win.get(p);
        if (w) w.to = t;
        else win.set(p, { id, epoch, from: t, to: t });
      } else if (line.startsWith("A ")) {
        closeWindows();
        last.clear();
        const [, ts, list] = line.split(" ");
        const starts = new Map<number, number>();
        for (const item of (list ?? "").split(",")) {
          if (!item) continue;
          const [p, o] = item.split(":").map(Number);
          starts.set(p, o);
        }
        epochs.push({ t: Number(ts), starts, line: `${id} ${line}` });
      } else if (line.startsWith("R ")) {
        closeWindows();
      }
    }
    closeWindows();
    perProc.set(id, { recs, epochs });
  }

  // Lost: produced offsets nobody processed, as ranges.
  let processed = 0;
  let lost = 0;
  for (const [p, ft] of firstT) {
    let o = 0;
    while (o < ft.length) {
      if (ft[o] !== Infinity) {
        processed++;
        o++;
        continue;
      }
      const s = o;
      while (o < ft.length && ft[o] === Infinity) o++;
      lost += o - s;
      note(
        `lost: p${p} offsets ${s}..${o - 1} (${o - s}) never processed; ${
          whoNext(perProc, p, o, ft.length)
        }; ${firstCommitPast(input.samples, p, s)}`,
      );
    }
  }

  // Committed ahead of the contiguous processed prefix at the time of each sample.
  let maxAhead = -Infinity;
  const reported = new Set<number>();
  const prefixMax = new Map<number, Float64Array>();
  for (const [p, ft] of firstT) {
    const m = new Float64Array(ft.length);
    let run = -Infinity;
    for (let o = 0; o < ft.length; o++) m[o] = run = Math.max(run, ft[o]);
    prefixMax.set(p, m);
  }
  for (const s of input.samples) {
    for (const [p, c] of s.committed) {
      if (c < 0) continue;
      const m = prefixMax.get(p);
      if (!m) continue;
      // Contiguous prefix at time s.t: the first offset whose prefix max is after s.t.
      let lo = 0, hi = m.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (m[mid] <= s.t) lo = mid + 1;
        else hi = mid;
      }
      const ahead = c - lo;
      if (ahead > maxAhead) maxAhead = ahead;
      if (ahead > 0 && !reported.has(p)) {
        reported.add(p);
        note(
          `committed ahead: p${p} committed ${c} at ${
            new Date(s.t).toISOString()
          } while the contiguous processed prefix was ${lo} (offset ${lo} first processed ${
            m.length > lo && firstTime(firstT, p, lo) !== Infinity
              ? `at ${new Date(firstTime(firstT, p, lo)).toISOString()}`
              : "never"
          })`,
        );
      }
    }
  }
  if (maxAhead === -Infinity) maxAhead = 0;

  // Overlapping processing windows of one partition in two processes.
  let overlaps = 0;
  for (const [p, list] of windows) {
    list.sort((a, b) => a.from - b.from);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j].from < list[i].to; j++) {
        if (list[j].id === list[i].id) continue;
        overlaps++;
        note(
          `overlap: p${p} processed by ${list[i].id} (epoch ${list[i].epoch}) from ${
            new Date(list[i].from).toISOString()
          } to ${new Date(list[i].to).toISOString()} and by ${list[j].id} (epoch ${
            list[j].epoch
          }) from ${new Date(list[j].from).toISOString()}`,
        );
      }
    }
  }

  const stuck = input.ends.filter((e) => e.how === "stuck");
  for (const e of stuck) note(`stuck: ${e.id} did not exit within the bound after SIGTERM`);
  const crashed = input.ends.filter((e) => e.how === "crashed");
  for (const e of crashed) {
    const text = input.logs.find((l) => l.id === e.id)?.text ?? "";
    const x = text.split("\n").find((l) => l.startsWith("X ")) ?? "(no X line)";
    note(`crashed: ${e.id} exited by itself with code ${e.code}: ${x.slice(0, 300)}`);
  }
  if (input.stalled) {
    const last = input.samples.at(-1)?.committed ?? new Map<number, number>();
    for (const [p, end] of produced) {
      const c = last.get(p) ?? -1;
      if (c === end) continue;
      let latest: { id: string; r: Rec } | undefined;
      for (const [id, { recs }] of perProc) {
        for (let i = recs.length - 1; i >= 0; i--) {
          if (recs[i].p !== p) continue;
          if (latest === undefined || recs[i].t > latest.r.t) latest = { id, r: recs[i] };
          break;
        }
      }
      note(
        `stalled: p${p} committed ${c} of end ${end} at the last sample; last record on p${p}: ${
          latest
            ? `offset ${latest.r.o} by ${latest.id} at ${new Date(latest.r.t).toISOString()}`
            : "none"
        }`,
      );
    }
  }
  const total = [...produced.values()].reduce((a, b) => a + b, 0);
  const v: Verdict = {
    scenario: input.scenario,
    produced: total,
    processed,
    duplicated: records - processed,
    lost,
    maxCommittedAhead: maxAhead,
    overlaps,
    jumps,
    stuck: stuck.length,
    crashed: crashed.length,
    stalled: input.stalled,
    samples: input.samples.length,
    members: input.logs.length,
    durationMs: 0,
    evidence,
    logDir: "",
    ok: false,
  };
  v.ok = lost === 0 && maxAhead <= 0 && overlaps === 0 && jumps === 0 && stuck.length === 0 &&
    crashed.length === 0 && !input.stalled;
  return v;
}

function firstTime(firstT: Map<number, Float64Array>, p: number, o: number): number {
  return firstT.get(p)?.[o] ?? Infinity;
}

/** Who processed offset `o` of `p` first, and what that process did on `p` just before. */
function whoNext(
  perProc: Map<string, { recs: Rec[]; epochs: Epoch[] }>,
  p: number,
  o: number,
  end: number,
): string {
  if (o >= end) return "the partition's end follows";
  let best: { id: string; i: number; r: Rec } | undefined;
  for (const [id, { recs }] of perProc) {
    const i = recs.findIndex((r) => r.p === p && r.o === o);
    if (i >= 0 && (best === undefined || recs[i].t < best.r.t)) best = { id, i, r: recs[i] };
  }
  if (!best) return `offset ${o} was not processed either`;
  const { recs, epochs } = perProc.get(best.id)!;
  let prev: Rec | undefined;
  for (let k = best.i - 1; k >= 0; k--) {
    if (recs[k].p === p) {
      prev = recs[k];
      break;
    }
  }
  const epoch = epochs[best.r.epoch];
  return `offset ${o} first processed by ${best.id} at ${
    new Date(best.r.t).toISOString()
  } in its assignment "${epoch.line}", its previous record on p${p} was ${
    prev ? `offset ${prev.o} (assignment ${prev.epoch})` : "none"
  }`;
}

function firstCommitPast(samples: Sample[], p: number, o: number): string {
  const s = samples.find((s) => (s.committed.get(p) ?? -1) > o);
  return s
    ? `first sample with a commit past it: ${s.committed.get(p)} at ${new Date(s.t).toISOString()}`
    : "no sample committed past it";
}

/** One line of the results table. */
export function row(v: Verdict, run: number): string {
  const exits = v.stuck === 0 ? "ok" : `${v.stuck} stuck`;
  return [
    v.scenario.padEnd(10),
    String(run).padStart(3),
    String(v.produced).padStart(8),
    String(v.processed).padStart(9),
    String(v.duplicated).padStart(10),
    String(v.lost).padStart(6),
    String(v.maxCommittedAhead).padStart(6),
    String(v.overlaps).padStart(8),
    String(v.jumps).padStart(6),
    String(v.crashed).padStart(7),
    exits.padStart(9),
    (v.stalled ? "yes" : "no").padStart(7),
    `${(v.durationMs / 1000).toFixed(0)}s`.padStart(6),
    v.ok ? "PASS" : "FAIL",
  ].join(" ");
}

/** The header of {@link row}. */
export const HEADER = [
  "scenario".padEnd(10),
  "run".padStart(3),
  "produced".padStart(8),
  "processed".padStart(9),
  "duplicated".padStart(10),
  "lost".padStart(6),
  "ahead".padStart(6),
  "overlaps".padStart(8),
  "jumps".padStart(6),
  "crashed".padStart(7),
  "exits".padStart(9),
  "stalled".padStart(7),
  "time".padStart(6),
  "verdict",
].join(" ");
