import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, execFileSync } from "node:child_process";
import { chownSync, chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeFs } from "@paas-backup/core/node";
import { createStateRoot } from "@paas-backup/testing";
import { CLI, cliForOtherUsers, runCli, makeSandbox, treeHashes } from "./helpers.js";

/**
 * Issue 10 §7: the environment's refusals are named (exit 10, the file and its owner, the
 * filesystem and the space needed), Ctrl-C at the prompt changes nothing, and nothing partial
 * is left that list shows. Real parts: a non-root user, a tmpfs, a pty.
 */
const CTX = "internal-dogfood";
// `nobody` runs the same build from a path it can reach, wherever the checkout is (issue 25 §1).
let otherUsersCli: { cli: string; release(): void };
beforeAll(() => {
  otherUsersCli = cliForOtherUsers();
});
afterAll(() => otherUsersCli?.release());

function chownTree(dir: string, uid: number, gid: number) {
  chownSync(dir, uid, gid);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}

function runAs(
  user: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", user, "--", process.execPath, otherUsersCli.cli, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("environment problems are named, not called bugs", () => {
  it("an unreadable state file (EACCES) is exit 10 naming the file and its owner; nothing is listed", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    try {
      const nobody = Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" }).trim());
      const nogroup = Number(execFileSync("id", ["-g", "nobody"], { encoding: "utf8" }).trim());
      chownTree(sb.dir, nobody, nogroup);
      const file = join(sb.state.contextDir(CTX), "deployments.json");
      chownSync(file, 0, 0);
      chmodSync(file, 0o600);
      const r = await runAs("nobody", [
        ...sb.flags,
        "--json",
        "snapshot",
        "--context",
        CTX,
        "--insecure-plaintext",
      ]);
      expect(r.code).toBe(10);
      const json = JSON.parse(r.stdout);
      expect(json.error.code).toBe("PAAS_BACKUP_PERMISSION_DENIED");
      expect(json.error.message).toContain(file);
      expect(json.error.message).toContain("owned by root");
      expect(json.error.target).toBe(file);
      const list = await runAs("nobody", [...sb.flags, "--json", "list", "--context", CTX]);
      expect(JSON.parse(list.stdout).count).toBe(0);
    } finally {
      sb.cleanup();
    }
  }, 60_000);

  it("a user other than root pushes read-only offsite copies and verifies them", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    try {
      const nobody = Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" }).trim());
      const nogroup = Number(execFileSync("id", ["-g", "nobody"], { encoding: "utf8" }).trim());
      chownTree(sb.dir, nobody, nogroup);
      const to = ["--to", `file://${join(sb.dir, "offsite")}`];
      for (const day of ["2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"]) {
        const snap = await runAs(
          "nobody",
          [...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
          { PAAS_BACKUP_NOW: day },
        );
        expect(snap.code, snap.stdout + snap.stderr).toBe(0);
        const push = await runAs(
          "nobody",
          [...sb.flags, "--json", "offsite", "push", "--context", CTX, ...to, "--allow-plaintext"],
          {
            PAAS_BACKUP_NOW: day,
          },
        );
        expect(push.code, push.stdout + push.stderr).toBe(0);
      }
      const verify = await runAs("nobody", [
        ...sb.flags,
        "--json",
        "offsite",
        "verify",
        "--context",
        CTX,
        ...to,
      ]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      expect(JSON.parse(verify.stdout).data[0].results).toHaveLength(2);
    } finally {
      execFileSync("chmod", ["-R", "u+rwx", sb.dir]);
      sb.cleanup();
    }
  }, 60_000);

  it("a full disk (ENOSPC on a tmpfs) is exit 10 naming the filesystem and the space needed; nothing is listed", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 1 }]);
    const mount = join(sb.dir, "small");
    mkdirSync(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mount]);
    try {
      // incompressible bytes so the artifact cannot fit
      writeFileSync(
        join(sb.state.contextDir(CTX), "releases", "blob.bin"),
        execFileSync("head", ["-c", "1000000", "/dev/urandom"]),
      );
      const flags = ["--state-root", sb.stateRoot, "--backup-root", mount];
      const r = await runCli([
        ...flags,
        "--json",
        "snapshot",
        "--context",
        CTX,
        "--insecure-plaintext",
        "--include",
        "releases",
      ]);
      expect(r.code).toBe(10);
      expect(r.json.error.code).toBe("PAAS_BACKUP_NO_SPACE");
      expect(r.json.error.message).toContain(mount);
      expect(r.json.error.message).toMatch(/needs up to \d+(\.\d)? KiB/);
      expect(r.json.error.message).toMatch(/free of 256\.0 KiB/);
      const list = await runCli([...flags, "--json", "list", "--context", CTX]);
      expect(list.json.count).toBe(0);
      expect(readdirSync(join(mount, CTX)).filter((n) => /\.tar\.gz/.test(n))).toEqual([]);
    } finally {
      execFileSync("umount", [mount]);
      sb.cleanup();
    }
  }, 60_000);

  it("a restore onto a full filesystem (tmpfs state root) is exit 10 naming it; the live context is untouched", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-enospc-"));
    const stateRoot = join(dir, "state");
    mkdirSync(stateRoot);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=600k", "tmpfs", stateRoot]);
    try {
      const state = await createStateRoot({
        fs: nodeFs,
        root: stateRoot,
        contexts: [{ name: CTX, eventBytes: 250_000 }],
      });
      const flags = ["--state-root", stateRoot, "--backup-root", join(dir, "backups")];
      expect((await runCli([...flags, "snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(0);
      writeFileSync(join(stateRoot, "filler"), Buffer.alloc(200_000));
      const before = treeHashes(state.contextDir(CTX));
      const r = await runCli([
        ...flags,
        "--json",
        "restore",
        "--context",
        CTX,
        "--ticket",
        "INC-FULL",
        "--yes",
      ]);
      expect(r.code).toBe(10);
      expect(r.json.error.code).toBe("PAAS_BACKUP_NO_SPACE");
      expect(r.json.error.message).toContain(stateRoot);
      expect(r.json.error.message).toMatch(/needs up to/);
      expect(treeHashes(state.contextDir(CTX))).toEqual(before);
      expect(readdirSync(join(stateRoot, ".paas-backup", "staging"))).toEqual([]);
    } finally {
      execFileSync("umount", [stateRoot]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("Ctrl-C at the confirmation prompt (a real pty) says nothing changed, exit 2, and changes nothing", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    try {
      // a snapshot whose config.json is not valid JSON: the prompt shows that warning
      writeFileSync(join(sb.state.contextDir(CTX), "config.json"), '{"name": "internal-dogfood",');
      expect((await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(
        0,
      );
      writeFileSync(join(sb.state.contextDir(CTX), "targets.json"), '{"targets": []}\n');
      const before = treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"));
      const cmd = [process.execPath, CLI, ...sb.flags, "restore", "--context", CTX, "--ticket", "INC-CTRL-C"]
        .map((a) => `'${a}'`)
        .join(" ");
      const result = await new Promise<{ code: number; out: string }>((resolve) => {
        const child = spawn("script", ["-qec", cmd, "/dev/null"], {
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", TERM: "dumb" },
          stdio: ["pipe", "pipe", "pipe"],
        });
        let out = "";
        let sent = false;
        child.stdout.on("data", (c) => {
          out += c;
          // Ctrl-C once the prompt is on the terminal, as an operator would
          if (!sent && out.includes("to confirm")) {
            sent = true;
            child.stdin.write("\u0003");
          }
        });
        child.on("close", (code) => resolve({ code: code ?? -1, out }));
      });
      expect(result.out).toMatch(/warnings: +config\.json: not valid JSON/);
      expect(result.out).toContain("aborted at the confirmation prompt");
      expect(result.out).toContain("nothing changed");
      expect(result.out).toContain("PAAS_BACKUP_ABORTED (exit 2)");
      expect(result.code).toBe(2);
      expect(treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"))).toEqual(before);
    } finally {
      sb.cleanup();
    }
  }, 60_000);
});
