import { describe, it, expect } from "vitest";
import { Writable } from "node:stream";
import {
  MemoryFileSystem,
  FaultInjectingFileSystem,
  countFileSystemCalls,
  createStateRoot,
} from "@paas-backup/testing";
import { createSnapshot, type FileSystem } from "../src/index.js";

const CTX = "internal-dogfood";
const T0 = Date.UTC(2026, 10, 20, 10);

/**
 * A snapshot closes every file it opened, whatever fails. The fault sweep's state is too small
 * for this: its archive reaches the disk only at the end. Here the logs are megabytes, so gzip
 * members are written while later files are still to be read, and a write that fails there (the
 * staged artifact's disk full) used to leave the next file open: its reader was opened before the
 * archiver, which had already failed, refused its header.
 */
describe("a snapshot that fails midway", () => {
  it("leaves no file open, at every read and every write of the staged artifact", async () => {
    const base = new MemoryFileSystem();
    base.now = T0;
    await createStateRoot({
      fs: base,
      root: "/state",
      contexts: [{ name: CTX, eventBytes: 6 * 1024 * 1024 }],
      plantSecrets: false,
    });
    const run = (fs: FileSystem) =>
      createSnapshot({
        fs,
        stateRoot: "/state",
        backupRoot: "/b",
        context: CTX,
        clock: () => new Date(T0),
        insecurePlaintext: true,
        sleep: async () => undefined,
      });
    const { log } = await countFileSystemCalls(async () => base.clone(), run);
    const points = log.filter(
      (c) => c.op === "openRead" || c.op === "read" || (c.op === "write" && c.path.includes("/b/")),
    );
    // the staged artifact is written while files remain to be read, and there are reads to fail
    const firstArtifactWrite = points.findIndex((c) => c.op === "write");
    expect(firstArtifactWrite).toBeGreaterThan(0);
    expect(points.slice(firstArtifactWrite).some((c) => c.op === "openRead")).toBe(true);
    for (const point of points) {
      for (const mode of ["throw", "crash"] as const) {
        const faulty = new FaultInjectingFileSystem(base.clone(), { at: point.n, mode, code: "ENOSPC" });
        await expect(run(faulty), `${mode} at ${point.op} ${point.path}`).rejects.toBeTruthy();
        expect(faulty.openReaders, `${mode} at call ${point.n} (${point.op} ${point.path})`).toBe(0);
      }
    }
  });

  it("leaves no file open when the staged artifact fails while the next file is being opened", async () => {
    // As on a real disk: the artifact's write error comes from the threadpool, here while the
    // archiver opens the next log (a real open also waits on the pool), so the archiver has
    // failed before that file's first chunk.
    class FailsAtSecondLog extends FaultInjectingFileSystem {
      artifact: Writable | null = null;
      logsOpened = 0;
      override createWriteStream(path: string, options?: Parameters<FileSystem["createWriteStream"]>[1]) {
        const stream = super.createWriteStream(path, options);
        if (path.includes("/b/") && path.includes(".tar.gz")) this.artifact = stream;
        return stream;
      }
      override async openRead(path: string) {
        if (path.endsWith(".jsonl") && ++this.logsOpened === 2) {
          this.artifact?.destroy(
            Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" }),
          );
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        return super.openRead(path);
      }
    }
    const base = new MemoryFileSystem();
    base.now = T0;
    await createStateRoot({
      fs: base,
      root: "/state",
      contexts: [{ name: CTX, eventBytes: 3 * 1024 * 1024 }],
      plantSecrets: false,
    });
    const fs = new FailsAtSecondLog(base);
    await expect(
      createSnapshot({
        fs,
        stateRoot: "/state",
        backupRoot: "/b",
        context: CTX,
        clock: () => new Date(T0),
        insecurePlaintext: true,
        sleep: async () => undefined,
      }),
    ).rejects.toMatchObject({
      code: "PAAS_BACKUP_NO_SPACE",
      message: expect.stringMatching(/no space left/),
    });
    expect(fs.logsOpened).toBe(2);
    expect(fs.openReaders).toBe(0);
  });
});
