import { describe, it, expect } from "vitest";
import { Writable } from "node:stream";
import { createHash } from "node:crypto";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { createSnapshot } from "../src/index.js";
import {
  listSnapshotFiles,
  dumpSnapshotFile,
  diffSnapshots,
  findInSnapshots,
} from "../src/snapshot/inspect.js";

/** The snapshot reader behind ls, dump, diff and find, on the in-memory filesystem. */
const CTX = "internal-dogfood";

function clockFrom(start: string) {
  let t = Date.parse(start);
  return () => new Date((t += 61_000));
}

function sink(): { out: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  return {
    out: new Writable({ write: (c, _e, cb) => (chunks.push(Buffer.from(c)), cb()) }),
    bytes: () => Buffer.concat(chunks),
  };
}

describe("reading snapshots without restoring them", () => {
  it("lists, dumps, diffs and finds through an incremental chain", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({ fs, root: "/state", contexts: [{ name: CTX, eventBytes: 20_000 }] });
    const clock = clockFrom("2026-11-24T10:00:00Z");
    const dir = sr.contextDir(CTX);
    const full = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    const audit = `${dir}/events/audit.jsonl`;
    const before = Buffer.from(await fs.readFile(audit));
    const added =
      '{"ts":"2026-11-24T11:00:00Z","kind":"audit"}\n{"ts":"2026-11-24T11:00:01Z","kind":"audit"}\n{"ts":"2026-11-24T11:00:02Z","kind":"audit"}\n';
    await fs.writeFile(audit, Buffer.concat([before, Buffer.from(added)]));
    await fs.rm(`${dir}/bluegreen.json`);
    const inc = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
      kind: "incremental",
    });
    expect(inc.kind).toBe("incremental");

    const ls = await listSnapshotFiles({ fs, backupRoot: "/b", context: CTX, snapshot: inc.id });
    const entry = ls.files.find((f) => f.path === "events/audit.jsonl")!;
    expect(entry.stored).toBe("append");
    expect(entry.sha256).toBe(
      createHash("sha256")
        .update(Buffer.concat([before, Buffer.from(added)]))
        .digest("hex"),
    );
    expect(ls.files.some((f) => f.path === "bluegreen.json")).toBe(false);

    const s = sink();
    await dumpSnapshotFile({
      fs,
      backupRoot: "/b",
      context: CTX,
      snapshot: inc.id,
      path: "events/audit.jsonl",
      scratch: "/tmp/scratch",
      out: s.out,
    });
    expect(s.bytes().equals(Buffer.concat([before, Buffer.from(added)]))).toBe(true);
    expect(fs.files("/tmp")).toEqual([]); // the scratch copy is gone
    await expect(
      dumpSnapshotFile({
        fs,
        backupRoot: "/b",
        context: CTX,
        snapshot: inc.id,
        path: "vault/secrets.env",
        scratch: "/tmp/s2",
        out: sink().out,
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_PATH_NOT_IN_SNAPSHOT", exitCode: 2 });

    const diff = await diffSnapshots({
      fs,
      backupRoot: "/b",
      stateRoot: "/state",
      context: CTX,
      from: full.id,
      to: inc.id,
      scratch: "/tmp/s3",
    });
    expect(diff.entries.map((e) => [e.path, e.change, e.appendedLines])).toEqual([
      ["bluegreen.json", "removed", null],
      ["events/audit.jsonl", "changed", 3],
    ]);
    // a log rewritten in place is "changed" with no appended count
    await fs.writeFile(audit, Buffer.from('{"ts":"2026-11-24T12:00:00Z","kind":"audit"}\n'));
    const live = await diffSnapshots({
      fs,
      backupRoot: "/b",
      stateRoot: "/state",
      context: CTX,
      from: inc.id,
      to: "live",
      scratch: "/tmp/s4",
    });
    expect(live.entries.find((e) => e.path === "events/audit.jsonl")).toMatchObject({
      change: "changed",
      appendedLines: null,
    });

    const found = await findInSnapshots({ fs, backupRoot: "/b", context: CTX, path: "bluegreen.json" });
    expect(found.map((f) => f.snapshot)).toEqual([full.id]);
  });
});
