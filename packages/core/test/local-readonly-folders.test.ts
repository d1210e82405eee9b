import { describe, it, expect } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createHash } from "node:crypto";
import { nodeFs } from "../src/fs/node-fs.js";
import { LocalStorage } from "../src/repository/drivers/local.js";

const modeOf = (p: string) => statSync(p).mode & 0o777;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/**
 * An offsite folder keeps its copies read-only (0400 files in 0500 folders). Root ignores those
 * modes, so a test run as root cannot see a folder closed too early; a user other than root gets
 * EACCES on the rename of the second of two writes into one folder. The folder's mode tells.
 */
describe("read-only offsite folders", () => {
  it("stay open while any write into them is in flight, and close after the last", async () => {
    const work = mkdtempSync(join(tmpdir(), "pb-ro-folders-"));
    try {
      const storage = new LocalStorage(nodeFs, join(work, "offsite"));
      const a = Buffer.from("first object\n");
      const b = Buffer.from("second object\n");
      const first = await storage.stage("ctx/a.tar.gz");
      const second = await storage.stage("ctx/b.tar.gz");
      await pipeline(Readable.from([a]), first.stream);
      await first.commit(sha(a));
      // the second write is still streaming: its rename needs the folder writable
      expect(modeOf(join(work, "offsite", "ctx"))).toBe(0o700);
      await pipeline(Readable.from([b]), second.stream);
      await second.commit(sha(b));
      expect(modeOf(join(work, "offsite", "ctx"))).toBe(0o500);
      expect(modeOf(join(work, "offsite", "ctx", "b.tar.gz"))).toBe(0o400);
      await storage.delete("ctx/a.tar.gz");
      expect(modeOf(join(work, "offsite", "ctx"))).toBe(0o500);
    } finally {
      execFileSync("chmod", ["-R", "u+rwx", work]);
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("a commit refused for its checksum leaves no staged bytes behind in the closed folder", async () => {
    const work = mkdtempSync(join(tmpdir(), "pb-ro-folders-"));
    try {
      const storage = new LocalStorage(nodeFs, join(work, "offsite"));
      const staged = await storage.stage("ctx/a.tar.gz");
      await pipeline(Readable.from([Buffer.from("bytes")]), staged.stream);
      await expect(staged.commit("0".repeat(64))).rejects.toMatchObject({
        code: "PAAS_BACKUP_STORAGE_MISMATCH",
      });
      await staged.abort();
      expect(modeOf(join(work, "offsite", "ctx"))).toBe(0o500);
      expect(execFileSync("ls", ["-A", join(work, "offsite", "ctx")], { encoding: "utf8" })).toBe("");
    } finally {
      execFileSync("chmod", ["-R", "u+rwx", work]);
      rmSync(work, { recursive: true, force: true });
    }
  });
});
