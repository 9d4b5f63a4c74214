import { assertEquals } from "@std/assert";

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} shuts the processor down gracefully and commits finished work`, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../fixtures/signal_app.ts", import.meta.url).pathname],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("READY")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    // The app processed everything but, at one commit per second, may not have committed yet.
    child.kill(signal);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    assertEquals(status.code, 0, `exit code after ${signal}; output: ${out}`);
    const result = JSON.parse(out.slice(out.indexOf("{")));
    assertEquals(
      result.committed.reduce((a: number, b: number) => a + b, 0),
      1000,
      "all 1000 messages committed during the graceful shutdown",
    );
  });
}
