import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BLOCK_FILE, writeBlock } from "@paas-backup/core/records";
import { nodeFs } from "@paas-backup/core/node";
import { CLI, makeSandbox, runCli, type Sandbox } from "./helpers.js";

/** Issue 20 (Records): a kill between two steps never leaves a change without its record. */
const CTX = "internal-dogfood";
const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");

function runKilledAfter(call: string, args: string[]): Promise<{ signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ["--import", PRELOAD, CLI, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", PB_KILL_AFTER_CALL: call },
      cwd: tmpdir(),
      stdio: ["ignore", "ignore", "ignore"],
    });
    child.on("close", (_code, signal) => done({ signal }));
  });
}

describe("records survive a kill", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("unblock killed right after it removes the marker has already written its record", async () => {
    await writeBlock(nodeFs, sb.stateRoot, {
      context: CTX,
      ticket: "INC-B",
      blockedAt: "2026-12-01T00:00:00.000Z",
      reason: "post-restore validation failed: test",
      snapshot: null,
      failingChecks: [],
      externalDoctor: null,
    });
    const marker = join(sb.state.contextDir(CTX), BLOCK_FILE);
    expect(existsSync(marker)).toBe(true);
    const killed = await runKilledAfter(`rm:${BLOCK_FILE}`, [
      ...sb.flags,
      "unblock",
      "--context",
      CTX,
      "--ticket",
      "INC-B",
    ]);
    expect(killed.signal).toBe("SIGKILL");
    expect(existsSync(marker)).toBe(false);
    const incidents = join(sb.backupRoot, CTX, "incidents");
    const records = readdirSync(incidents)
      .filter((n) => n.endsWith(".json"))
      .map((n) => JSON.parse(readFileSync(join(incidents, n), "utf8")));
    expect(records).toContainEqual(
      expect.objectContaining({ kind: "unblock", ticket: "INC-B", outcome: "unblocked", context: CTX }),
    );
    // and status agrees: not blocked
    const status = await runCli([...sb.flags, "--json", "status", "--context", CTX]);
    expect(status.json.data[0].blocked).toBeNull();
  });

  it("offsite push killed right after the artifact's rename leaves a read-only copy that verifies", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stderr).toBe(0);
    const id = snap.json.data[0].id;
    const to = ["--to", `file://${join(sb.dir, "offsite")}`];
    const killed = await runKilledAfter(`rename:/${id}\\.tar\\.gz$`, [
      ...sb.flags,
      "offsite",
      "push",
      "--context",
      CTX,
      ...to,
      "--allow-plaintext",
    ]);
    expect(killed.signal).toBe("SIGKILL");
    const copies = (readdirSync(join(sb.dir, "offsite"), { recursive: true }) as string[]).filter((p) =>
      p.endsWith(`${id}.tar.gz`),
    );
    expect(copies).toHaveLength(1);
    expect(statSync(join(sb.dir, "offsite", copies[0]!)).mode & 0o777).toBe(0o400);
    expect(existsSync(join(sb.dir, "offsite", `${copies[0]}.sha256.meta`))).toBe(true);
    // the next push completes what the kill cut short; the copy is confirmed
    const again = await runCli([
      ...sb.flags,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      ...to,
      "--allow-plaintext",
    ]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const verify = await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const list = await runCli([...sb.flags, "--json", "offsite", "list", "--context", CTX, ...to]);
    const entry = list.json.data[0].entries.find((e: any) => e.id === id);
    expect(entry).toMatchObject({ confirmed: true, artifact: { mode: 0o400 } });
  });
});
