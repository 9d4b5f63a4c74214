/**
 * The smoke suite as a workerd test: `workerd test` runs `test()` and fails it when it
 * throws. The report is also logged as `SMOKE {json}`.
 *
 * @module
 */
import * as sluice from "../../mod.ts";
import * as local from "../../backends/local/mod.ts";
import * as health from "../../health.ts";
import * as stream from "../../stream.ts";
import * as runtime from "../../runtime/mod.ts";
import { runSmoke } from "./suite.ts";

export default {
  async test(): Promise<void> {
    const report = await runSmoke({
      sluice,
      local,
      health,
      stream,
      runtime,
      tempDir: runtime.env("TMPDIR"),
    });
    console.log(`SMOKE ${JSON.stringify(report)}`);
    if (report.failed > 0) throw new Error(`${report.failed} smoke check(s) failed`);
  },
};
