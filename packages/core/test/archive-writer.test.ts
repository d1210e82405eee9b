import { describe, it, expect } from "vitest";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { ArchiveWriter } from "../src/archive/writer.js";

describe("the archive writer against a slow sink", () => {
  it("waits for every drain without leaving a listener behind, and writes every byte", async () => {
    const received: Buffer[] = [];
    // A sink that is full after each member and drains a moment later: every member waits.
    const sink = new Writable({
      highWaterMark: 1,
      write(chunk, _enc, cb) {
        received.push(chunk as Buffer);
        setTimeout(cb, 1);
      },
    });
    const base = {
      drain: sink.listenerCount("drain"),
      close: sink.listenerCount("close"),
      error: sink.listenerCount("error"),
    };
    const writer = new ArchiveWriter(sink);
    const content = Buffer.from("x".repeat(64) + "\n").subarray(0, 65);
    const big = Buffer.concat(Array.from({ length: 40 * 1024 }, () => content)); // 2.5 MiB: several members
    for (let i = 0; i < 12; i++) await writer.addBuffer(`events/log-${i}.jsonl`, big, new Date(0));
    await writer.cut();
    expect(sink.listenerCount("drain")).toBe(base.drain);
    expect(sink.listenerCount("close")).toBe(base.close);
    expect(sink.listenerCount("error")).toBe(base.error + 1); // the writer's own, for the run
    await writer.finish("{}", new Date(0));
    const tar = gunzipSync(Buffer.concat(received));
    expect(tar.length).toBeGreaterThan(12 * big.length);
  });
});

describe("the archive writer against a sink closed without an error", () => {
  it("fails the archive instead of waiting forever for a drain that never comes", async () => {
    const slow = new Writable({
      highWaterMark: 1024,
      write: (_chunk, _enc, cb) => setTimeout(cb, 2),
    });
    const writer = new ArchiveWriter(slow, 1);
    await writer.addBuffer("a", Buffer.alloc(3 * 1024 * 1024, 1), new Date(0));
    slow.destroy();
    await expect(writer.addBuffer("b", Buffer.alloc(4 * 1024 * 1024, 2), new Date(0))).rejects.toThrow(
      /closed before the archive was complete/,
    );
  }, 10_000);
});
