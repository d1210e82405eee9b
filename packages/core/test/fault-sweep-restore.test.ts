import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import {
  MemoryFileSystem,
  FaultInjectingFileSystem,
  createStateRoot,
  type FaultPlan,
} from "@paas-backup/testing";
import { BLOCK_FILE, writeBlock } from "../src/records/index.js";
import {
  createSnapshot,
  recoverContext,
  restoreSnapshot,
  rollbackRestore,
  unblockContext,
  readBlock,
  PaasBackupError,
  type FileSystem,
} from "../src/index.js";
import { listSnapshots, checkSnapshotChecksum } from "../src/repository/index.js";

/**
 * Issue 9 §7: fail every filesystem call of restore, rollback and unblock, one run per call, as
 * an error (EIO, ENOSPC, EACCES in turn) and as a crash (that call and all after never happen).
 * After each: the next run recovers; the live context is the old or the new state with its
 * vault in place (same inode, same bytes); every listed snapshot verifies; nothing partial is left.
 */
const CTX = "internal-dogfood";
const STATE = "/state";
const BACKUPS = "/backups";
const LIVE = `${STATE}/contexts/${CTX}`;
const CODES = ["EIO", "ENOSPC", "EACCES"] as const;

/** Restore the newest snapshot of the sweep's context under `ticket`, as the operator `operator`. */
const restoreLatest = (fs: FileSystem, ticket: string, clock: () => Date, operator = "sweep") =>
  restoreSnapshot({
    fs,
    stateRoot: STATE,
    backupRoot: BACKUPS,
    context: CTX,
    snapshot: "latest",
    ticket,
    operator,
    clock,
  });

function clockFrom(start: string) {
  let t = Date.parse(start);
  return () => new Date((t += 1_000));
}

async function tree(fs: MemoryFileSystem, dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const path of fs.files(dir)) {
    const rel = path.slice(dir.length + 1);
    if (rel === "events/audit.jsonl" || rel === BLOCK_FILE) continue;
    out.set(
      rel,
      createHash("sha256")
        .update(await fs.readFile(path))
        .digest("hex"),
    );
  }
  return out;
}

interface Fixture {
  fs: MemoryFileSystem;
  old: Map<string, string>;
  restored: Map<string, string>;
  vaultIno: number;
  vaultBytes: string;
}

/** a context, a snapshot of it, then damage: the restore puts targets.json back */
async function baseFixture(): Promise<Fixture> {
  const fs = new MemoryFileSystem();
  await createStateRoot({ fs, root: STATE, contexts: [{ name: CTX, eventBytes: 4_000 }] });
  const clock = clockFrom("2026-11-24T10:00:00Z");
  await createSnapshot({
    fs,
    stateRoot: STATE,
    backupRoot: BACKUPS,
    context: CTX,
    clock,
    insecurePlaintext: true,
  });
  const restored = await tree(fs, LIVE);
  await fs.writeFile(`${LIVE}/targets.json`, '{"current_target":"broken","targets":[]}\n', { mode: 0o600 });
  await fs.writeFile(`${LIVE}/operator-notes.txt`, "stays\n", { mode: 0o600 });
  restored.set("operator-notes.txt", (await tree(fs, LIVE)).get("operator-notes.txt")!);
  return {
    fs,
    old: await tree(fs, LIVE),
    restored,
    vaultIno: (await fs.lstat(`${LIVE}/vault/secrets.env`)).ino,
    vaultBytes: Buffer.from(await fs.readFile(`${LIVE}/vault/secrets.env`)).toString("hex"),
  };
}

async function assertConsistent(
  fx: Fixture,
  fs: MemoryFileSystem,
  label: string,
  allowed: ("old" | "restored")[],
): Promise<"old" | "restored"> {
  const now = await tree(fs, LIVE);
  const same = (a: Map<string, string>, b: Map<string, string>) =>
    a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
  const which = allowed.find((name) => same(now, fx[name]));
  if (!which) {
    const want = fx[allowed[allowed.length - 1]!];
    const diff = [...new Set([...now.keys(), ...want.keys()])].filter((k) => now.get(k) !== want.get(k));
    expect.fail(
      `${label}: the live context is neither the old nor the new state (differs in ${diff.join(", ")})`,
    );
  }
  expect((await fs.lstat(`${LIVE}/vault/secrets.env`)).ino, `${label}: vault inode`).toBe(fx.vaultIno);
  expect(
    Buffer.from(await fs.readFile(`${LIVE}/vault/secrets.env`)).toString("hex"),
    `${label}: vault bytes`,
  ).toBe(fx.vaultBytes);
  expect(fs.files(`${STATE}/.paas-backup/staging`), `${label}: staging left`).toEqual([]);
  expect(fs.files(`${STATE}/.paas-backup/journal`), `${label}: journal left`).toEqual([]);
  for (const s of await listSnapshots(fs, BACKUPS, CTX))
    expect((await checkSnapshotChecksum(s)).state, `${label}: ${s.id}`).toBe("verified");
  return which!;
}

