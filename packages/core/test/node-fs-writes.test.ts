import { describe, it, expect, afterEach } from "vitest";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { nodeFs } from "../src/fs/node-fs.js";

// node:fs as the Node adapter sees it, patched to log each write(2) and to give short writes and
// a transient EAGAIN part way through a chunk (what a pipe or a network filesystem may do).
const nodeFsModule = createRequire(import.meta.url)("node:fs") as typeof import("node:fs");
const realWrite = nodeFsModule.write;
const dirs: string[] = [];
afterEach(() => {
  nodeFsModule.write = realWrite;
  syncBuiltinESMExports();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function patchWrite(decide: (length: number, call: number) => "write" | "short" | "eagain"): {
  lengths: number[];
} {
  const lengths: number[] = [];
  let call = 0;
  nodeFsModule.write = ((
    fd: number,
    buf: Buffer,
    offset: number,
    length: number,
    pos: unknown,
    cb: never,
  ) => {
    const what = decide(length, call++);
    if (what === "eagain") {
      const err = Object.assign(new Error("EAGAIN: resource temporarily unavailable, write"), {
        code: "EAGAIN",
      });
      setImmediate(() => (cb as (e: Error) => void)(err));
      return;
    }
    const n = what === "short" ? Math.max(1, length >> 1) : length;
    lengths.push(n);
    return (realWrite as (...a: unknown[]) => void)(fd, buf, offset, n, pos, cb);
  }) as typeof nodeFsModule.write;
  syncBuiltinESMExports();
  return { lengths };
}

async function writeThrough(path: string, chunks: Buffer[], append = false): Promise<void> {
  const out = nodeFs.createWriteStream(path, { mode: 0o600, append });
  for (const c of chunks) if (!out.write(c)) await once(out, "drain");
  out.end();
  await once(out, "finish");
}

describe("the Node adapter's write streams", () => {
  it("write a large chunk as writes of at most 64 KiB, byte for byte, and append after them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-writes-"));
    dirs.push(dir);
    const { lengths } = patchWrite(() => "write");
    const big = randomBytes(3 * 1024 * 1024 + 4321);
    const small = randomBytes(1000);
    const file = join(dir, "log");
    await writeThrough(file, [big, small]);
    await writeThrough(file, [Buffer.from("appended\n")], true);
    expect(readFileSync(file).equals(Buffer.concat([big, small, Buffer.from("appended\n")]))).toBe(true);
    expect(Math.max(...lengths)).toBe(64 * 1024);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(big.length + small.length + 9);
  });

  it("finish a chunk after short writes and a transient EAGAIN part way, never writing a byte twice", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-writes-"));
    dirs.push(dir);
    patchWrite((_length, call) => (call === 3 ? "short" : call === 5 || call === 6 ? "eagain" : "write"));
    const big = randomBytes(1024 * 1024 + 17);
    const file = join(dir, "log");
    await writeThrough(file, [big, Buffer.from("end\n")]);
    expect(readFileSync(file).equals(Buffer.concat([big, Buffer.from("end\n")]))).toBe(true);
  });
});
