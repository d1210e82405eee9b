import { describe, it, expect } from "vitest";
import { Writable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
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

describe("the archive writer's deflate level", () => {
  /** Write one file through the writer; the artifact and its members' compressed lengths. */
  async function archive(content: Buffer, level?: number) {
    const received: Buffer[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        received.push(chunk as Buffer);
        cb();
      },
    });
    const writer = new ArchiveWriter(sink, level);
    await writer.addBuffer("events/audit.jsonl", content, new Date(0));
    const members = await writer.cut();
    await writer.finish("{}", new Date(0));
    return { gz: Buffer.concat(received), members };
  }
  /** Lines of random ids: about 0.55 of their size after deflate. */
  const hard = Buffer.from(
    Array.from({ length: 80_000 }, (_, i) => `{"n":${i},"id":"${randomBytes(40).toString("hex")}"}\n`).join(
      "",
    ),
  );
  /** si's usual lines: a short random id in regular JSON, about a sixth after deflate. */
  const easy = Buffer.from(
    Array.from(
      { length: 60_000 },
      (_, i) =>
        `{"timestamp":"2026-11-24T10:00:${String(i % 60).padStart(2, "0")}Z","command":"deploy","status":"ok","id":"${randomBytes(6).toString("hex")}","n":${i}}\n`,
    ).join(""),
  );
  /** Member k of the artifact and the tar bytes it holds. */
  function member(gz: Buffer, tar: Buffer, members: { compressed: number[]; plain: number[] }, k: number) {
    const at = (xs: number[]) => xs.slice(0, k).reduce((n, x) => n + x, 0);
    return {
      gzip: gz.subarray(at(members.compressed), at(members.compressed) + members.compressed[k]!),
      piece: tar.subarray(at(members.plain), at(members.plain) + members.plain[k]!),
    };
  }

  it("deflates data that is hard to compress one level lower, and the artifact stays within 1.1x gzip -6", async () => {
    const { gz, members } = await archive(hard, 5);
    expect(members.plain.length).toBeGreaterThan(3);
    const tar = gunzipSync(gz);
    expect(tar.subarray(512, 512 + hard.length).equals(hard)).toBe(true);
    // the first members are deflated at the level asked; once member 0 came back at over a quarter
    // of its bytes (three members are in flight), member 3 on are zlib's level 4 of their pieces
    const first = member(gz, tar, members, 0);
    expect(first.gzip.equals(gzipSync(first.piece, { level: 5, memLevel: 9 }))).toBe(true);
    const fourth = member(gz, tar, members, 3);
    expect(fourth.gzip.equals(gzipSync(fourth.piece, { level: 4, memLevel: 9 }))).toBe(true);
    expect(gz.length / gzipSync(tar, { level: 6 }).length).toBeLessThanOrEqual(1.1);
  });

  it("keeps the level asked (5) for data that compresses well", async () => {
    const { gz, members } = await archive(easy, 5);
    const tar = gunzipSync(gz);
    expect(tar.subarray(512, 512 + easy.length).equals(easy)).toBe(true);
    expect(members.plain.length).toBeGreaterThan(4);
    const fourth = member(gz, tar, members, 3);
    expect(fourth.gzip.equals(gzipSync(fourth.piece, { level: 5, memLevel: 9 }))).toBe(true);
  });

  it("deflates at level 4 by default, never takes hard data below it, and writes within 7 % of level 5", async () => {
    for (const content of [easy, hard]) {
      const { gz, members } = await archive(content);
      const tar = gunzipSync(gz);
      expect(tar.subarray(512, 512 + content.length).equals(content)).toBe(true);
      expect(members.plain.length).toBeGreaterThan(4);
      for (const k of [0, 3, members.plain.length - 1]) {
        const m = member(gz, tar, members, k);
        expect(m.gzip.equals(gzipSync(m.piece, { level: 4, memLevel: 9 }))).toBe(true);
      }
      const atLevel5 = await archive(content, 5);
      expect(gz.length / atLevel5.gz.length).toBeLessThanOrEqual(1.07);
    }
  });
});