function plans(total: number): { plan: FaultPlan; label: string }[] {
  const out: { plan: FaultPlan; label: string }[] = [];
  for (let n = 1; n <= total; n++) {
    out.push({ plan: { at: n, mode: "crash" }, label: `crash at call ${n}` });
    const code = CODES[n % CODES.length]!;
    out.push({ plan: { at: n, mode: "throw", code }, label: `${code} at call ${n}` });
  }
  return out;
}

async function sweep(
  name: string,
  prepare: (fs: MemoryFileSystem) => Promise<void>,
  operation: (fs: FileSystem, clock: () => Date) => Promise<unknown>,
  check: (fx: Fixture, fs: MemoryFileSystem, label: string) => Promise<void>,
  afterFault?: (fx: Fixture, fs: MemoryFileSystem, label: string, error: unknown) => Promise<void>,
): Promise<number> {
  const base = await baseFixture();
  await prepare(base.fs);
  const counter = new FaultInjectingFileSystem(base.fs.clone());
  await operation(counter, clockFrom("2026-11-24T12:00:00Z"));
  const total = counter.calls;
  expect(total, name).toBeGreaterThan(20);
  for (const { plan, label } of plans(total)) {
    const fs = base.fs.clone();
    const faulty = new FaultInjectingFileSystem(fs, plan);
    const error = await operation(faulty, clockFrom("2026-11-24T12:00:00Z")).then(
      () => null,
      (err: unknown) => err,
    );
    if (plan.mode === "throw" && afterFault) await afterFault(base, fs, label, error);
    // "reboot": the next command recovers on the real (here: the wrapped) filesystem
    await recoverContext({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      clock: clockFrom("2026-11-24T13:00:00Z"),
    });
    await check(base, fs, `${name}, ${label}`);
  }
  return total;
}

