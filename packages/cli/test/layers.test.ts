import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "../../..");
const script = join(repo, "scripts/check-import-cycles.mjs");
const cliSrc = join(repo, "packages/cli/src");
const check = (cwd: string, ...args: string[]) =>
  spawnSync(process.execPath, [script, ...args], { cwd, encoding: "utf8" });

/** A copy of the CLI's src/ in a temp folder, so a test can plant a bad import; removed afterwards. */
function withCopy(test: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "pb-layers-"));
  try {
    cpSync(cliSrc, join(dir, "src"), { recursive: true });
    test(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("CLI layers: the import check the test command runs on packages/cli/src", () => {
  it("passes the CLI as it is, from any directory, with a relative or an absolute path", () => {
    for (const [cwd, arg] of [
      [join(repo, "packages/cli"), "src"],
      [tmpdir(), cliSrc],
      [repo, "packages/cli/src"],
    ] as const) {
      const r = check(cwd, arg);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      // it looked at the folders: the layers are named in the order they depend
      const order = /lowest first: (.+)$/m.exec(r.stdout)![1]!.split(", ");
      for (const layer of ["options", "host", "render"])
        expect(order.indexOf(layer), layer).toBeLessThan(order.indexOf("commands"));
    }
  });

  it("refuses a path that is not a folder of sources instead of reporting no cycles", () => {
    const r = check(tmpdir(), "packages/cli/src");
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("nothing to check");
  });

  it("fails on a cycle planted in a copy of the CLI, naming the imports that close it", () => {
    withCopy((dir) => {
      // options/ is below commands/: an options file importing a command closes a loop
      appendFileSync(
        join(dir, "src/options/targets.ts"),
        'import { offsitePushCommand } from "../commands/offsite.js";\nexport const planted = offsitePushCommand;\n',
      );
      const r = check(dir, "src");
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("folder cycle");
      expect(r.stderr).toContain("options/targets.ts imports ../commands/offsite.js");
    });
  });

  it("fails when a command imports another command, even without a cycle", () => {
    withCopy((dir) => {
      const verify = join(dir, "src/commands/verify.ts");
      writeFileSync(
        verify,
        `import { listCommand } from "./list.js";\n${readFileSync(verify, "utf8")}\nexport const planted = listCommand;\n`,
      );
      const r = check(dir, "src");
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("command imports command");
      expect(r.stderr).toContain("commands/verify.ts imports commands/list.ts");
      expect(r.stderr).not.toContain("cycle");
    });
  });
});
