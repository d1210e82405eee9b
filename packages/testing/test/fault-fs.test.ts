import { describe, it, expect } from "vitest";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import {
  MemoryFileSystem,
  FaultInjectingFileSystem,
  FaultCrashError,
  countFileSystemCalls,
} from "@paas-backup/testing";
import type { FileSystem } from "@paas-backup/core";
import { nodeFs } from "@paas-backup/core/node";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** a small operation touching every kind of call: 7 calls, the stream write counting per chunk */
async function operation(fs: FileSystem): Promise<void> {
  await fs.mkdir("/d", { recursive: true }); // 1
  await fs.writeFile("/d/a", "one"); // 2
  await pipeline(Readable.from([Buffer.from("x"), Buffer.from("y")]), fs.createWriteStream("/d/b")); // 3 open, 4 and 5 writes
  for await (const chunk of fs.createReadStream("/d/b")) void chunk; // 6
  await fs.rename("/d/a", "/d/c"); // 7
}

async function fixture(): Promise<MemoryFileSystem> {
  return new MemoryFileSystem();
}

describe("FaultInjectingFileSystem", () => {
  it("counts every call, stream opens and written chunks included", async () => {
    const { calls, log } = await countFileSystemCalls(fixture, operation);
    expect(calls).toBe(7);
    expect(log.map((c) => c.op)).toEqual([
      "mkdir",
      "writeFile",
      "createWriteStream",
      "write",
      "write",
      "createReadStream",
      "rename",
    ]);
  });

  it("passes everything through unchanged without a fault", async () => {
    const inner = new MemoryFileSystem();
    await operation(new FaultInjectingFileSystem(inner));
    expect(inner.files()).toEqual(["/d/b", "/d/c"]);
    expect(Buffer.from(await inner.readFile("/d/b")).toString()).toBe("xy");
  });

  for (const code of ["EIO", "ENOSPC", "EACCES"] as const) {
    it(`throws ${code} at the chosen call only, as a Node-style error, and lets later calls through`, async () => {
      const inner = new MemoryFileSystem();
      const fs = new FaultInjectingFileSystem(inner, { at: 2, mode: "throw", code });
      await fs.mkdir("/d");
      const err = await fs.writeFile("/d/a", "one").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code, syscall: "writeFile", path: "/d/a" });
      expect(inner.files()).toEqual([]); // the faulted call did nothing
      await fs.writeFile("/d/a", "two"); // call 3 goes through
      expect(Buffer.from(await inner.readFile("/d/a")).toString()).toBe("two");
      expect(fs.injected).toMatchObject({ n: 2, op: "writeFile" });
    });
  }

  it("fails every N from 1 to the total in throw mode, and the fault lands on that call", async () => {
    const { calls, log } = await countFileSystemCalls(fixture, operation);
    for (let at = 1; at <= calls; at++) {
      const fs = new FaultInjectingFileSystem(await fixture(), { at, mode: "throw", code: "ENOSPC" });
      await expect(operation(fs)).rejects.toMatchObject({ code: "ENOSPC" });
      expect(fs.injected).toEqual(log[at - 1]);
    }
  });

  it("a crash stops the faulted call and every later one; the wrapped fs keeps only what came before", async () => {
    for (let at = 1; at <= 7; at++) {
      const inner = new MemoryFileSystem();
      const fs = new FaultInjectingFileSystem(inner, { at, mode: "crash" });
      const err = await operation(fs).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FaultCrashError);
      expect(fs.crashed).toBe(true);
      // even a cleanup the code might attempt after the crash never reaches the disk
      await expect(fs.writeFile("/late", "x")).rejects.toBeInstanceOf(FaultCrashError);
      await expect(fs.rm("/d", { recursive: true, force: true })).rejects.toBeInstanceOf(FaultCrashError);
      const expected: Record<number, string[]> = {
        1: [],
        2: [],
        3: ["/d/a"],
        4: ["/d/a", "/d/b"], // the stream opened (created the file) before the crash
        5: ["/d/a", "/d/b"],
        6: ["/d/a", "/d/b"],
        7: ["/d/a", "/d/b"],
      };
      expect(inner.files(), `crash at ${at}`).toEqual(expected[at]);
      if (at === 5) expect(Buffer.from(await inner.readFile("/d/b")).toString()).toBe("x"); // the first chunk landed, the second never did
      expect(inner.files().includes("/late")).toBe(false);
    }
  });

  it("a read stream faulted at open errors when read", async () => {
    const inner = new MemoryFileSystem();
    await inner.writeFile("/f", "data");
    const fs = new FaultInjectingFileSystem(inner, { at: 1, mode: "throw", code: "EIO" });
    const read = async () => {
      for await (const chunk of fs.createReadStream("/f")) void chunk;
    };
    await expect(read()).rejects.toMatchObject({ code: "EIO" });
  });

  it("wraps link and realpath too", async () => {
    const inner = new MemoryFileSystem();
    await inner.mkdir("/real");
    inner.symlink("/real", "/alias");
    await inner.writeFile("/real/f", "x");
    const fs = new FaultInjectingFileSystem(inner, { at: 3, mode: "throw", code: "EACCES" });
    expect(await fs.realpath("/alias/f")).toBe("/real/f");
    await fs.link("/real/f", "/real/g");
    expect((await inner.lstat("/real/g")).ino).toBe((await inner.lstat("/real/f")).ino);
    await expect(fs.link("/real/f", "/real/h")).rejects.toMatchObject({ code: "EACCES" });
    await expect(fs.link("/real/f", "/real/g")).rejects.toMatchObject({ code: "EEXIST" });
  });

  it("wraps the real disk too: streams pass bytes through, and a crash mid-stream leaves what was written before", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-fault-"));
    try {
      const chunks = [Buffer.alloc(100_000, 1), Buffer.alloc(100_000, 2), Buffer.alloc(100_000, 3)];
      const healthy = new FaultInjectingFileSystem(nodeFs);
      await pipeline(Readable.from(chunks), healthy.createWriteStream(join(dir, "ok"), { mode: 0o600 }));
      expect(readFileSync(join(dir, "ok"))).toEqual(Buffer.concat(chunks));
      expect(healthy.calls).toBe(4);
      const crashing = new FaultInjectingFileSystem(nodeFs, { at: 3, mode: "crash" });
      await expect(
        pipeline(Readable.from(chunks), crashing.createWriteStream(join(dir, "cut"))),
      ).rejects.toBeInstanceOf(FaultCrashError);
      expect(readFileSync(join(dir, "cut"))).toEqual(chunks[0]);
      await expect(crashing.rename(join(dir, "cut"), join(dir, "moved"))).rejects.toBeInstanceOf(
        FaultCrashError,
      );
      expect(existsSync(join(dir, "moved"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("MemoryFileSystem follows links as the kernel does", () => {
  it("through every component but the last for lstat, rename and rm; through the last too for open, chmod and readdir", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/real/sub", { recursive: true });
    await fs.writeFile("/real/sub/f", "x");
    fs.symlink("/real", "/alias");
    fs.symlink("sub/f", "/real/rel-link");
    expect((await fs.lstat("/alias/sub/f")).kind).toBe("file"); // the intermediate link is followed
    expect((await fs.lstat("/alias")).kind).toBe("symlink"); // the last is not
    expect(Buffer.from(await fs.readFile("/alias/rel-link")).toString()).toBe("x");
    expect((await fs.readdir("/alias")).map((e) => e.name)).toEqual(["rel-link", "sub"]);
    await fs.writeFile("/alias/sub/g", "y");
    expect(fs.files("/real")).toEqual(["/real/sub/f", "/real/sub/g"]);
    await expect(fs.writeFile("/alias", "z", { exclusive: true })).rejects.toMatchObject({ code: "EEXIST" });
    await fs.rm("/alias");
    expect(fs.files("/real")).toHaveLength(2);
  });
});
