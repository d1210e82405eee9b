import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { MemoryFileSystem, FaultInjectingFileSystem } from "@paas-backup/testing";
import { planChanges } from "../src/restore/scope.js";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

describe("planChanges (what a restore reports it changes)", () => {
  it("takes a live file with the snapshot's size and mtime as unchanged without reading it, and hashes the rest", async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdir("/ctx/events", { recursive: true });
    mem.now = Date.UTC(2026, 10, 1);
    await mem.writeFile("/ctx/events/audit.jsonl", "old line\n");
    const auditMtime = (await mem.lstat("/ctx/events/audit.jsonl")).mtimeMs;
    // Written after the snapshot (a later mtime): same size, read and compared by hash.
    mem.now = Date.UTC(2026, 10, 2);
    await mem.writeFile("/ctx/config.json", '{"a":1}');
    await mem.writeFile("/ctx/targets.json", '{"b":2}');
    await mem.writeFile("/ctx/extra.json", "{}");
    const fs = new FaultInjectingFileSystem(mem);
    const changes = await planChanges(
      fs,
      "/ctx",
      [
        // the snapshot recorded this mtime: untouched since, so not read
        { path: "events/audit.jsonl", size: 9, sha256: sha("old line\n"), sourceMtimeMs: auditMtime },
        // same size, another mtime, same bytes: unchanged, found by reading it
        { path: "config.json", size: 7, sha256: sha('{"a":1}'), sourceMtimeMs: Date.UTC(2026, 10, 1) },
        // same size, no recorded mtime (a redacted copy, a hand-made archive), other bytes: changed
        { path: "targets.json", size: 7, sha256: sha('{"b":3}') },
        { path: "new.json", size: 2, sha256: sha("{}") },
      ],
      { aside: ["config.json", "events/audit.jsonl", "extra.json", "targets.json"], keep: ["vault"] },
    );
    expect(changes).toEqual({
      added: ["new.json"],
      changed: ["targets.json"],
      removed: ["extra.json"],
      unchanged: 2,
      kept: ["vault"],
    });
    const opened = fs.log.filter((c) => c.op !== "lstat").map((c) => c.path);
    expect(opened).toContain("/ctx/config.json");
    expect(opened).toContain("/ctx/targets.json");
    expect(opened).not.toContain("/ctx/events/audit.jsonl");
  });
});
