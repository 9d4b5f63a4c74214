/**
 * The runtime matrix (issue 17): the smoke suite (`tests/smoke/suite.ts`) in Deno, Node,
 * Bun, headless Chromium and workerd, one test per runtime and check; SIGTERM under Node
 * and Bun; the npm package installed with npm and imported under Node.
 *
 * Runtimes are found through `SLUICE_BUN`, `SLUICE_WORKERD`, `SLUICE_CHROMIUM` (paths), else
 * in `.cache/runtimes/node_modules/.bin` (what `.ci/run` installs) or on the PATH. A missing
 * runtime ignores its tests with a warning, or fails them under `CI=true` or
 * `SLUICE_RUNTIMES_REQUIRED=1`. `SLUICE_TEST_PORT=<p>` makes the servers of these tests
 * bind ports p..p+5 (default: any free port).
 */
import { assert, assertEquals } from "@std/assert";
import ts from "typescript";
import { SMOKE_CHECKS, type SmokeReport } from "../smoke/suite.ts";

const root = new URL("../..", import.meta.url).pathname;
const required = Deno.env.get("CI") === "true" || Deno.env.get("SLUICE_RUNTIMES_REQUIRED") === "1";
const portBase = Number(Deno.env.get("SLUICE_TEST_PORT") ?? 0);
const port = (offset: number) => portBase === 0 ? 0 : portBase + offset;
const TIMEOUT_MS = 120_000;

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** A runtime's executable: `$envName`, the CI cache, or the PATH. */
function find(envName: string, names: string[]): string | undefined {
  const given = Deno.env.get(envName);
  if (given) return given;
  const dirs = [
    `${root}.cache/runtimes/node_modules/.bin`,
    ...(Deno.env.get("PATH") ?? "").split(":"),
  ];
  for (const dir of dirs) {
    for (const name of names) if (dir && isFile(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

const executables: Record<string, string | undefined> = {
  deno: Deno.execPath(),
  node: find("SLUICE_NODE", ["node"]),
  bun: find("SLUICE_BUN", ["bun"]),
  chromium: find("SLUICE_CHROMIUM", ["chromium", "chromium-browser", "google-chrome"]),
  workerd: find("SLUICE_WORKERD", ["workerd"]),
};
const missing = Object.entries(executables).filter(([, v]) => v === undefined).map(([k]) => k);
if (missing.length > 0 && !required) {
  console.warn(
    `\n!!! runtimes_test: ${missing.join(", ")} not found: their smoke tests are IGNORED here ` +
      "(.ci/run installs them; set SLUICE_BUN/SLUICE_WORKERD/SLUICE_CHROMIUM to use others)\n",
  );
}

/** Runs a command to its end (killed after TIMEOUT_MS); returns its status and output. */
async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string }> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? root,
    env: { NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
  try {
    const { code, stdout, stderr } = await child.output();
    const d = new TextDecoder();
    return { code, out: d.decode(stdout) + d.decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function parseReport(out: string, what: string): SmokeReport {
  const line = out.split("\n").find((l) => l.startsWith("SMOKE "));
  if (line === undefined) throw new Error(`${what} printed no SMOKE report; output:\n${out}`);
  return JSON.parse(line.slice("SMOKE ".length));
}

let building: Promise<void> | undefined;
/** `scripts/build_npm.ts --pack`, once per test run. */
function build(): Promise<void> {
  return building ??= (async () => {
    const { code, out } = await run(Deno.execPath(), [
      "run",
      "-A",
      "scripts/build_npm.ts",
      "--pack",
    ]);
    if (code !== 0) throw new Error(`build:npm failed:\n${out}`);
  })();
}

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** Serves the files of `dist/js` (and `extra` routes first). */
function serveDist(
  port: number,
  extra: (req: Request, path: string) => Promise<Response | undefined> = () =>
    Promise.resolve(undefined),
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const answer = await extra(req, path);
    if (answer !== undefined) return answer;
    try {
      const body = await Deno.readFile(`${root}dist/js${path}`);
      const type = path.endsWith(".js") ? "text/javascript" : "text/html";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

/** Serves `dist/js` and collects the page's POST to /result. */
async function runChromium(chromium: string): Promise<SmokeReport> {
  await build();
  let report!: (line: string) => void;
  const posted = new Promise<string>((r) => report = r);
  const server = serveDist(port(4), async (req, path) => {
    if (req.method === "POST") {
      report(path === "/result" ? await req.text() : `page error: ${await req.text()}`);
      return new Response("ok");
    }
    if (path !== "/smoke.html") return undefined;
    return new Response(
      `<!doctype html><meta charset="utf-8"><script>
        const fail = (m) => fetch("/error", { method: "POST", body: String(m) });
        addEventListener("error", (e) => fail(e.message));
        addEventListener("unhandledrejection", (e) => fail(e.reason && e.reason.stack || e.reason));
      </script><script type="module" src="/tests/smoke/main.js"></script>`,
      { headers: { "content-type": "text/html" } },
    );
  });
  const profile = await Deno.makeTempDir({ prefix: "sluice-chromium-" });
  const browser = new Deno.Command(chromium, {
    args: [
      ...CHROMIUM_FLAGS,
      `--user-data-dir=${profile}`,
      `http://127.0.0.1:${server.addr.port}/smoke.html`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(browser.stderr).text();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const line = await Promise.race([
      posted,
      browser.status.then((s) => `chromium exited (code ${s.code}) before reporting`),
      new Promise<string>((r) => timer = setTimeout(() => r("timed out"), TIMEOUT_MS)),
    ]);
    if (!line.startsWith("SMOKE ")) throw new Error(`chromium: ${line}\n${await stderrSoFar()}`);
    return parseReport(line, "chromium");
  } finally {
    clearTimeout(timer);
    try {
      browser.kill("SIGTERM");
    } catch { /* already gone */ }
    await browser.status;
    await stderr;
    await server.shutdown();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
  async function stderrSoFar(): Promise<string> {
    try {
      browser.kill("SIGTERM");
    } catch { /* gone */ }
    return (await stderr).slice(-2000);
  }
}

/** Bundles the suite (`deno bundle`) and runs it with `workerd test`. */
async function runWorkerd(workerd: string): Promise<SmokeReport> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-workerd-" });
  try {
    const bundled = await run(Deno.execPath(), [
      "bundle",
      "--platform",
      "browser",
      "-o",
      `${dir}/worker.js`,
      "tests/smoke/workerd.ts",
    ]);
    if (bundled.code !== 0) throw new Error(`deno bundle failed:\n${bundled.out}`);
    await Deno.writeTextFile(
      `${dir}/config.capnp`,
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (services = [(name = "smoke", worker = .smoke)]);
const smoke :Workerd.Worker = (
  modules = [(name = "worker", esModule = embed "worker.js")],
  compatibilityDate = "2025-01-01",
);
`,
    );
    const { out } = await run(workerd, ["test", "--verbose", "config.capnp"], { cwd: dir });
    return parseReport(out, "workerd");
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const runners: Record<string, (exe: string) => Promise<SmokeReport>> = {
  deno: async (exe) =>
    parseReport(
      (await run(exe, ["run", "-A", "tests/smoke/main.ts"], {
        env: { SLUICE_SMOKE_PORT: String(port(1)) },
      })).out,
      "deno",
    ),
  node: async (exe) => {
    await build();
    const { out } = await run(exe, ["dist/js/tests/smoke/main.js"], {
      env: { SLUICE_SMOKE_PORT: String(port(2)) },
    });
    return parseReport(out, "node");
  },
  bun: async (exe) =>
    parseReport(
      (await run(exe, ["tests/smoke/main.ts"], { env: { SLUICE_SMOKE_PORT: String(port(3)) } }))
        .out,
      "bun",
    ),
  chromium: runChromium,
  workerd: runWorkerd,
};

const reports = new Map<string, Promise<SmokeReport>>();
for (const [name, runner] of Object.entries(runners)) {
  const exe = executables[name];
  const report = () => {
    let r = reports.get(name);
    if (r === undefined) reports.set(name, r = runner(exe!));
    return r;
  };
  const expectedRuntime = name === "chromium" ? "browser" : name;
  for (const check of SMOKE_CHECKS) {
    Deno.test({
      name: `smoke on ${name}: ${check}`,
      ignore: exe === undefined && !required,
      fn: async () => {
        assert(
          exe !== undefined,
          `${name} is not installed: .ci/run installs it (or set SLUICE_${name.toUpperCase()})`,
        );
        const r = await report();
        assertEquals(r.runtime, expectedRuntime, "the runtime the suite detected");
        const result = r.results.find((x) => x.name === check);
        assert(result !== undefined, `no result for "${check}" from ${name}`);
        assert(result.ok, `${name}: ${check} failed: ${result.detail}`);
        console.log(`  ${name}: ${result.detail}`);
      },
    });
  }
}

for (const name of ["node", "bun"]) {
  Deno.test({
    name: `signals on ${name}: SIGTERM shuts down gracefully and commits finished work`,
    ignore: executables[name] === undefined && !required,
    fn: async () => {
      const exe = executables[name];
      assert(exe !== undefined, `${name} is not installed`);
      if (name === "node") await build();
      const app = name === "node"
        ? "dist/js/tests/fixtures/signal_app.js"
        : "tests/fixtures/signal_app.ts";
      const child = new Deno.Command(exe, {
        args: [app],
        cwd: root,
        stdout: "piped",
        stderr: "inherit",
      })
        .spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes("READY")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      child.kill("SIGTERM");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      const status = await child.status;
      assertEquals(status.code, 0, `exit code after SIGTERM under ${name}; output: ${out}`);
      const json = out.split("\n").findLast((l) => l.startsWith("{"));
      assert(json !== undefined, `no result line after SIGTERM under ${name}; output: ${out}`);
      const committed: number[] = JSON.parse(json).committed;
      assertEquals(committed.reduce((a, b) => a + b, 0), 1000, "all 1000 messages committed");
    },
  });
}

Deno.test({
  name: "npm package: npm install of the packed build, then import and run under Node",
  ignore: executables.node === undefined && !required,
  fn: async () => {
    await build();
    const tarball = [...Deno.readDirSync(`${root}dist`)].find((e) => e.name.endsWith(".tgz"));
    assert(tarball !== undefined, "npm pack wrote no tarball to dist/");
    const dir = await Deno.makeTempDir({ prefix: "sluice-npm-" });
    try {
      await Deno.writeTextFile(
        `${dir}/package.json`,
        '{ "name": "app", "private": true, "type": "module" }\n',
      );
      const install = await run("npm", [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        `${root}dist/${tarball.name}`,
      ], { cwd: dir, env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" } });
      assertEquals(install.code, 0, `npm install failed:\n${install.out}`);
      await Deno.writeTextFile(
        `${dir}/app.js`,
        `import { CommitOffsets, RunTask } from "@sluice/sluice";
import { detectRuntime } from "@sluice/sluice/runtime";
import { lines, processStream } from "@sluice/sluice/stream";
import { LocalBroker } from "@sluice/sluice/local";
new LocalBroker();
let acked = 0;
await processStream(lines(new Response("a\\nb\\nc\\n").body), {
  onCommit: (n) => { acked = n; },
  factory: { createWithPartitions: (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)) },
});
let kafka;
try { await import("@sluice/sluice/kafka"); kafka = "loaded"; } catch (e) { kafka = e.code; }
console.log(JSON.stringify({ runtime: detectRuntime(), acked, kafka }));
`,
      );
      const app = await run(executables.node!, ["app.js"], { cwd: dir });
      assertEquals(app.code, 0, `node app.js failed:\n${app.out}`);
      const result = JSON.parse(app.out.trim().split("\n").at(-1)!);
      // kafkajs is an optional peer dependency: without it only the Kafka entry point fails.
      assertEquals(result, { runtime: "node", acked: 3, kafka: "ERR_MODULE_NOT_FOUND" });
      // A TypeScript user's code type-checks against the package's .d.ts (no skipLibCheck).
      await Deno.writeTextFile(
        `${dir}/typed.ts`,
        `import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
import { LocalBroker } from "@sluice/sluice/local";
import { processStream, lines } from "@sluice/sluice/stream";
const broker = new LocalBroker<string>();
broker.createTopic("t", 1);
export const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("g"),
  topics: ["t"],
  factory: {
    createWithPartitions: (commit) => new RunTask((m) => m.payload.length, new CommitOffsets(commit)),
  },
});
export const run = () => processStream(lines(new Response("a").body!), {
  onCommit: (next: number) => void next,
  factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
});
`,
      );
      const program = ts.createProgram([`${dir}/typed.ts`], {
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
        types: [],
        strict: true,
        noEmit: true,
      });
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) =>
        ts.flattenDiagnosticMessageText(d.messageText, "\n") +
        (d.file ? ` (${d.file.fileName.slice(dir.length)})` : "")
      );
      assertEquals(diagnostics, [], "type errors in a user's code against the package's .d.ts");
      // With kafkajs installed (from the npm registry), the Kafka entry point loads.
      const kafkajs = await run("npm", [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "kafkajs@2.2.4",
      ], { cwd: dir, env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" } });
      if (kafkajs.code !== 0 && !required) {
        console.warn(
          `kafkajs could not be installed here (no registry?): ${kafkajs.out.slice(-300)}`,
        );
        return;
      }
      assertEquals(kafkajs.code, 0, `npm install kafkajs failed:\n${kafkajs.out}`);
      const withKafka = await run(executables.node!, [
        "--input-type=module",
        "-e",
        'const k = await import("@sluice/sluice/kafka"); console.log(typeof k.KafkaConsumer);',
      ], { cwd: dir });
      assertEquals(
        withKafka.out.trim(),
        "function",
        `import of the Kafka entry point:\n${withKafka.out}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** The edge example's result line: `<runtime>: totals a,b,...; acknowledged n`. */
function checkExample(out: string, runtime: string): void {
  const m = out.match(new RegExp(`${runtime}: totals ([\\d,]+); acknowledged (\\d+)`));
  assert(m !== null, `no result line from the example under ${runtime}; output:\n${out}`);
  const sum = m[1].split(",").reduce((a, b) => a + Number(b), 0);
  assertEquals([sum, Number(m[2])], [2000, 10], "even amounts in cents, all 10 lines acknowledged");
}

const exampleRunners: Record<string, (exe: string) => Promise<string>> = {
  deno: async (exe) => (await run(exe, ["run", "-A", "examples/edge/pipeline.ts"])).out,
  node: async (exe) => {
    await build();
    return (await run(exe, ["dist/js/examples/edge/pipeline.js"])).out;
  },
  bun: async (exe) => (await run(exe, ["examples/edge/pipeline.ts"])).out,
  chromium: async (exe) => {
    await build();
    const server = serveDist(port(5));
    const profile = await Deno.makeTempDir({ prefix: "sluice-chromium-" });
    try {
      const { out } = await run(exe, [
        ...CHROMIUM_FLAGS,
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=30000",
        "--dump-dom",
        `http://127.0.0.1:${server.addr.port}/examples/edge/index.html`,
      ]);
      return out;
    } finally {
      await server.shutdown();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    }
  },
};

for (const [name, runner] of Object.entries(exampleRunners)) {
  Deno.test({
    name: `example examples/edge/pipeline.ts on ${name}`,
    ignore: executables[name] === undefined && !required,
    fn: async () => {
      assert(executables[name] !== undefined, `${name} is not installed`);
      checkExample(await runner(executables[name]!), name === "chromium" ? "browser" : name);
    },
  });
}
