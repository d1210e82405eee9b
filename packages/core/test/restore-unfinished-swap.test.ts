import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import {
  createSnapshot,
  restoreSnapshot,
  rollbackRestore,
  PaasBackupError,
  type FileSystem,
} from "../src/index.js";
import { hasJournal } from "../src/snapshot/index.js";

/**
 * Issue 20: a restore whose swap stops after the pivot (a rename that keeps failing) keeps its
 * journal, so nothing is left half swapped without a record of how to finish or undo it; and
 * `rollback`, which the error names, returns to the previous contents with the vault in place.
 */
const CTX = "internal-dogfood";
const STATE = "/state";
const BACKUPS = "/backups";
const LIVE = `${STATE}/contexts/${CTX}`;

function clockFrom(start: string) {
  let t = Date.parse(start);
  return () => new Date((t += 1_000));
}

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

describe("a restore whose swap stops past the pivot", () => {
  it("keeps its journal, and rollback puts the previous contents back with the vault's inode", async () => {
    const mem = new MemoryFileSystem();
    await createStateRoot({ fs: mem, root: STATE, contexts: [{ name: CTX, eventBytes: 4_000 }] });
    const clock = clockFrom("2026-11-24T10:00:00Z");
    await createSnapshot({
      fs: mem,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    const broken = '{"current_target":"broken","targets":[]}\n';
    await mem.writeFile(`${LIVE}/targets.json`, broken, { mode: 0o600 });
    const vaultIno = (await mem.lstat(`${LIVE}/vault/secrets.env`)).ino;
    // alerts/telegram.json is kept from the old contents: its rename back is a step after the pivot
    const fs = failingRenames(mem, `${LIVE}/alerts/telegram.json`);
    const err = await restoreSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot: "latest",
      ticket: "INC-1",
      operator: "test",
      clock,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaasBackupError);
    expect((err as PaasBackupError).code).toBe("PAAS_BACKUP_RESTORE_UNFINISHED");
    expect((err as PaasBackupError).remediation).toContain("rollback");
    expect(await hasJournal(mem, STATE, CTX)).toBe(true);

    // the rename still fails: rollback reverses the renames made instead of finishing them
    const back = await rollbackRestore({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      ticket: "INC-1",
      operator: "test",
      clock,
    });
    expect(back.restoredFrom).toContain("moved-aside");
    expect(Buffer.from(await mem.readFile(`${LIVE}/targets.json`)).toString()).toBe(broken);
    expect(await mem.lstat(`${LIVE}/alerts/telegram.json`)).toMatchObject({ kind: "file" });
    expect((await mem.lstat(`${LIVE}/vault/secrets.env`)).ino).toBe(vaultIno);
    expect(await hasJournal(mem, STATE, CTX)).toBe(false);

    // and the restore runs through once the filesystem lets it
    fs.broken = false;
    const again = await restoreSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot: "latest",
      ticket: "INC-1",
      operator: "test",
      clock,
    });
    expect(again.ok).toBe(true);
    expect(Buffer.from(await mem.readFile(`${LIVE}/targets.json`)).toString()).not.toBe(broken);
    expect((await mem.lstat(`${LIVE}/vault/secrets.env`)).ino).toBe(vaultIno);
  });
});
