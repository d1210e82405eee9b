import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const script = resolve(import.meta.dirname, "../../../scripts/check-import-cycles.mjs");
const coreSrc = resolve(import.meta.dirname, "../src");
const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: "utf8" });

describe("dependencies point one way (the import-cycle check the test command runs)", () => {
  it("finds no folder or file cycle in core, and names the order folders depend in", () => {
    const r = run(coreSrc);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const order = /lowest first: (.+)$/m.exec(r.stdout)![1]!.split(", ");
    // records sit below what writes and reads them; governance (drills) above restore
    expect(order.indexOf("records")).toBeLessThan(order.indexOf("restore"));
    expect(order.indexOf("records")).toBeLessThan(order.indexOf("validate"));
    expect(order.indexOf("restore")).toBeLessThan(order.indexOf("governance"));
  });

  it("the folder order the README documents holds: every folder imports only folders listed before it", () => {
    const readme = readFileSync(resolve(import.meta.dirname, "../../../README.md"), "utf8");
    const documented = /\*\*Folder dependency order\*\* \(lowest first;[^)]*\): ([^.]+)\./
      .exec(readme.replace(/\s*\n\s*/g, " "))![1]!
      .split(", ");
    const r = run("--edges", coreSrc);
    expect(r.status).toBe(0);
    const edges = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, string[]>;
    // single files at the top of src/, not folders
    const leaves = ["errors", "version"];
    expect(
      Object.keys(edges)
        .filter((f) => !leaves.includes(f))
        .sort(),
    ).toEqual(documented.filter((f) => !leaves.includes(f)).sort());
    for (const [from, tos] of Object.entries(edges))
      for (const to of tos)
        if (!leaves.includes(to) && !leaves.includes(from))
          expect(documented.indexOf(to), `${from} imports ${to}`).toBeLessThan(documented.indexOf(from));
  });

  it("fails on a folder cycle, naming the imports that close it, also through type-only imports", () => {
    const src = mkdtempSync(join(tmpdir(), "pb-cycles-"));
    try {
      mkdirSync(join(src, "governance"));
      mkdirSync(join(src, "restore"));
      writeFileSync(
        join(src, "governance", "drill.ts"),
        'import { restore } from "../restore/restore.js";\nexport const drill = () => restore();\n',
      );
      writeFileSync(
        join(src, "restore", "restore.ts"),
        'import type { Block } from "../governance/block.js";\nexport const restore = (b?: Block) => b;\n',
      );
      writeFileSync(join(src, "governance", "block.ts"), "export interface Block { id: string }\n");
      const r = run(src);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("folder cycle");
      expect(r.stderr).toContain("governance -> restore: governance/drill.ts imports ../restore/restore.js");
      expect(r.stderr).toContain("restore -> governance: restore/restore.ts imports ../governance/block.js");
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});
