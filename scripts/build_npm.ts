/**
 * `deno task build:npm`: the package for npm users, next to the JSR one.
 *
 * TypeScript (the `typescript` import, no type check: `deno task check` does that) turns
 * every library source into type-stripped ES2022 JavaScript plus a `.d.ts`, with relative
 * `.ts` imports rewritten to `.js` and `npm:` specifiers to plain package names. Output:
 *
 * - `dist/js/`: the whole tree, library plus the smoke suite and the edge example, for
 *   running them under Node and in a page (`tests/runtime/runtimes_test.ts`);
 * - `dist/npm/`: the package (library files, `package.json`, `README.md`, `LICENSE` when
 *   present). `kafkajs` is an optional peer dependency: only `@sluice/sluice/kafka` needs it;
 *   `@opentelemetry/api` is a peer dependency (types only in the core; npm installs it).
 *
 * Usage: deno run -A scripts/build_npm.ts [--pack]   (--pack also runs `npm pack` into dist/)
 *
 * @module
 */
import ts from "typescript";

const root = new URL("..", import.meta.url).pathname;
const denoJson = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
const exportsMap = denoJson.exports as Record<string, string>;
const EXTRA = [
  "tests/smoke/main.ts",
  "tests/smoke/double.ts",
  "tests/fixtures/signal_app.ts",
  "examples/edge/pipeline.ts",
  "strategies/workers/_runtime.ts",
];
const COPY = ["examples/edge/index.html"];
const outJs = `${root}dist/js/`;
const outPkg = `${root}dist/npm/`;

/** What a user's `npm install` would resolve these `npm:` specifiers to. */
function rewriteSpecifiers(text: string): string {
  return text.replace(
    /(["'])npm:((?:@[^/@"']+\/)?[^/@"']+)(?:@[^/"']+)?(\/[^"']*)?\1/g,
    (_m, q, name, sub) => `${q}${name}${sub ?? ""}${q}`,
  );
}

await Deno.remove(`${root}dist`, { recursive: true }).catch(() => {});

const options: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.esnext.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
  types: [],
  declaration: true,
  allowImportingTsExtensions: true,
  rewriteRelativeImportExtensions: true,
  noCheck: true,
  skipLibCheck: true,
  useDefineForClassFields: true,
  removeComments: false,
  rootDir: root,
  outDir: outJs,
  noEmitOnError: false,
};
const roots = [...new Set([...Object.values(exportsMap), ...EXTRA])].map((f) =>
  root + f.replace(/^\.\//, "")
);
const host = ts.createCompilerHost(options);
const written: string[] = [];
host.writeFile = (fileName, text) => {
  Deno.mkdirSync(fileName.slice(0, fileName.lastIndexOf("/")), { recursive: true });
  Deno.writeTextFileSync(fileName, rewriteSpecifiers(text));
  written.push(fileName);
};
const program = ts.createProgram(roots, options, host);
const emitted = program.emit();
const syntax = program.getSyntacticDiagnostics();
const problems = [...syntax, ...emitted.diagnostics];
if (problems.length > 0 || emitted.emitSkipped) {
  console.error(ts.formatDiagnostics(problems, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => "\n",
  }));
  console.error("build:npm: TypeScript could not emit the package (see above)");
  Deno.exit(1);
}
for (const f of COPY) {
  Deno.mkdirSync(outJs + f.slice(0, f.lastIndexOf("/")), { recursive: true });
  Deno.copyFileSync(root + f, outJs + f);
}

// The package: the library's files only.
const isLibrary = (rel: string) =>
  !rel.startsWith("tests/") && !rel.startsWith("examples/") && !rel.startsWith("node_modules/");
let files = 0;
for (const abs of written) {
  const rel = abs.slice(outJs.length);
  if (!isLibrary(rel)) continue;
  Deno.mkdirSync(outPkg + rel.slice(0, Math.max(0, rel.lastIndexOf("/"))), { recursive: true });
  Deno.copyFileSync(abs, outPkg + rel);
  files++;
}
const entry = (path: string) => {
  const base = path.replace(/^\.\//, "./").replace(/\.ts$/, "");
  return { types: `${base}.d.ts`, default: `${base}.js` };
};
const pkg = {
  name: denoJson.name,
  version: denoJson.version,
  description: "Stream processing with real backpressure on web streams: Arroyo's model for " +
    "Deno, Node, Bun, browsers and edge runtimes; in-memory broker, Kafka, any ReadableStream",
  license: denoJson.license,
  type: "module",
  engines: { node: ">=20.16" },
  exports: Object.fromEntries(Object.entries(exportsMap).map(([k, v]) => [k, entry(v)])),
  sideEffects: false,
  // The core imports only types from the OpenTelemetry API (its .d.ts files need them), as
  // a peer, as OpenTelemetry asks of libraries; npm installs it. kafkajs only for ./kafka.
  peerDependencies: { kafkajs: "^2.2.4", "@opentelemetry/api": "^1.9.0" },
  peerDependenciesMeta: { kafkajs: { optional: true } },
};
await Deno.writeTextFile(`${outPkg}package.json`, JSON.stringify(pkg, null, 2) + "\n");
await Deno.writeTextFile(
  `${outPkg}README.md`,
  `# ${denoJson.name}\n\nThe npm build of Sluice (type-stripped JavaScript and \`.d.ts\`). ` +
    "Entry points: " + Object.keys(exportsMap).map((k) => `\`${k}\``).join(", ") +
    ". `./kafka` needs `npm install kafkajs`. See docs/runtimes.md in the repository.\n",
);
for (const f of ["LICENSE", "LICENSE.md"]) {
  try {
    Deno.copyFileSync(root + f, outPkg + f);
  } catch { /* none */ }
}
console.log(`build:npm: ${files} files in dist/npm, the whole tree in dist/js`);

if (Deno.args.includes("--pack")) {
  const pack = await new Deno.Command("npm", {
    args: ["pack", "--pack-destination", `${root}dist`, "--json"],
    cwd: outPkg,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!pack.success) {
    console.error("build:npm: npm pack failed (see above)");
    Deno.exit(1);
  }
  const [{ filename }] = JSON.parse(new TextDecoder().decode(pack.stdout));
  console.log(`build:npm: packed dist/${filename}`);
}
