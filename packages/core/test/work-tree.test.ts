import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import {
  createSnapshot,
  createIdentityFile,
  openTarget,
  SafetyError,
  restoreSnapshot,
} from "../src/index.js";
import { workTreeOf } from "../src/policy/index.js";
import { assertSafeLocations } from "../src/snapshot/index.js";

const CTX = "oss-demo";

async function world() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/home/op/.si/paas/state",
    contexts: [{ name: CTX, eventBytes: 2_000 }],
    plantSecrets: false,
  });
  await fs.mkdir("/src/tool/.git", { recursive: true });
  await fs.mkdir("/src/tool/backups", { recursive: true });
  await fs.mkdir("/home/op/links", { recursive: true });
  fs.symlink("/src/tool/backups", "/home/op/links/backups");
  fs.symlink("../../../src/tool", "/home/op/links/relative-tool");
  fs.symlink("/nowhere/at/all", "/home/op/links/dangling");
  return fs;
}

describe("policy §7.1 in core: nothing of ours inside a git work tree", () => {
  it("resolves symbolic links, absolute and relative, before looking for .git", async () => {
    const fs = await world();
    expect(await fs.realpath("/home/op/links/relative-tool/backups")).toBe("/src/tool/backups");
    expect(await workTreeOf(fs, "/src/tool/backups/new/deeper")).toBe("/src/tool");
    expect(await workTreeOf(fs, "/home/op/links/backups")).toBe("/src/tool");
    // through a link in the middle of the path the kernel (and MemoryFileSystem) already finds .git: the work tree is named as reached
    expect(await workTreeOf(fs, "/home/op/links/relative-tool/backups/x")).toBe(
      "/home/op/links/relative-tool",
    );
    expect(await workTreeOf(fs, "/home/op/backups/not-yet")).toBeNull();
    await expect(workTreeOf(fs, "/home/op/links/dangling")).rejects.toMatchObject({
      code: "PAAS_BACKUP_UNSAFE_LOCATION",
    });
  });

  it("createSnapshot refuses such a backup root for an SDK caller and writes nothing there", async () => {
    const fs = await world();
    const base = {
      fs,
      stateRoot: "/home/op/.si/paas/state",
      context: CTX,
      clock: () => new Date("2026-11-24T10:00:00Z"),
      insecurePlaintext: true,
    };
    for (const backupRoot of ["/src/tool/backups", "/home/op/links/backups"]) {
      const err = await createSnapshot({ ...base, backupRoot }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetyError);
      expect(err).toMatchObject({
        code: "PAAS_BACKUP_UNSAFE_LOCATION",
        exitCode: 4,
        data: { repository: "/src/tool" },
      });
    }
    expect(await fs.readdir("/src/tool/backups")).toEqual([]);
    const ok = await createSnapshot({ ...base, backupRoot: "/home/op/backups" });
    expect(ok.artifact).toBe(`/home/op/backups/${CTX}/${ok.id}.tar.gz`);
  });

  it("a state root in a work tree needs si's override; the backup root never gets one", async () => {
    const fs = await world();
    await createStateRoot({
      fs,
      root: "/src/tool/state",
      contexts: [{ name: CTX, eventBytes: 1_000 }],
      plantSecrets: false,
    });
    await expect(
      assertSafeLocations({ fs, backupRoot: "/home/op/b", stateRoot: "/src/tool/state" }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_UNSAFE_LOCATION" });
    await expect(
      assertSafeLocations({
        fs,
        backupRoot: "/home/op/b",
        stateRoot: "/src/tool/state",
        allowRepoState: true,
      }),
    ).resolves.toBeUndefined();
    await expect(
      assertSafeLocations({
        fs,
        backupRoot: "/src/tool/b",
        stateRoot: "/home/op/.si/paas/state",
        allowRepoState: true,
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_UNSAFE_LOCATION" });
  });

  it("identity files: keygen refuses a work tree or the backup root (links resolved); restore refuses such a key", async () => {
    const fs = await world();
    const clock = () => new Date("2026-11-24T10:00:00Z");
    await expect(
      createIdentityFile({
        fs,
        path: "/home/op/links/backups/id.txt",
        backupRoot: "/home/op/backups",
        clock,
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_UNSAFE_LOCATION" });
    await fs.mkdir("/home/op/backups", { recursive: true });
    fs.symlink("/home/op/backups", "/home/op/keys");
    await expect(
      createIdentityFile({ fs, path: "/home/op/keys/id.txt", backupRoot: "/home/op/backups", clock }),
    ).rejects.toThrow(/inside the backup root/);
    const key = await createIdentityFile({
      fs,
      path: "/home/op/.config/paas-backup/id.txt",
      backupRoot: "/home/op/backups",
      clock,
    });
    expect((await fs.lstat(key.identityFile)).mode).toBe(0o600);
    await expect(
      createIdentityFile({ fs, path: key.identityFile, backupRoot: "/home/op/backups", clock }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_FILE_EXISTS" });

    const decryptor = {
      identityFile: "/home/op/links/backups/id.txt",
      decrypt: () => {
        throw new Error("never reached");
      },
    };
    const err = await restoreSnapshot({
      fs,
      stateRoot: "/home/op/.si/paas/state",
      backupRoot: "/home/op/backups",
      context: CTX,
      snapshot: "latest",
      ticket: "INC-1",
      operator: "op",
      clock,
      decryptor,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "PAAS_BACKUP_UNSAFE_LOCATION", data: { repository: "/src/tool" } });
  });

  it("a file:// offsite target in a work tree is refused when opened", async () => {
    const fs = await world();
    await expect(openTarget("file:///home/op/links/backups/offsite", { fs })).rejects.toMatchObject({
      code: "PAAS_BACKUP_UNSAFE_LOCATION",
    });
    expect((await openTarget("file:///home/op/offsite", { fs })).url).toBe("file:///home/op/offsite");
  });
});
