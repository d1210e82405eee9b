import { describe, it, expect, afterEach } from "vitest";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { MemoryFileSystem } from "@paas-backup/testing";
import { nodeFs } from "../src/fs/node-fs.js";
import { openChunks, ReadBuffers } from "../src/snapshot/read-chunks.js";
import type { FileReader, FileSystem } from "../src/fs/types.js";

// node:fs as the Node adapter sees it: patched here (and synced into the ES module view) to give
// short reads, slow reads and to log closes, as a network or FUSE filesystem may.
const nodeFsModule = createRequire(import.meta.url)("node:fs") as typeof import("node:fs");
const realRead = nodeFsModule.read;
const realClose = nodeFsModule.close;
afterEach(() => {
  nodeFsModule.read = realRead;
  nodeFsModule.close = realClose;
  syncBuiltinESMExports();
});

const data = randomBytes(3 * 1024 * 1024 + 123);

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

function withTempFile<T>(run: (path: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "pb-read-ahead-"));
  const path = join(dir, "log.jsonl");
  writeFileSync(path, data);
  return run(path).finally(() => rmSync(dir, { recursive: true, force: true }));
}

describe("reads ahead (the Node adapter's read stream, a snapshot's chunk reader)", () => {
  it("the read stream passes on a short read mid-file and goes on from there, as fs.createReadStream does", () =>
    withTempFile(async (path) => {
      let calls = 0;
      nodeFsModule.read = ((fd: number, buf: Buffer, off: number, len: number, pos: number, cb: never) =>
        // every third read comes back with 1000 bytes only
        realRead(fd, buf, off, ++calls % 3 === 0 ? Math.min(len, 1000) : len, pos, cb)) as never;
      syncBuiltinESMExports();
      expect((await readAll(nodeFs.createReadStream(path))).equals(data)).toBe(true);
      const part = await readAll(nodeFs.createReadStream(path, { start: 5, end: 2_000_000 }));
      expect(part.equals(data.subarray(5, 2_000_001))).toBe(true);
      expect(calls).toBeGreaterThan(6);
    }));

  it("the read stream closes its file only once every read in flight is back", () =>
    withTempFile(async (path) => {
      const events: string[] = [];
      nodeFsModule.read = ((fd: number, buf: Buffer, off: number, len: number, pos: number, cb: Function) =>
        setTimeout(
          () =>
            realRead(fd, buf, off, len, pos, (err, n) => {
              events.push(`read ${pos}`);
              cb(err, n, buf);
            }),
          pos === 0 ? 50 : 5,
        )) as never;
      nodeFsModule.close = ((fd: number, cb: Function) => {
        events.push("close");
        realClose(fd, cb as never);
      }) as never;
      syncBuiltinESMExports();
      const stream = nodeFs.createReadStream(path);
      stream.on("error", () => undefined);
      stream.resume();
      await new Promise((resolve) => setTimeout(resolve, 20));
      stream.destroy();
      await new Promise((resolve) => stream.on("close", resolve));
      expect(events).toContain("read 0");
      expect(events[events.length - 1]).toBe("close");
    }));

  it("the read stream refuses an end before its start, and an error to open is an 'error' event", async () => {
    expect(() => nodeFs.createReadStream("/nowhere", { start: 10, end: 5 })).toThrow(/before start/);
    await expect(readAll(nodeFs.createReadStream("/no/such/file"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("the chunk reader gives every byte in order through short reads, and ends at a read of nothing", async () => {
    const mem = new MemoryFileSystem();
    await mem.writeFile("/log.jsonl", data);
    let reads = 0;
    // a FileSystem whose reads often come back short
    const shortReads: FileSystem = Object.assign(Object.create(mem) as MemoryFileSystem, {
      async openRead(path: string): Promise<FileReader> {
        const inner = await mem.openRead(path);
        return {
          read: (into: Uint8Array, position: number) =>
            inner.read(++reads % 2 === 0 ? into.subarray(0, Math.min(into.length, 777)) : into, position),
          close: () => inner.close(),
        };
      },
    });
    const buffers = new ReadBuffers();
    const whole = async (start: number, end: number) => {
      const chunks = await openChunks(shortReads, "/log.jsonl", start, end, buffers);
      const parts: Buffer[] = [];
      try {
        for (let c = await chunks.next(); c; c = await chunks.next()) {
          parts.push(Buffer.from(c));
          chunks.release(c);
        }
      } finally {
        await chunks.close();
      }
      return Buffer.concat(parts);
    };
    expect((await whole(0, data.length)).equals(data)).toBe(true);
    expect((await whole(1000, 2_500_000)).equals(data.subarray(1000, 2_500_000))).toBe(true);
    // planned longer than the file (it shrank): what is there, then the end
    expect((await whole(0, data.length + 5000)).equals(data)).toBe(true);
    expect(reads).toBeGreaterThan(10);
  });
});
