import { describe, it, expect } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CLI, makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

/**
 * Issue 19 §1 through real processes: the context session belongs to core. An SDK call with no
 * lock of its own (the README's example) and a cron tick meet a CLI restore stopped right after it
 * moved the live context aside; neither may "recover" the swap under its feet.
 */
const CTX = "internal-dogfood";
const PAUSE = resolve(import.meta.dirname, "pause-preload.mjs");
const CORE_DIST = resolve(import.meta.dirname, "../../core/dist");

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
    cwd: tmpdir(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c) => (stdout += c));
  child.stderr!.on("data", (c) => (stderr += c));
  const done = new Promise<Finished>((resolveDone) =>
    child.on("close", (code, signal) => resolveDone({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A sandbox with one snapshot, and the live context damaged since (so a restore changes it). */
async function prepared(): Promise<{ sb: Sandbox; snapshotTargets: string }> {
  const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 1 }]);
  const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  expect(snap.code, snap.stderr).toBe(0);
  const ctx = sb.state.contextDir(CTX);
  const snapshotTargets = treeHashes(ctx).get("targets.json")!;
  writeFileSync(join(ctx, "targets.json"), `${JSON.stringify({ current_target: "broken", targets: [] })}\n`);
  // a short lock wait, so a refused run says so in a second rather than thirty
  writeFileSync(join(sb.dir, "config.json"), JSON.stringify({ lockTimeoutSeconds: 1 }));
  return { sb, snapshotTargets };
}

/** A CLI restore, stopped (SIGSTOP) right after it moved the live context aside. */
async function pausedRestore(sb: Sandbox, ticket: string) {
  const marker = join(sb.dir, `paused-${ticket}`);
  const restore = start(
    ["--import", PAUSE, CLI, ...sb.flags, "--json", "restore", "--context", CTX, "--ticket", ticket, "--yes"],
    { PB_STOP_AFTER_RENAME_TO: "/moved-aside/", PB_STOP_MARKER: marker },
  );
  await until("the restore to move the live context aside", () => existsSync(marker));
  expect(existsSync(sb.state.contextDir(CTX)), "the live context is moved aside").toBe(false);
  expect(readdirSync(join(sb.stateRoot, ".paas-backup", "journal"))).toEqual([`${CTX}.json`]);
  return restore;
}

function incidents(sb: Sandbox): { kind: string; outcome: string }[] {
  const dir = join(sb.backupRoot, CTX, "incidents");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
}

/** The README's SDK example, as a separate process: createSnapshot with nodeFs and no lock of its own. */
function sdkSnapshot(sb: Sandbox) {
  const script = join(sb.dir, "sdk-snapshot.mjs");
  writeFileSync(
    script,
    `import { createSnapshot } from ${JSON.stringify(join(CORE_DIST, "index.js"))};
import { nodeFs } from ${JSON.stringify(join(CORE_DIST, "fs", "node-fs.js"))};
try {
  const snapshot = await createSnapshot({ fs: nodeFs, stateRoot: ${JSON.stringify(sb.stateRoot)}, backupRoot: ${JSON.stringify(sb.backupRoot)}, context: ${JSON.stringify(CTX)}, clock: () => new Date(), insecurePlaintext: true });
  console.log(JSON.stringify({ id: snapshot.id }));
} catch (e) {
  console.log(JSON.stringify({ code: e.code, exitCode: e.exitCode, message: e.message }));
}
`,
  );
  return start([script]);
}

describe("the context session belongs to core (issue 19 §1)", () => {
  it("an SDK createSnapshot with no lock of its own, run while a CLI restore has moved the live context aside, waits for it; the restore finishes", async () => {
    const { sb, snapshotTargets } = await prepared();
    try {
      const restore = await pausedRestore(sb, "INC-SDK");
      const sdk = sdkSnapshot(sb);
      // the SDK call waits for the lock: it does not touch the swap in flight
      await new Promise((r) => setTimeout(r, 1500));
      expect(sdk.child.exitCode, "the SDK call is still waiting").toBeNull();
      expect(existsSync(sb.state.contextDir(CTX)), "nothing recovered under the restore").toBe(false);
      expect(readdirSync(join(sb.stateRoot, ".paas-backup", "journal"))).toEqual([`${CTX}.json`]);
      restore.child.kill("SIGCONT");
      const restored = await restore.done;
      expect(restored.code, restored.stderr).toBe(0);
      expect(JSON.parse(restored.stdout).data[0]).toMatchObject({ ok: true, outcome: "restored" });
      const sdkOut = await sdk.done;
      expect(sdkOut.code, sdkOut.stderr).toBe(0);
      // then it took its snapshot, of the restored state
      expect(JSON.parse(sdkOut.stdout)).toMatchObject({ id: expect.stringMatching(/^\d{8}T\d{6}Z/) });
      expect(treeHashes(sb.state.contextDir(CTX)).get("targets.json")).toBe(snapshotTargets);
      expect(incidents(sb).map((i) => i.kind)).toEqual(["restore"]);
    } finally {
      sb.cleanup();
    }
  }, 120_000);

  it("a restore holding the lock for 7 hours (by the clock) is not taken over by a tick; a killed one is", async () => {
    const { sb, snapshotTargets } = await prepared();
    try {
      const restore = await pausedRestore(sb, "INC-LONG");
      const lock = JSON.parse(readFileSync(join(sb.backupRoot, CTX, ".lock"), "utf8"));
      expect(lock).toMatchObject({ pid: restore.child.pid, host: hostname(), command: "restore" });
      // the lock records the holder's start time beside its pid (Linux: /proc/<pid>/stat field 22)
      expect(lock.processStart).toBe(
        readFileSync(`/proc/${restore.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19],
      );
      const later = new Date(Date.parse(lock.startedAt) + 7 * 3600_000).toISOString();
      const tick = await runCli(
        [
          ...sb.flags,
          "--config",
          join(sb.dir, "config.json"),
          "--json",
          "tick",
          "--all-contexts",
          "--insecure-plaintext",
        ],
        { env: { PAAS_BACKUP_NOW: later } },
      );
      expect(tick.code, tick.stderr).not.toBe(0);
      expect(tick.json.data.find((o: any) => o.context === CTX)).toMatchObject({
        ok: false,
        error: { code: "PAAS_BACKUP_LOCKED" },
      });
      expect(existsSync(sb.state.contextDir(CTX)), "the tick recovered nothing").toBe(false);
      expect(incidents(sb)).toEqual([]);
      restore.child.kill("SIGCONT");
      const restored = await restore.done;
      expect(restored.code, restored.stderr).toBe(0);
      expect(treeHashes(sb.state.contextDir(CTX)).get("targets.json")).toBe(snapshotTargets);

      // a restore killed at the same point: its pid is gone, so the next command takes the lock over at once and recovers
      writeFileSync(
        join(sb.state.contextDir(CTX), "targets.json"),
        `${JSON.stringify({ current_target: "broken", targets: [] })}\n`,
      );
      const doomed = await pausedRestore(sb, "INC-KILLED");
      doomed.child.kill("SIGKILL");
      await doomed.done;
      const next = await runCli([
        ...sb.flags,
        "--config",
        join(sb.dir, "config.json"),
        "--json",
        "doctor",
        "--context",
        CTX,
      ]);
      expect(next.stderr).toMatch(/recovery: an interrupted restore of internal-dogfood .* was undone/);
      expect(existsSync(sb.state.contextDir(CTX))).toBe(true);
      expect(existsSync(join(sb.backupRoot, CTX, ".lock"))).toBe(false);
    } finally {
      sb.cleanup();
    }
  }, 120_000);

  it("a lock whose pid is alive but started at another time (a reused pid) is taken over; the live holder's is not", async () => {
    const { sb } = await prepared();
    const sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const pid = sleeper.pid!;
      await until("the sleeper to start", () => existsSync(`/proc/${pid}/stat`));
      const startOf = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]!;
      const lockFile = join(sb.backupRoot, CTX, ".lock");
      const startedAt = new Date().toISOString();
      const holder = (processStart: string) =>
        `${JSON.stringify({ pid, host: hostname(), nonce: `held-by-${processStart}`, startedAt, command: "restore", processStart })}\n`;
      const snapshot = () =>
        runCli([
          ...sb.flags,
          "--config",
          join(sb.dir, "config.json"),
          "--json",
          "snapshot",
          "--context",
          CTX,
          "--insecure-plaintext",
        ]);
      // the live holder (same pid, same start time): refused after the wait
      writeFileSync(lockFile, holder(startOf), { mode: 0o600 });
      const refused = await snapshot();
      expect(refused.code, refused.stderr).toBe(6);
      expect(refused.json.error).toMatchObject({ code: "PAAS_BACKUP_LOCKED" });
      expect(readFileSync(lockFile, "utf8")).toBe(holder(startOf));
      // the same pid with another start time is another process: the holder is gone
      writeFileSync(lockFile, holder(String(Number(startOf) - 1)), { mode: 0o600 });
      const taken = await snapshot();
      expect(taken.code, taken.stderr).toBe(0);
      expect(existsSync(lockFile)).toBe(false);
    } finally {
      sleeper.kill("SIGKILL");
      sb.cleanup();
    }
  }, 120_000);
});
