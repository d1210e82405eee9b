import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot, eventLine } from "@paas-backup/testing";
import {
  createSnapshot,
  restoreSnapshot,
  rollbackRestore,
  PaasBackupError,
  ExitCode,
  type FileSystem,
} from "../src/index.js";
import { EVENT_LOGS } from "../src/policy/index.js";

/**
 * Issue 20 §1: defects of `rollback` the fleet simulation found beyond the list. A
 * rollback drops the event lines si wrote since the restore it undoes (restoreLosesNothing), and a
 * rollback of a restore that replaced a context folder that had become a symbolic link fails with
 * a raw EEXIST, exit 1 (documentedExitCodes). Each test failed on the code before its fix.
 */
const CTX = "alpha";
const STATE = "/state";
const BACKUPS = "/backups";
const LIVE = `${STATE}/contexts/${CTX}`;

async function world() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: STATE,
    contexts: [{ name: CTX, eventBytes: 2_000 }],
    plantSecrets: false,
  });
  let t = Date.parse("2026-11-24T10:00:00Z");
  const clock = () => new Date((t += 60_000));
  let n = 0;
  /** si appends a few lines to each event log; returns them */
  const append = async () => {
    const lines: string[] = [];
    for (const log of EVENT_LOGS) {
      const kind = log.includes("deploy") ? "deploy" : log.includes("alert") ? "alert" : "audit";
      const line = eventLine(kind, CTX, clock(), 1000 + n++);
      await fs.appendFile(`${LIVE}/${log}`, `${line}\n`, { mode: 0o600 });
      lines.push(line);
    }
    return lines;
  };
  const snapshot = () =>
    createSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
  const restore = (snapshot: string, extra: { exact?: boolean } = {}) =>
    restoreSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot,
      ticket: "INC-1",
      operator: "test",
      clock,
      ...extra,
    });
  const rollback = () =>
    rollbackRestore({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      ticket: "INC-2",
      operator: "test",
      clock,
    });
  const live = async () => {
    let text = "";
    for (const log of EVENT_LOGS) text += Buffer.from(await fs.readFile(`${LIVE}/${log}`)).toString("utf8");
    return text;
  };
  /** every incident file's text under the backup root (the kept lines of restores and rollbacks) */
  const kept = async () => {
    let text = "";
    for (const f of fs.files(`${BACKUPS}/${CTX}/incidents`))
      text += Buffer.from(await fs.readFile(f)).toString("utf8");
    return text;
  };
  return { fs, clock, append, snapshot, restore, rollback, live, kept };
}

describe("rollback keeps the event lines written since the restore it undoes", () => {
  it("appends them to the logs the previous contents come back with, when the live logs extend those", async () => {
    const w = await world();
    await w.snapshot();
    const beforeRestore = await w.append();
    await w.restore("latest");
    const sinceRestore = await w.append();
    const r = await w.rollback();
    const live = await w.live();
    for (const line of [...beforeRestore, ...sinceRestore]) expect(live).toContain(line);
    // one line each since the restore (audit.jsonl also holds the restore's own audit event)
    expect(r.eventLines.map((e) => [e.path, e.action])).toEqual(EVENT_LOGS.map((log) => [log, "append"]));
    // named in the rollback's incident record too
    const record = JSON.parse(Buffer.from(await w.fs.readFile(r.incidentFile)).toString("utf8"));
    expect(record.eventLines).toEqual(r.eventLines);
  });

  it("keeps them in a file of the incident in the backup root when the live logs do not extend those (an --exact restore of an older snapshot)", async () => {
    const w = await world();
    const old = await w.snapshot();
    const beforeRestore = await w.append();
    await w.restore(old.id, { exact: true });
    const sinceRestore = await w.append();
    const r = await w.rollback();
    // the previous contents hold the lines written before the restore; the newer ones are kept
    const live = await w.live();
    for (const line of beforeRestore) expect(live).toContain(line);
    const kept = await w.kept();
    for (const line of sinceRestore) expect(live.includes(line) || kept.includes(line)).toBe(true);
    expect(
      r.eventLines.every((e) => e.action === "keep" && e.keptIn?.startsWith(`${BACKUPS}/${CTX}/incidents/`)),
    ).toBe(true);
  });
});