describe("fault injection at every filesystem call (issue 9 §7)", () => {
  it("restoreSnapshot: every fault leaves the old or the new state, vault in place; the next restore succeeds", async () => {
    const total = await sweep(
      "restore",
      async () => undefined,
      (fs, clock) => restoreLatest(fs, "T-1", clock),
      async (fx, fs, label) => {
        const state = await assertConsistent(fx, fs, label, ["old", "restored"]);
        if (state === "old")
          expect(await readBlock(fs, STATE, CTX), `${label}: old state is not blocked`).toBeNull();
        const next = await restoreLatest(fs, "T-2", clockFrom("2026-11-24T14:00:00Z"));
        expect(next.outcome, label).toBe("restored");
        await assertConsistent(fx, fs, `${label}, next run`, ["restored"]);
        expect(await readBlock(fs, STATE, CTX), label).toBeNull();
      },
      // Issue 9 §4: whatever fails once the new contents are live leaves the context blocked and names rollback.
      async (fx, fs, label, error) => {
        if (!error || (await tree(fs, LIVE)).get("targets.json") !== fx.restored.get("targets.json")) return;
        expect(error, label).toBeInstanceOf(PaasBackupError);
        expect((error as PaasBackupError).code, label).toMatch(
          /^PAAS_BACKUP_(RESTORE_UNFINISHED|VALIDATION_FAILED)$/,
        );
        expect((error as PaasBackupError).exitCode, label).toBe(5);
        expect((error as PaasBackupError).remediation, label).toContain("rollback");
        expect(await readBlock(fs, STATE, CTX), `${label}: blocked`).not.toBeNull();
      },
    );
    console.log(`restoreSnapshot: ${total} filesystem calls, ${total * 2} injected faults`);
  }, 600_000);

  it("rollbackRestore: every fault leaves the restored or the rolled-back state, vault in place; the next rollback succeeds", async () => {
    const total = await sweep(
      "rollback",
      async (fs) => {
        await restoreLatest(fs, "T-1", clockFrom("2026-11-24T11:00:00Z"));
      },
      (fs, clock) =>
        rollbackRestore({
          fs,
          stateRoot: STATE,
          backupRoot: BACKUPS,
          context: CTX,
          ticket: "T-1",
          operator: "sweep",
          clock,
        }),
      async (fx, fs, label) => {
        const state = await assertConsistent(fx, fs, label, ["old", "restored"]);
        if (state === "restored") {
          const next = await rollbackRestore({
            fs,
            stateRoot: STATE,
            backupRoot: BACKUPS,
            context: CTX,
            ticket: "T-1",
            operator: "sweep",
            clock: clockFrom("2026-11-24T14:00:00Z"),
          });
          expect(next.kept, label).toContain("vault");
        }
        await assertConsistent(fx, fs, `${label}, next run`, ["old"]);
      },
    );
    console.log(`rollbackRestore: ${total} filesystem calls, ${total * 2} injected faults`);
  }, 600_000);

  it("unblockContext: every fault leaves the context blocked or unblocked, never half; the next unblock succeeds", async () => {
    const total = await sweep(
      "unblock",
      async (fs) => {
        await restoreLatest(fs, "T-1", clockFrom("2026-11-24T11:00:00Z"));
        await writeBlock(fs, STATE, {
          context: CTX,
          ticket: "T-1",
          blockedAt: "2026-11-24T11:30:00.000Z",
          reason: "test",
          snapshot: null,
          failingChecks: [],
        });
      },
      (fs, clock) =>
        unblockContext({
          fs,
          stateRoot: STATE,
          backupRoot: BACKUPS,
          context: CTX,
          ticket: "T-1",
          operator: "sweep",
          clock,
        }),
      async (fx, fs, label) => {
        await assertConsistent(fx, fs, label, ["restored"]);
        const next = await unblockContext({
          fs,
          stateRoot: STATE,
          backupRoot: BACKUPS,
          context: CTX,
          ticket: "T-1",
          operator: "sweep",
          clock: clockFrom("2026-11-24T14:00:00Z"),
        });
        expect(next.context, label).toBe(CTX);
        expect(await readBlock(fs, STATE, CTX), label).toBeNull();
      },
    );
    console.log(`unblockContext: ${total} filesystem calls, ${total * 2} injected faults`);
  }, 600_000);
});

describe("the checksum is confirmed on the bytes that are restored (issue 9 §3)", () => {
  it("reads each artifact once per restore, and the incident names the sha256 of those bytes", async () => {
    const fx = await baseFixture();
    const counting = new FaultInjectingFileSystem(fx.fs);
    const result = await restoreLatest(counting, "T-1", clockFrom("2026-11-24T12:00:00Z"), "once");
    const [snapshot] = await listSnapshots(fx.fs, BACKUPS, CTX);
    const opens = counting.log.filter(
      (c) => c.op === "createReadStream" && c.path === snapshot!.artifactPath,
    );
    expect(opens).toHaveLength(1);
    const bytes = await fx.fs.readFile(snapshot!.artifactPath);
    expect(result.snapshot.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("restoreSnapshot flushes every staged file and folder to disk before the swap makes it live", async () => {
    // A kill cannot show this (the page cache survives it); a power loss after the swap would bring
    // back a live context with short files. The record of calls shows the order.
    const { fs } = await baseFixture();
    const recorder = new FaultInjectingFileSystem(fs);
    const result = await restoreLatest(recorder, "T-flush", clockFrom("2026-11-24T12:00:00Z"));
    expect(result.outcome).toBe("restored");
    const firstSwap = recorder.log.findIndex((c) => c.op === "rename" && c.path.endsWith(`-> ${LIVE}`));
    expect(firstSwap).toBeGreaterThan(0);
    const syncedBefore = new Set(
      recorder.log
        .slice(0, firstSwap)
        .filter((c) => c.op === "sync")
        .map((c) => c.path),
    );
    const stagedFrom = recorder.log[firstSwap]!.path.split(" -> ")[0]!;
    const written = new Set(
      recorder.log
        .slice(0, firstSwap)
        .filter((c) => ["writeFile", "createWriteStream", "appendFile"].includes(c.op))
        .map((c) => c.path)
        .filter((p) => p.startsWith(`${stagedFrom}/`)),
    );
    expect(written.size).toBeGreaterThan(3);
    for (const path of written) expect(syncedBefore, path).toContain(path);
    expect(syncedBefore).toContain(stagedFrom);
  });
});
