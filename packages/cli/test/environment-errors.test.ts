import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from "vitest";
import { spawn, execFileSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cliForOtherUsers, makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

/**
 * Issue 20 (Environment errors): what the machine refuses is exit 10 with a named code and the
 * path, never exit 1 ("report the message"), never "not found" or "no contexts". Real parts:
 * tmpfs mounts (read-only, full), a second filesystem, a bind mount, the user `nobody`.
 */
const CTX = "internal-dogfood";
const OTHER = "customer-a";

let otherUsersCli: { cli: string; release(): void };
beforeAll(() => {
  otherUsersCli = cliForOtherUsers();
});
afterAll(() => otherUsersCli?.release());

function runAsNobody(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", "nobody", "--", process.execPath, otherUsersCli.cli, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: "/tmp" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("environment errors are exit 10, named", () => {
  let sb: Sandbox;
  const mounts: string[] = [];
  beforeEach(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 20_000, releases: 1 },
      { name: OTHER, type: "customer", eventBytes: 5_000 },
    ]);
  });
  afterEach(() => {
    for (const m of mounts.splice(0).reverse()) execFileSync("umount", [m]);
    sb.cleanup();
  });
  const mount = (at: string, ...args: string[]) => {
    mkdirSync(at, { recursive: true });
    execFileSync("mount", [...args, at]);
    mounts.push(at);
  };

  it("tick on a read-only backup root, and on a full one, is exit 10 and never says it took a snapshot", async () => {
    const ro = join(sb.dir, "ro");
    mount(ro, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs");
    const r = await runCli([
      "--state-root",
      sb.stateRoot,
      "--backup-root",
      ro,
      "tick",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(10);
    expect(r.stdout).toContain("PAAS_BACKUP_READ_ONLY");
    expect(r.stdout).toContain(ro);

    const full = join(sb.dir, "full");
    mount(full, "-t", "tmpfs", "-o", "size=64k", "tmpfs");
    writeFileSync(
      join(sb.state.contextDir(CTX), "releases", "r-40", "blob.bin"),
      execFileSync("head", ["-c", "500000", "/dev/urandom"]),
    );
    const f = await runCli([
      "--state-root",
      sb.stateRoot,
      "--backup-root",
      full,
      "--json",
      "tick",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--include",
      "releases",
    ]);
    expect(f.code, f.stdout + f.stderr).toBe(10);
    expect(f.json.data[0].error.code).toBe("PAAS_BACKUP_NO_SPACE");
    expect(f.json.data[0].error.message).toContain(full);
    const text = await runCli([
      "--state-root",
      sb.stateRoot,
      "--backup-root",
      full,
      "tick",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--include",
      "releases",
    ]);
    expect(text.code).toBe(10);
    expect(text.stdout).not.toContain("took a full snapshot");
    expect(text.stdout).toContain("failed to take a full snapshot");
  });

  it("a restore across filesystems (EXDEV) or into a bind-mounted context (EBUSY) is exit 10 named; the context is untouched", async () => {
    expect((await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(0);
    const restore = () =>
      runCli([...sb.flags, "--json", "restore", "--context", CTX, "--ticket", "INC-ENV", "--yes"]);
    const live = sb.state.contextDir(CTX);

    // the context bind-mounted onto itself: a mount point cannot be renamed
    mount(live, "--bind", live);
    const before = treeHashes(live);
    const busy = await restore();
    expect(busy.code, busy.stdout + busy.stderr).toBe(10);
    expect(busy.json.error.code).toBe("PAAS_BACKUP_MOUNT_BUSY");
    expect(busy.json.error.message).toContain(live);
    expect(treeHashes(live)).toEqual(before);
    execFileSync("umount", [mounts.pop()!]);

    // contexts/ on a filesystem of its own: staging and moved-aside are on another
    const contexts = join(sb.stateRoot, "contexts");
    const copy = join(sb.dir, "contexts-copy");
    cpSync(contexts, copy, { recursive: true });
    mount(contexts, "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs");
    cpSync(copy, contexts, { recursive: true });
    const beforeXdev = treeHashes(live);
    const xdev = await restore();
    expect(xdev.code, xdev.stdout + xdev.stderr).toBe(10);
    expect(xdev.json.error.code).toBe("PAAS_BACKUP_CROSS_DEVICE");
    expect(xdev.json.error.message).toContain(live);
    expect(treeHashes(live)).toEqual(beforeXdev);
  });

  it("a user who cannot read the roots gets exit 10 naming the path from list, verify, ls, find and status", async () => {
    expect((await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(0);
    // the sandbox is root's, 0700: nobody may not enter it
    chmodSync(sb.dir, 0o700);
    for (const args of [
      ["list", "--context", CTX],
      ["verify", "--context", CTX],
      ["ls", "--context", CTX],
      ["find", "--context", CTX, "config.json"],
      ["status"],
    ]) {
      const r = await runAsNobody([...sb.flags, "--json", ...args]);
      expect(r.code, `${args[0]}: ${r.stdout}${r.stderr}`).toBe(10);
      const error = JSON.parse(r.stdout).error;
      expect(error.code, args[0]).toBe("PAAS_BACKUP_PERMISSION_DENIED");
      expect(error.message, args[0]).toContain(sb.dir);
    }
  });

  it("one context whose backup folder is a file: status still writes the metrics of the others and flags it; tick names the code", async () => {
    expect((await runCli([...sb.flags, "tick", "--all-contexts", "--insecure-plaintext"])).code).toBe(0);
    rmSync(join(sb.backupRoot, OTHER), { recursive: true, force: true });
    writeFileSync(join(sb.backupRoot, OTHER), "not a folder\n");
    const tick = await runCli([...sb.flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"]);
    expect(tick.code, tick.stdout + tick.stderr).toBe(7);
    const broken = tick.json.data.find((o: any) => o.context === OTHER);
    expect(broken.error.code).toBe("PAAS_BACKUP_NOT_A_FOLDER");
    expect(broken.error.message).toContain(join(sb.backupRoot, OTHER));

    const metrics = join(sb.dir, "paas-backup.prom");
    const status = await runCli([...sb.flags, "--json", "status", "--metrics-file", metrics]);
    expect(status.code, status.stdout + status.stderr).toBe(11);
    const flagged = status.json.data.find((s: any) => s.context === OTHER);
    expect(flagged.ok).toBe(false);
    expect(flagged.attention.join(" ")).toContain("PAAS_BACKUP_NOT_A_FOLDER");
    expect(status.json.data.find((s: any) => s.context === CTX).newestFull).not.toBeNull();
    const prom = readFileSync(metrics, "utf8");
    expect(prom).toMatch(new RegExp(`paas_backup_newest_full_age_seconds\\{context="${CTX}"\\} \\d`));
    expect(prom).toMatch(new RegExp(`paas_backup_context_ok\\{context="${OTHER}"\\} 0`));
  });

  it("a context folder whose name is longer than 200 bytes needs attention; status still reports the fleet", async () => {
    const long = "x".repeat(210);
    mkdirSync(join(sb.stateRoot, "contexts", long), { mode: 0o700 });
    expect((await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(0);
    const status = await runCli([...sb.flags, "--json", "status"]);
    expect(status.code, status.stdout + status.stderr).toBe(11);
    expect(status.json.data.map((s: any) => s.context)).toEqual(expect.arrayContaining([CTX, OTHER, long]));
    const flagged = status.json.data.find((s: any) => s.context === long);
    expect(flagged.attention.join(" ")).toContain("PAAS_BACKUP_INVALID_CONTEXT");
    expect(existsSync(join(sb.backupRoot, CTX))).toBe(true);
  });
});
