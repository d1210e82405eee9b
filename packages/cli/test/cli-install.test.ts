import { describe, it, expect } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Issue 13 §6: an install that works without the checkout. Pack core, s3 and the CLI as the README
 * says, install both tarballs globally into a temporary prefix with plain npm (from the npm
 * registry, as an operator would), and run the installed `paas-backup` from outside the repository.
 */
const repo = resolve(import.meta.dirname, "../../..");

describe("install from packed tarballs", () => {
  it("npm install -g of the packed core and CLI gives a working paas-backup (no @paas-backup/testing at run time)", () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-install-"));
    try {
      const env = {
        ...process.env,
        npm_config_update_notifier: "false",
        npm_config_fund: "false",
        npm_config_audit: "false",
      };
      for (const pkg of ["core", "s3", "cli"])
        execFileSync("npx", ["--yes", "pnpm@10", "pack", "--pack-destination", dir], {
          cwd: join(repo, "packages", pkg),
          env,
          stdio: "ignore",
        });
      const tarballs = readdirSync(dir)
        .filter((n) => n.endsWith(".tgz"))
        .map((n) => join(dir, n));
      expect(tarballs.map((t) => t.split("/").pop()).sort()).toEqual([
        "paas-backup-cli-0.1.0.tgz",
        "paas-backup-core-0.1.0.tgz",
        "paas-backup-s3-0.1.0.tgz",
      ]);
      const prefix = join(dir, "prefix");
      execFileSync("npm", ["install", "-g", "--prefix", prefix, ...tarballs], {
        cwd: dir,
        env,
        stdio: "ignore",
        timeout: 280_000,
      });
      const bin = join(prefix, "bin", "paas-backup");
      const run = (args: string[]) =>
        execFileSync(bin, args, {
          cwd: dir,
          encoding: "utf8",
          env: { PATH: `${join(prefix, "bin")}:${process.env.PATH}`, HOME: dir },
        });
      expect(run(["--version"]).trim()).toBe("0.1.0");
      expect(run(["demo"])).toContain("demo ok");
      const installed = readdirSync(join(prefix, "lib", "node_modules", "@paas-backup"));
      expect(installed.sort()).toEqual(["cli", "core", "s3"]);

      // A large log is scanned by core's worker thread. Without its module (a bundler dropped
      // it), the snapshot still succeeds: it is taken again with every file scanned inline.
      const ctx = join(dir, "state", "contexts", "internal-dogfood");
      mkdirSync(join(ctx, "events"), { recursive: true });
      const line = `${JSON.stringify({ timestamp: "2026-11-25T10:00:00Z", context: "internal-dogfood", source: "si paas", command: "deploy", status: "succeeded", note: "x".repeat(200) })}\n`;
      writeFileSync(
        join(ctx, "events", "deployments.jsonl"),
        line.repeat(Math.ceil((20 * 1048576) / line.length)),
      );
      const snapshot = () =>
        JSON.parse(
          run([
            "--state-root",
            join(dir, "state"),
            "--backup-root",
            join(dir, "backups"),
            "--json",
            "snapshot",
            "--context",
            "internal-dogfood",
            "--insecure-plaintext",
          ]),
        );
      expect(snapshot().ok).toBe(true);
      const worker = join(
        prefix,
        "lib",
        "node_modules",
        "@paas-backup",
        "core",
        "dist",
        "snapshot",
        "scan-worker.js",
      );
      expect(existsSync(worker)).toBe(true);
      rmSync(worker);
      const without = snapshot();
      expect(without.ok).toBe(true);
      expect(without.data[0].files).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it("the README's `pnpm exec paas-backup` works in the workspace, and packed tarballs are ignored by git", () => {
    const out = execFileSync("npx", ["--yes", "pnpm@10", "exec", "paas-backup", "--version"], {
      cwd: repo,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
    // `pnpm pack` in a package folder writes the tarball there: git must not offer to commit it.
    for (const tarball of ["paas-backup-cli-0.1.0.tgz", "packages/cli/paas-backup-cli-0.1.0.tgz"])
      expect(execFileSync("git", ["check-ignore", tarball], { cwd: repo, encoding: "utf8" }).trim()).toBe(
        tarball,
      );
  });
});
