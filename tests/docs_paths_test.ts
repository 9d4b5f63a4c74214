/**
 * The README and `docs/` name files and folders of this repository (the map of where each
 * concept lives, links to examples, test files): every such name must exist, so a file that
 * moves or is renamed cannot leave the docs pointing at nothing.
 *
 * @module
 */
import { assertEquals } from "@std/assert";

const root = new URL("..", import.meta.url);
/** Generated or downloaded folders a doc may name that a fresh clone does not have. */
const GENERATED = [".kafka/", ".cache/", "dist/", "node_modules/", "bench/rust_arroyo/target"];

async function trackedFiles(): Promise<string[]> {
  const out = await new Deno.Command("git", { args: ["ls-files"], cwd: root, stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.length > 0);
}

async function docs(): Promise<string[]> {
  const pages = ["README.md"];
  for await (const e of Deno.readDir(new URL("docs/", root))) {
    if (e.isFile && e.name.endsWith(".md")) pages.push(`docs/${e.name}`);
  }
  return pages.sort();
}

Deno.test("docs: every repository path named in README.md and docs/ exists", async () => {
  const files = await trackedFiles();
  const paths = new Set<string>(files);
  for (const f of files) {
    for (let i = f.indexOf("/"); i >= 0; i = f.indexOf("/", i + 1)) paths.add(f.slice(0, i + 1));
  }
  const basenames = new Set(files.map((f) => f.slice(f.lastIndexOf("/") + 1)));
  const exists = (name: string, page: string): boolean => {
    if (GENERATED.some((g) => name.startsWith(g))) return true;
    if (!name.includes("/")) return basenames.has(name);
    const fromPage = page.includes("/")
      ? `${page.slice(0, page.lastIndexOf("/") + 1)}${name}`
      : name;
    if (paths.has(name) || paths.has(fromPage)) return true;
    // a path given relative to a folder the sentence names, e.g. `local/` under backends/
    for (const p of paths) if (p.endsWith(`/${name}`)) return true;
    return false;
  };
  const missing: string[] = [];
  for (const page of await docs()) {
    const text = await Deno.readTextFile(new URL(page, root));
    text.split("\n").forEach((line, i) => {
      for (
        const m of line.matchAll(/`(\.{0,2}\/?[\w.-]+(?:\/[\w.-]+)*(?:\.(?:ts|md|py|json)|\/))`/g)
      ) {
        const name = m[1].replace(/^\.\//, "");
        if (/^\.?d\.ts$/.test(name) || name.startsWith("../") || name.startsWith("/")) continue;
        if (!exists(name, page)) missing.push(`${page}:${i + 1}: ${m[1]}`);
      }
    });
  }
  assertEquals(missing, [], "paths named in the docs that do not exist (renamed or moved?)");
});
