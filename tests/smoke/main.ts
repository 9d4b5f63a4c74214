/**
 * Runs the smoke suite against this checkout and reports `SMOKE {json}`: on stdout (Deno,
 * Bun, Node) or, in a page, by POSTing it to `/result` on the page's origin.
 *
 * @module
 */
import * as sluice from "../../mod.ts";
import * as local from "../../backends/local/mod.ts";
import * as health from "../../health.ts";
import * as stream from "../../stream.ts";
import * as runtime from "../../runtime/mod.ts";
import { runSmoke } from "./suite.ts";

const report = await runSmoke({
  sluice,
  local,
  health,
  stream,
  runtime,
  tempDir: runtime.env("TMPDIR"),
  port: Number(runtime.env("SLUICE_SMOKE_PORT") ?? 0),
});
const line = `SMOKE ${JSON.stringify(report)}`;
if ("document" in globalThis) {
  await fetch("/result", { method: "POST", body: line });
} else {
  console.log(line);
}