describe("rollback of a restore that replaced a context folder that was a symbolic link", () => {
  it("refuses by name (exit 2, the kept link's path), changes nothing, and never writes through the link", async () => {
    const w = await world();
    await w.snapshot();
    // the folder moved elsewhere and a link took its place; the operator restores, then rolls back
    await w.fs.mkdir("/elsewhere", { recursive: true });
    await w.fs.rename(LIVE, "/elsewhere/alpha");
    w.fs.symlink("/elsewhere/alpha", LIVE);
    await w.restore("latest");
    expect((await w.fs.lstat(LIVE)).kind).toBe("directory");
    const vault = (await w.fs.lstat(`${LIVE}/vault`)).ino;
    const elsewhere = [...w.fs.files("/elsewhere")].sort();
    const err = await w.rollback().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaasBackupError);
    const e = err as PaasBackupError;
    expect([e.code, e.exitCode]).toEqual(["PAAS_BACKUP_CONTEXT_NOT_A_FOLDER", ExitCode.usage]);
    expect(e.message).toContain("symbolic link");
    expect(e.path).toMatch(/moved-aside/);
    expect(e.remediation).toContain(LIVE);
    expect((await w.fs.lstat(LIVE)).kind).toBe("directory");
    expect((await w.fs.lstat(`${LIVE}/vault`)).ino).toBe(vault);
    expect([...w.fs.files("/elsewhere")].sort()).toEqual(elsewhere);
  });
});

/** The memory filesystem, but renames onto `failing` reject with EIO while `broken` is set. */
function failingRenames(inner: MemoryFileSystem, failing: string): FileSystem & { broken: boolean } {
  const fs = Object.create(inner) as FileSystem & { broken: boolean };
  fs.broken = true;
  fs.rename = async (from: string, to: string) => {
    if (fs.broken && to === failing)
      throw Object.assign(new Error(`EIO: i/o error, rename '${from}' -> '${to}'`), { code: "EIO" });
    return inner.rename(from, to);
  };
  return fs;
}

describe("rollback of a restore whose swap stopped part way (the undo) keeps the lines written meanwhile", () => {
  it("appends the lines si wrote into the restored contents to the logs the previous contents come back with, and names them in the recovery's record", async () => {
    const w = await world();
    await w.snapshot();
    const beforeRestore = await w.append();
    // the vault is kept from the previous contents: its rename back, the first step after the pivot, fails
    const fs = failingRenames(w.fs, `${LIVE}/vault`);
    const err = await restoreSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot: "latest",
      ticket: "INC-1",
      operator: "test",
      clock: w.clock,
    }).catch((e: unknown) => e);
    expect((err as PaasBackupError).code).toBe("PAAS_BACKUP_RESTORE_UNFINISHED");
    // the restored contents are live, the swap part way: si goes on writing into them
    const meanwhile = await w.append();
    const r = await rollbackRestore({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      ticket: "INC-1",
      operator: "test",
      clock: w.clock,
    });
    expect(r.restoredFrom).toContain("moved-aside");
    const live = await w.live();
    for (const line of [...beforeRestore, ...meanwhile]) expect(live).toContain(line);
    expect(r.eventLines.map((e) => [e.path, e.action])).toEqual(EVENT_LOGS.map((log) => [log, "append"]));
    const record = JSON.parse(Buffer.from(await w.fs.readFile(r.incidentFile)).toString("utf8"));
    expect(record.recovery.action).toBe("undone");
    expect(record.eventLines).toEqual(r.eventLines);
  });
});

describe("rollback keeps in its incident only the lines written since the restore", () => {
  it("not the restored snapshot's own lines, when the live log does not extend the previous contents' (rotated logs)", async () => {
    const w = await world();
    const snap = await w.snapshot();
    const snapshotLines = (await w.live()).split("\n").filter(Boolean);
    // si rotates its logs: the live logs start over with new lines only
    for (const log of EVENT_LOGS) await w.fs.writeFile(`${LIVE}/${log}`, "", { mode: 0o600 });
    const rotated = await w.append();
    await w.restore(snap.id);
    const sinceRestore = await w.append();
    const r = await w.rollback();
    // the previous (rotated) logs come back; the lines since the restore are kept in the incident
    const live = await w.live();
    for (const line of rotated) expect(live).toContain(line);
    expect(r.eventLines.every((e) => e.action === "keep")).toBe(true);
    let kept = "";
    for (const e of r.eventLines) kept += Buffer.from(await w.fs.readFile(e.keptIn!)).toString("utf8");
    for (const line of sinceRestore) expect(kept).toContain(line);
    // and nothing of the restored snapshot's own logs, which its artifact holds
    for (const line of snapshotLines) expect(kept).not.toContain(line);
  });
});
