import { assert, assertEquals, assertInstanceOf } from "@std/assert";
import { SluiceError } from "../../errors.ts";
import { detectRuntime, UnsupportedRuntimeError } from "../../runtime/mod.ts";
import {
  env,
  hasSignals,
  hasWorkers,
  onShutdownSignals,
  serveHttp,
  writeTextFileSync,
} from "../../runtime/mod.ts";

// The other runtimes run tests/smoke/suite.ts (tests/runtime/runtimes_test.ts); these are Deno's.

Deno.test("runtime layer: Deno is detected and has signals, workers, files and a server", async () => {
  assertEquals(detectRuntime(), "deno");
  assert(hasSignals() && hasWorkers());
  const remove = onShutdownSignals(() => {});
  remove();
  const path = await Deno.makeTempFile();
  writeTextFileSync(path, "beat\n");
  assertEquals(await Deno.readTextFile(path), "beat\n");
  await Deno.remove(path);
  const server = serveHttp(
    { hostname: "127.0.0.1", port: 0 },
    (req) => new Response(new URL(req.url).pathname),
  );
  await server.ready;
  const res = await fetch(`http://127.0.0.1:${server.port}/probe`);
  assertEquals(await res.text(), "/probe");
  await server.close();
  assertEquals(env("SLUICE_SURELY_UNSET_VARIABLE"), undefined);
});

Deno.test("runtime layer: UnsupportedRuntimeError names the runtime, the feature and what to do", () => {
  const e = new UnsupportedRuntimeError("workerd", "workers", "use RunTaskAsync instead");
  assertInstanceOf(e, SluiceError);
  assertEquals([e.name, e.runtime, e.feature], ["UnsupportedRuntimeError", "workerd", "workers"]);
  assertEquals(e.message, "workers are not available on workerd: use RunTaskAsync instead");
  const f = new UnsupportedRuntimeError("browser", "http server", "x");
  assertEquals(f.message, "http server is not available on browser: x");
});
