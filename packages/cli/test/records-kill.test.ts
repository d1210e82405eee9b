import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BLOCK_FILE, writeBlock } from "@paas-backup/core";
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
});
