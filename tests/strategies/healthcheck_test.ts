import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, SluiceError } from "../../errors.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Healthcheck } from "../../strategies/healthcheck.ts";
import { HealthServer } from "../../strategies/health_server.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, Gate, P0 } from "../_support/helpers.ts";

const dir = Deno.makeTempDirSync({ prefix: "sluice-health-" });
let files = 0;
const tempFile = () => `${dir}/health-${files++}`;

strategyContract<number>({
  name: "Healthcheck",
  make: ({ next, highWaterMark, clock }) =>
    new Healthcheck(next, { file: tempFile(), highWaterMark, clock }),
  makeFailing: ({ highWaterMark, clock }) => {
    const broken = new Gate<number>();
    broken.submit = () => {
      throw new Error("downstream broken");
    };
    return new Healthcheck(broken, { file: tempFile(), highWaterMark, clock });
  },
});

function mtime(path: string): number | undefined {
  try {
    return Deno.statSync(path).mtime?.getTime();
  } catch {
    return undefined;
  }
}

/** A next step whose poll throws while `broken` is set. */
class Breakable<T> extends Gate<T> {
  broken = false;
  override poll(): void {
    if (this.broken) throw new Error("downstream failed");
    super.poll();
  }
}

Deno.test("Healthcheck: passes messages through unchanged and commits them", async () => {
  const recorder = new CommitRecorder();
  const gate = new Gate<string>(true, new CommitOffsets(recorder.commit));
  const step = new Healthcheck(gate, { file: tempFile() });
  const messages = [brokerMessage("a", 0), brokerMessage("b", 1)];
  for (const m of messages) step.submit(m);
  await step.join(1000);
  assertEquals(gate.received, messages, "the very same messages, in order");
  assertEquals(recorder.latest.get(P0), 2);
});

Deno.test("Healthcheck: touches the file only from poll, at once, then at most once per interval", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const file = tempFile();
  const step = new Healthcheck(new Gate<number>(), { file, intervalMs: 1000, clock });
  assertEquals(mtime(file), undefined, "nothing before the first poll");
  step.poll();
  assertEquals(step.touches, 1, "the first poll touches at once");
  assertEquals(Deno.readTextFileSync(file).trim(), new Date(clock.now()).toISOString());
  step.poll();
  await clock.advance(999);
  step.poll();
  assertEquals(step.touches, 1, "not again within the interval");
  await clock.advance(1);
  step.poll();
  assertEquals(step.touches, 2, "again once the interval passed");
  assertEquals(Deno.readTextFileSync(file).trim(), new Date(clock.now()).toISOString());
  // A blocked loop does not poll: time passes, nothing is touched.
  await clock.advance(60_000);
  assertEquals(step.touches, 2);
  Deno.removeSync(file);
  step.poll();
  assertEquals(step.touches, 3);
  assert(mtime(file) !== undefined, "a deleted file comes back on the next due poll");
  step.terminate();
});

Deno.test("Healthcheck: when the next step's poll throws, the file is not touched", async () => {
  const clock = new ManualClock();
  const file = tempFile();
  const next = new Breakable<number>();
  const step = new Healthcheck(next, { file, clock });
  next.broken = true;
  assertThrows(() => step.poll(), Error, "downstream failed");
  assertEquals(step.touches, 0);
  assertEquals(mtime(file), undefined);
  next.broken = false;
  await clock.advance(1);
  step.poll();
  assertEquals(step.touches, 1);
  step.terminate();
});

Deno.test("Healthcheck: an unwritable file is a clear error from poll", () => {
  const step = new Healthcheck(new Gate<number>(), { file: `${dir}/missing-dir/health` });
  const e = assertThrows(() => step.poll(), SluiceError);
  assertStringIncludes(e.message, "cannot touch healthcheck file");
  assertStringIncludes(e.message, "missing-dir");
  step.terminate();
});

