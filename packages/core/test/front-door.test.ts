import { describe, it, expect } from "vitest";
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { join, resolve, relative } from "node:path";
import ts from "typescript";

// The SDK's front door (issue 19 §5): the root entry of @paas-backup/core holds the verbs, their
// options and results, the errors, FileSystem and ObjectStorage; everything else is behind a subpath
// named after its folder. Counted with the compiler, types included, as a caller's editor sees them.

const coreDir = resolve(import.meta.dirname, "..");
const repoDir = resolve(coreDir, "../..");
const MAX_ROOT_NAMES = 80;

const pkg = JSON.parse(readFileSync(join(coreDir, "package.json"), "utf8")) as {
  exports: Record<string, string | { types: string; import: string }>;
};
/** subpath -> its source file (package.json names the built files; the sources sit in src/) */
const entries = new Map(
  Object.entries(pkg.exports)
    .filter((e): e is [string, { types: string; import: string }] => typeof e[1] === "object")
    .map(([subpath, target]) => [
      subpath,
      join(coreDir, target.types.replace(/^\.\/dist\//, "src/").replace(/\.d\.ts$/, ".ts")),
    ]),
);

const program = ts.createProgram([...entries.values()], {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  strict: true,
  skipLibCheck: true,
  noEmit: true,
});
const checker = program.getTypeChecker();

interface ExportedName {
  name: string;
  /** the declaration's file, relative to src/ */
  declaredIn: string;
  deprecated: string | null;
  value: boolean;
}

function exportsOf(subpath: string): Map<string, ExportedName> {
  const file = program.getSourceFile(entries.get(subpath)!)!;
  const out = new Map<string, ExportedName>();
  for (const symbol of checker.getExportsOfModule(checker.getSymbolAtLocation(file)!)) {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    // an alias declared in the entry itself carries its own JSDoc (a deprecated alias)
    const tags = [
      ...symbol.getJsDocTags(checker),
      ...(symbol === target ? [] : target.getJsDocTags(checker)),
    ];
    const deprecated = tags.find((t) => t.name === "deprecated");
    out.set(symbol.name, {
      name: symbol.name,
      declaredIn: relative(join(coreDir, "src"), target.declarations![0]!.getSourceFile().fileName),
      deprecated: deprecated ? ts.displayPartsToString(deprecated.text) || "deprecated" : null,
      value: (target.flags & ts.SymbolFlags.Value) !== 0,
    });
  }
  return out;
}

const root = exportsOf(".");

describe("the SDK's front door: @paas-backup/core's root entry (issue 19 §5)", () => {
  it(`exports at most ${MAX_ROOT_NAMES} names, types included, none of them deprecated`, () => {
    const names = [...root.keys()].sort();
    expect(names.length, names.join(", ")).toBeLessThanOrEqual(MAX_ROOT_NAMES);
    // the verbs a caller starts from, each with its options and result
    for (const name of [
      "createSnapshot",
      "CreateSnapshotOptions",
      "SnapshotResult",
      "restoreSnapshot",
      "RestoreOptions",
      "RestoreResult",
      "withContext",
      "ContextSession",
      "openRepository",
      "FileSystem",
      "ObjectStorage",
      "PaasBackupError",
      "ERROR_CODES",
    ])
      expect(names).toContain(name);
    expect([...root.values()].filter((e) => e.deprecated).map((e) => e.name)).toEqual([]);
  });

  it("every root name is also exported by the entry of the folder it is declared in", () => {
    const all = new Map([...entries.keys()].filter((s) => s !== ".").map((s) => [s, exportsOf(s)]));
    for (const { name, declaredIn } of root.values()) {
      const homes = [...all].filter(([, names]) => names.get(name) && !names.get(name)!.deprecated);
      expect(homes.length, `${name} (${declaredIn}) has no subpath entry`).toBeGreaterThan(0);
    }
  });

  it("package.json exports each folder's entry, and every entry's source exists", () => {
    for (const [subpath, file] of entries) expect(existsSync(file), `${subpath}: ${file}`).toBe(true);
    const src = join(coreDir, "src");
    const folders = readdirSync(src).filter(
      (f) => statSync(join(src, f)).isDirectory() && existsSync(join(src, f, "index.ts")),
    );
    const exported = new Set([...entries.values()].map((f) => relative(src, f)));
    for (const folder of folders) expect(exported, folder).toContain(`${folder}/index.ts`);
  });

  it("the names /snapshot and /catalog carried from other folders still work there, deprecated, naming their entry", async () => {
    const snapshot = exportsOf("./snapshot");
    const catalog = exportsOf("./catalog");
    // what the README documented for these two entries before the folders had their own
    const documented = {
      "./snapshot": [
        "createSnapshot",
        "planSnapshotContents",
        "withContextLock",
        "recoverContext",
        "ageEncryptor",
      ],
      "./catalog": [
        "scanSnapshots",
        "checkSnapshotChecksum",
        "compareSnapshotIds",
        "validateContextName",
        "parseManifest",
      ],
    };
    for (const name of documented["./snapshot"]) expect(snapshot.has(name), name).toBe(true);
    for (const name of documented["./catalog"]) expect(catalog.has(name), name).toBe(true);
    expect(snapshot.get("createSnapshot")!.deprecated).toBeNull();
    expect(snapshot.get("withContextLock")!.deprecated).toMatch(/@paas-backup\/core\/context/);
    expect(catalog.get("validateContextName")!.deprecated).toMatch(/@paas-backup\/core\/policy/);
    // an alias is the very same function as its owner's, not a copy that could drift
    const [snapshotModule, contextModule, catalogModule, policyModule] = await Promise.all([
      import("../src/snapshot/index.js"),
      import("../src/context/index.js"),
      import("../src/repository/catalog.js"),
      import("../src/policy/index.js"),
    ]);
    expect(snapshotModule.withContextLock).toBe(contextModule.withContextLock);
    expect(snapshotModule.recoverContext).toBe(contextModule.recoverContext);
    expect(catalogModule.validateContextName).toBe(policyModule.validateContextName);
    expect(catalogModule.contextDir).toBe(policyModule.contextDir);
  });

  it("no package in this repository imports a deprecated name from core (the CLI, testing and s3 use the folder entries)", () => {
    const deprecatedBySpecifier = new Map<string, Map<string, string>>();
    for (const subpath of entries.keys()) {
      const names = new Map(
        [...exportsOf(subpath).values()].filter((e) => e.deprecated).map((e) => [e.name, e.deprecated!]),
      );
      deprecatedBySpecifier.set(
        subpath === "." ? "@paas-backup/core" : `@paas-backup/core${subpath.slice(1)}`,
        names,
      );
    }
    const offenders: string[] = [];
    for (const pkgName of ["cli", "testing", "s3"]) {
      const dir = join(repoDir, "packages", pkgName, "src");
      const files = (function walk(d: string): string[] {
        return readdirSync(d).flatMap((f) => {
          const p = join(d, f);
          return statSync(p).isDirectory()
            ? walk(p)
            : /\.(m|c)?ts$/.test(f) && !f.endsWith(".d.ts")
              ? [p]
              : [];
        });
      })(dir);
      for (const file of files) {
        const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
        const visit = (node: ts.Node): void => {
          if (
            (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
            node.moduleSpecifier &&
            ts.isStringLiteral(node.moduleSpecifier)
          ) {
            const deprecated = deprecatedBySpecifier.get(node.moduleSpecifier.text);
            const bindings = ts.isImportDeclaration(node)
              ? node.importClause?.namedBindings
              : node.exportClause;
            if (deprecated && bindings && (ts.isNamedImports(bindings) || ts.isNamedExports(bindings)))
              for (const el of bindings.elements) {
                const name = (el.propertyName ?? el.name).text;
                if (deprecated.has(name))
                  offenders.push(
                    `${relative(repoDir, file)}: ${name} from ${node.moduleSpecifier.text} (${deprecated.get(name)})`,
                  );
              }
          }
          ts.forEachChild(node, visit);
        };
        visit(source);
      }
    }
    expect(offenders).toEqual([]);
  });
});
