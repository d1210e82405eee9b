import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { MemoryFileSystem } from "@paas-backup/testing";
import { planEventLines } from "../src/restore/event-tails.js";
import { redactText } from "../src/policy/secrets.js";
import type { FileReader, FileSystem } from "../src/fs/types.js";

/**
 * A live log that does not extend the snapshot's (rewritten, rotated) has its lines the restored
 * log does not hold kept in the incident. Planning that read the whole live log and the whole
 * staged one into strings: past about 512 MiB V8's string limit failed the restore. Here the logs
 * are a few MiB and each read is held to 64 KiB: the old code read each log in one piece.
 */
const READ = 64 * 1024;

/** The memory filesystem, noting the largest piece any one read returned or filled. */
function measured(fs: MemoryFileSystem): { fs: FileSystem; largestRead: () => number } {
  let largest = 0;
  const note = (n: number) => (largest = Math.max(largest, n));
  const wrapped: FileSystem = Object.create(fs) as FileSystem;
  wrapped.readFile = async (path) => {
    const data = await fs.readFile(path);
    note(data.length);
    return data;
  };
  wrapped.readRange = async (path, position, length) => {
    const data = await fs.readRange(path, position, length);
    note(data.length);
    return data;
  };
  wrapped.openRead = async (path): Promise<FileReader> => {
    const reader = await fs.openRead(path);
    return {
      read: async (into, position) => {
        const n = await reader.read(into, position);
        note(n);
        return n;
      },
      close: () => reader.close(),
    };
  };
  wrapped.createReadStream = (path, options) => {
    const stream = fs.createReadStream(path, options);
    stream.on("data", (c: Buffer) => note(c.length));
    return stream;
  };
  return { fs: wrapped, largestRead: () => largest };
}

function auditLine(i: number, extra = ""): string {
  return JSON.stringify({
    timestamp: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString(),
    command: "deploy",
    status: i % 7 === 0 ? "failed" : "succeeded",
    context: "alpha",
    fields: {
      app: `app-${i % 13}`,
      release: `rel-${i}`,
      id: createHash("sha1").update(String(i)).digest("hex"),
    },
    ...(extra ? { note: extra } : {}),
  });
}

describe("the live lines of a rewritten log", () => {
  it("are kept as before (only lines the restored log lacks, in order, redacted) from reads of at most 64 KiB", async () => {
    const mem = new MemoryFileSystem();
    const live = "/state/contexts/alpha";
    const staged = "/staging/contexts/alpha";
    await mem.mkdir(`${live}/events`, { recursive: true });
    await mem.mkdir(`${staged}/events`, { recursive: true });
    // the snapshot's log: 20 000 lines (about 4 MiB), one far longer than a read
    const snapshotLines = Array.from({ length: 20_000 }, (_, i) =>
      auditLine(i, i === 500 ? "x".repeat(200_000) : ""),
    );
    const stagedLog = `${snapshotLines.join("\n")}\n`;
    await mem.writeFile(`${staged}/events/audit.jsonl`, stagedLog);
    // the live log was rewritten: every other old line dropped, the long one kept, new lines in
    // between (one carrying a secret, one duplicated, one blank), and no newline at its end
    const liveLines: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      if (i % 2 === 0 || i === 500) liveLines.push(snapshotLines[i]!);
      if (i % 1000 === 1) liveLines.push(auditLine(100_000 + i));
    }
    liveLines.push(
      auditLine(200_000).replace(
        '"context"',
        '"fields2":{"api_token":"sk_live_9fQ2xT7vLm3Rk8Wp4ZyB6nHc"},"context"',
      ),
    );
    liveLines.push(auditLine(300_000), "", auditLine(300_000), auditLine(300_001));
    const liveLog = liveLines.join("\n");
    await mem.writeFile(`${live}/events/audit.jsonl`, liveLog);

    const { fs, largestRead } = measured(mem);
    const planned = await planEventLines({
      fs,
      live,
      replaced: () => true,
      snapshotLogs: new Map([
        // the snapshot's log as it read it: not what the live one starts with (it was rewritten)
        ["events/audit.jsonl", { size: Buffer.byteLength(stagedLog), sha256: "0".repeat(64) }],
      ]),
      stagedContext: staged,
      exact: false,
      readBytes: READ,
    });

    // what the code before this change kept: the lines of the live text not in the staged text's
    // set of lines, joined, redacted
    const held = new Set(stagedLog.split("\n"));
    const expected = Buffer.from(
      redactText(
        `${liveLog
          .split("\n")
          .filter((l) => l !== "" && !held.has(l))
          .join("\n")}\n`,
      ),
    );
    expect(planned).toHaveLength(1);
    const [audit] = planned;
    expect(audit!.record.action).toBe("keep");
    expect(audit!.data.equals(expected)).toBe(true);
    expect(audit!.record).toMatchObject({
      path: "events/audit.jsonl",
      lines: 20 + 1 + 3,
      bytes: expected.length,
      sha256: createHash("sha256").update(expected).digest("hex"),
    });
    expect(audit!.data.toString()).toContain('"api_token":"<redacted>"');
    expect(audit!.data.toString()).not.toContain("sk_live_");
    // bounded reads: no log was read whole (each is several MiB)
    expect(largestRead()).toBeLessThanOrEqual(READ);
  });
});