async function get(port: number, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  return {
    status: res.status,
    body: res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text,
  };
}

Deno.test("Healthcheck: /healthz follows the loop's heartbeat, /readyz the pipeline too; join closes the server", async () => {
  const clock = new ManualClock();
  const step = new Healthcheck(new Gate<number>(), {
    intervalMs: 100,
    clock,
    http: { port: 0, livenessTimeoutMs: 1000 },
  });
  const port = step.port!;
  assert(port > 0, "an ephemeral port was bound and exposed");
  step.poll();
  assertEquals((await get(port, "/healthz")).status, 200);
  const ready = await get(port, "/readyz");
  assertEquals(ready.status, 200);
  assertEquals((ready.body as { pipelines: number }).pipelines, 1);
  // The loop stops polling: liveness goes stale after livenessTimeoutMs.
  await clock.advance(1001);
  const stale = await get(port, "/healthz");
  assertEquals(stale.status, 503);
  assertEquals((stale.body as { status: string }).status, "stuck");
  assertEquals((await get(port, "/readyz")).status, 503);
  step.poll();
  assertEquals((await get(port, "/healthz")).status, 200, "alive again once polled");
  assertEquals((await get(port, "/nope")).status, 404);
  step.close();
  const closing = await get(port, "/readyz");
  assertEquals(closing.status, 503, "a closing pipeline is not ready");
  assertEquals((closing.body as { status: string }).status, "not-assigned");
  await step.join(1000);
  assert(step.server!.closed);
  await assertRejects(() => fetch(`http://127.0.0.1:${port}/healthz`));
});

Deno.test("Healthcheck: a shared HealthServer outlives pipelines; readyz reflects assignment", async () => {
  const clock = new ManualClock();
  const server = new HealthServer({ port: 0, clock, livenessTimeoutMs: 5000 });
  try {
    const first = new Healthcheck(new Gate<number>(), { http: server, clock });
    first.poll();
    assertEquals((await get(server.port, "/readyz")).status, 200);
    await first.join(1000);
    assert(!server.closed, "a shared server is not closed by the step");
    const between = await get(server.port, "/readyz");
    assertEquals(between.status, 503);
    assertEquals((between.body as { status: string }).status, "not-assigned");
    assertEquals((await get(server.port, "/healthz")).status, 200, "still live between pipelines");
    const second = new Healthcheck(new Gate<number>(), { http: server, clock });
    assertEquals((await get(server.port, "/readyz")).status, 200);
    second.terminate();
  } finally {
    await server.close();
  }
});

Deno.test("Healthcheck: terminate closes an owned server", async () => {
  const step = new Healthcheck(new Gate<number>(), { http: { port: 0 } });
  const port = step.port!;
  assertEquals((await get(port, "/healthz")).status, 200, "live during the grace period");
  step.terminate();
  await step.server!.close();
  await assertRejects(() => fetch(`http://127.0.0.1:${port}/healthz`));
});

Deno.test("Healthcheck: bad options are configuration errors", async () => {
  const next: ProcessingStrategy<number> = new Gate<number>();
  assertThrows(() => new Healthcheck(next, {}), ConfigurationError, "file to touch");
  assertThrows(
    () => new Healthcheck(next, { file: "x", intervalMs: 0 }),
    ConfigurationError,
    "intervalMs",
  );
  assertThrows(
    () => new Healthcheck(next, { http: { port: 70000 } }),
    ConfigurationError,
    "port",
  );
  const server = new HealthServer({ port: 0 });
  try {
    const e = assertThrows(() => new HealthServer({ port: server.port }), ConfigurationError);
    assertStringIncludes(e.message, "choose another port");
    assertInstanceOf(e, ConfigurationError);
  } finally {
    await server.close();
  }
});

Deno.test("Healthcheck: (cleanup of the temporary directory)", () => {
  Deno.removeSync(dir, { recursive: true });
});
