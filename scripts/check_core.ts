/**
 * `deno task check:core`: proves the library's sources are portable.
 *
 * 1. The core (everything but `runtime/`, the Kafka backend and the non-library folders)
 *    names no runtime: no `Deno.`, `Bun.`, `process.`, `require(` or `node:` imports in
 *    its code (comments and string literals are not code).
 * 2. The library type-checks with the web-standard libraries only (`esnext` + `dom`, no
 *    Deno namespace), so a runtime-specific API in the core is a type error, and with
 *    TypeScript's `erasableSyntaxOnly`, the rule of Node's type stripping (no parameter
 *    properties, enums or namespaces), so Node ≥ 22 can run the sources as they are.
 * 3. Node's own type stripper (`amaro`, strip-only mode, as `node --strip-types` uses it)
 *    accepts every library source, the smoke suite and the edge example.
 *
 * Exits 1 with a list of findings when either fails.
 *
 * @module
 */
import amaro from "amaro";

const root = new URL("..", import.meta.url);
const NOT_CORE = [
  "runtime/",
  "backends/kafka/",
  "tests/",
  "scripts/",
  "bench/",
  "examples/",
  "docs/",
  "node_modules/",
  ".kafka/",
  "dist/",
];
/** Entry points of the library (and the smoke suite, which every runtime loads). */
const ENTRY_POINTS = [
  "mod.ts",
  "health.ts",
  "processing/dlq.ts",
  "backends/local/mod.ts",
  "backends/kafka/mod.ts",
  "stream.ts",
  "backends/stream.ts",
  "runtime/mod.ts",
  "strategies/workers/_runtime.ts",
  "tests/smoke/suite.ts",
  "tests/smoke/main.ts",
  "examples/edge/pipeline.ts",
];
const FORBIDDEN = /\bDeno\.|\bBun\.|\bprocess\.|\brequire\(|["']node:/;

/** The code of one line: comments and string literals removed (good enough for a lint). */
function codeOf(line: string, inBlock: { value: boolean }): string {
  let out = "";
  let i = 0;
  while (i < line.length) {
    if (inBlock.value) {
      const end = line.indexOf("*/", i);
      if (end < 0) return out;
      inBlock.value = false;
      i = end + 2;
      continue;
    }
    const c = line[i];
    if (c === "/" && line[i + 1] === "*") {
      inBlock.value = true;
      i += 2;
    } else if (c === "/" && line[i + 1] === "/") {
      return out;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < line.length && line[j] !== c) j += line[j] === "\\" ? 2 : 1;
      out += c + c;
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

async function* walk(dir: URL, skip: string[], rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = rel + e.name + (e.isDirectory ? "/" : "");
    if (skip.some((n) => path.startsWith(n)) || e.name.startsWith(".")) continue;
    if (e.isDirectory) yield* walk(new URL(e.name + "/", dir), skip, path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

const findings: string[] = [];
for await (const file of walk(root, NOT_CORE)) {
  const inBlock = { value: false };
  const lines = (await Deno.readTextFile(new URL(file, root))).split("\n");
  lines.forEach((line, i) => {
    const code = codeOf(line, inBlock);
    const m = code.match(FORBIDDEN);
    if (m) findings.push(`${file}:${i + 1}: core code uses "${m[0]}": ${line.trim()}`);
  });
}
if (findings.length > 0) {
  console.error(
    `check:core: the core must use web-standard APIs only; move these behind runtime/mod.ts:\n` +
      findings.map((f) => `  ${f}`).join("\n"),
  );
}

// The type check with web-standard libraries and erasable syntax only. The config is made
// from deno.json's npm imports (the core uses no other).
const denoJson = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
const imports = Object.fromEntries(
  Object.entries(denoJson.imports as Record<string, string>).filter(([, v]) =>
    v.startsWith("npm:")
  ),
);
const config = await Deno.makeTempFile({ prefix: "sluice-core-", suffix: ".json" });
await Deno.writeTextFile(
  config,
  JSON.stringify({
    compilerOptions: {
      lib: ["esnext", "dom", "dom.iterable", "dom.asynciterable"],
      erasableSyntaxOnly: true,
      types: [],
    },
    imports,
  }),
);
const check = await new Deno.Command(Deno.execPath(), {
  args: ["check", "--quiet", "--config", config, ...ENTRY_POINTS],
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
}).output();
await Deno.remove(config);
if (!check.success) {
  console.error(
    "check:core: the library does not type-check with lib esnext+dom and erasableSyntaxOnly " +
      "(see above): use web-standard APIs (or runtime/mod.ts), and no parameter properties, " +
      "enums or namespaces (Node's type stripping rejects them)",
  );
}
// Node's type stripper over the library (runtime layer and Kafka backend included).
const NOT_LIBRARY = NOT_CORE.filter((d) => d !== "runtime/" && d !== "backends/kafka/");
const stripped: string[] = [];
for (const dir of ["", "tests/smoke/", "examples/edge/"]) {
  for await (const file of walk(new URL(dir, root), dir === "" ? NOT_LIBRARY : [])) {
    stripped.push(dir + file);
  }
}
const unstrippable: string[] = [];
for (const file of stripped) {
  try {
    amaro.transformSync(await Deno.readTextFile(new URL(file, root)), {
      mode: "strip-only",
      filename: file,
    });
  } catch (e) {
    const { message, snippet } = e as { message?: string; snippet?: string };
    unstrippable.push(`  ${file}: ${message ?? e}\n${snippet ?? ""}`);
  }
}
if (unstrippable.length > 0) {
  console.error(
    "check:core: Node's type stripping (amaro, strip-only) rejects these sources; use " +
      "erasable syntax (fields instead of parameter properties, unions instead of enums):\n" +
      unstrippable.join("\n"),
  );
}
if (findings.length > 0 || !check.success || unstrippable.length > 0) Deno.exit(1);
console.log(
  `check:core: ok (${ENTRY_POINTS.length} entry points web-standard with erasable syntax; ` +
    `${stripped.length} sources accepted by Node's type stripper)`,
);
