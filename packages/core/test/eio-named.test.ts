import { describe, it, expect } from "vitest";
import { FaultInjectingFileSystem, MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import {
  createSnapshot,
  pruneSnapshots,
  runTick,
  ExitCode,
  PaasBackupError,
  type FileSystem,
  type LockOwner,
} from "../src/index.js";

/**
 * Issue 20, "environment errors": the fleet simulation found raw EIO errors escaping core's entry
 * points (prune's lstat of a checksum file, tick's and snapshot's lstat of a `.git` above the
 * roots, the rename of a checksum file), which a caller can only report as a bug (exit 1). Every
 * EIO a call meets, at whichever filesystem call, comes out as PAAS_BACKUP_IO_ERROR: exit 10, the
 * path named, what to do. Swept over every call of each entry point.
 */
const owner: LockOwner = { pid: 4242, host: "unit", command: "test", isAlive: () => false };

async function world(): Promise<{ mem: MemoryFileSystem; clock: () => Date }> {
  const mem = new MemoryFileSystem();
  await createStateRoot({
    fs: mem,
    root: "/state",
    contexts: [{ name: "alpha", eventBytes: 1_000 }],
    plantSecrets: false,
  });
  let t = Date.parse("2026-11-20T00:30:00Z");
  mem.now = t;
  const clock = () => new Date(t);
  // a full and its incrementals over a day: a tick takes a new full, then prune has something to remove
  for (let i = 0; i < 3; i++) {
    await createSnapshot({
      fs: mem,
      stateRoot: "/state",
      backupRoot: "/backups",
      context: "alpha",
      clock,
      kind: i === 0 ? "full" : "incremental",
      insecurePlaintext: true,
    });
    t += 9 * 3600_000;
    mem.now = t;
  }
  return { mem, clock };
}

interface Failure {
  code: string;
  message: string;
  remediation: string;
  exitCode?: number;
}

/** Inject EIO at every call of `operation` in turn: each failure it reports or throws must be the named error. */
async function sweep(operation: (fs: FileSystem, clock: () => Date) => Promise<Failure[]>): Promise<number> {
  let failures = 0;
  const fixture = await world();
  for (let at = 1; ; at++) {
    const mem = fixture.mem.clone();
    const fs = new FaultInjectingFileSystem(mem, { at, mode: "throw", code: "EIO" });
    const clock = fixture.clock;
    const seen = await operation(fs, clock).catch((e: unknown) => [e as Failure]);
    if (!fs.injected) return failures; // past the operation's last call: every call was tried
    const where = `EIO at call ${at} (${fs.injected.op} ${fs.injected.path})`;
    for (const f of seen) {
      failures++;
      expect(f instanceof PaasBackupError || !(f instanceof Error), `${where}: raw ${String(f)}`).toBe(true);
      expect([f.code, f.exitCode ?? ExitCode.environment], `${where}: ${f.message}`).toEqual([
        "PAAS_BACKUP_IO_ERROR",
        ExitCode.environment,
      ]);
      expect(f.message, where).toContain(fs.injected.path);
      expect(f.remediation, where).toMatch(/disk/);
    }
  }
}

describe("an I/O error (EIO) is named at every call of an entry point, never a raw error (exit 1)", () => {
  it("prune", async () => {
    const failures = await sweep(async (fs, clock) => {
      await pruneSnapshots({
        fs,
        backupRoot: "/backups",
        context: "alpha",
        policy: { hourly: 0, daily: 1, weekly: 0, monthly: 0 },
        clock,
        owner,
        lockTimeoutMs: 0,
      });
      return [];
    });
    expect(failures).toBeGreaterThan(10);
  }, 120_000);

  it("tick --all-contexts: before the contexts (the locations, the list) and in a context's outcome", async () => {
    const failures = await sweep(async (fs, clock) => {
      const r = await runTick({
        fs,
        stateRoot: "/state",
        backupRoot: "/backups",
        allContexts: true,
        // a day on: a full is due, then prune
        clock: () => new Date(clock().getTime() + 30 * 3600_000),
        owner,
        lockTimeoutMs: 0,
        insecurePlaintext: true,
      });
      return r.outcomes.flatMap((o) => (o.error ? [o.error] : []));
    });
    expect(failures).toBeGreaterThan(10);
  }, 300_000);
});
