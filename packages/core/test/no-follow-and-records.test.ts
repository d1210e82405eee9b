import { describe, it, expect } from "vitest";
import { MemoryFileSystem, FaultInjectingFileSystem, createStateRoot } from "@paas-backup/testing";
import { createSnapshot, runDoctor, readBlock, UsageError } from "../src/index.js";
import { writeIncident, listRecords, type IncidentRecord } from "../src/records/index.js";
import { validateContextName } from "../src/snapshot/index.js";
import { workTreeOf, MAX_CONTEXT_NAME_BYTES } from "../src/policy/index.js";

const CTX = "internal-dogfood";

function record(ticket: string, outcome: IncidentRecord["outcome"]): IncidentRecord {
  return {
    schema: "paas-backup/incident@1",
    kind: "restore",
    ticket,
    context: CTX,
    stateRoot: "/s",
    snapshot: null,
    requestedSnapshot: "latest",
    fallback: { used: false },
    operator: "unit",
    startedAt: "2026-11-24T10:00:00.123Z",
    endedAt: "2026-11-24T10:00:00.900Z",
    dryRun: false,
    movedAsideTo: null,
    vault: null,
    doctor: null,
    externalDoctor: null,
    outcome,
    error: null,
  };
}

describe("incident and drill records", () => {
  it("two records with the same ticket in the same second are both kept, each created exclusively", async () => {
    const fs = new MemoryFileSystem();
    const [a, b, c] = await Promise.all([
      writeIncident(fs, "/b", record("T-9", "restored")),
      writeIncident(fs, "/b", record("T-9", "failed")),
      writeIncident(fs, "/b", record("T-9", "refused"), "drills"),
    ]);
    expect(new Set([a, b]).size).toBe(2);
    expect(c).toMatch(/\/drills\//);
    const outcomes = (await listRecords(fs, "/b", CTX, "incidents")).map((r) => r.outcome).sort();
    expect(outcomes).toEqual(["failed", "restored"]);
    expect(fs.files("/b").filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("a record write killed before its link leaves a temporary that a later record write sweeps once it is old", async () => {
    const fs = new MemoryFileSystem();
    fs.now = Date.parse("2026-11-24T10:00:00Z");
    // mkdir, readdir incidents and drills (the hash chain's head), readdir (the sweep), writeFile(tmp), then the crash
    const crashing = new FaultInjectingFileSystem(fs, { at: 6, mode: "crash" });
    await writeIncident(crashing, "/b", record("T-1", "restored")).catch(() => undefined);
    expect(fs.files("/b").filter((f) => f.endsWith(".tmp"))).toHaveLength(1);
    expect((await listRecords(fs, "/b", CTX, "incidents")).length).toBe(0); // never a torn record
    await writeIncident(fs, "/b", { ...record("T-2", "restored"), startedAt: "2026-11-24T12:00:00.000Z" });
    expect(fs.files("/b").filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});

describe("readBlock fails closed", () => {
  for (const [name, content] of [
    ["empty", ""],
    ["torn", '{"schema": "paas-backup/block@1", "context": "internal-dog'],
    ["wrong shape", '{"blocked": true}'],
  ] as const) {
    it(`an ${name} marker counts as blocked, without throwing`, async () => {
      const fs = new MemoryFileSystem();
      await fs.mkdir(`/s/contexts/${CTX}`, { recursive: true });
      await fs.writeFile(`/s/contexts/${CTX}/paas-backup.blocked.json`, content);
      const block = await readBlock(fs, "/s", CTX);
      expect(block).toMatchObject({ blocks: ["deploy", "secret-mutation"], ticket: "unknown" });
      expect(block!.reason).toMatch(/unreadable block marker/);
    });
  }

  it("a marker that is a symbolic link blocks and is not followed", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir(`/s/contexts/${CTX}`, { recursive: true });
    fs.symlink("/etc/elsewhere.json", `/s/contexts/${CTX}/paas-backup.blocked.json`);
    expect((await readBlock(fs, "/s", CTX))!.reason).toMatch(/a symlink, not a file/);
  });
});

describe("nothing is read through a symbolic link inside a context", () => {
  it("a context whose events/ is a link: snapshot and doctor skip it and never open the logs behind it", async () => {
    const inner = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs: inner,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 3_000 }],
      plantSecrets: false,
    });
    const ctx = sr.contextDir(CTX);
    // the real logs move elsewhere; events/ becomes a link to them
    await inner.rename(`${ctx}/events`, "/elsewhere");
    inner.symlink("/elsewhere", `${ctx}/events`);
    const fs = new FaultInjectingFileSystem(inner);
    const snap = await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock: () => new Date("2026-11-24T10:00:00Z"),
      insecurePlaintext: true,
    });
    const manifest = JSON.parse(Buffer.from(await inner.readFile(snap.manifestFile)).toString());
    expect(
      manifest.files.map((f: { path: string }) => f.path).filter((p: string) => p.startsWith("events/")),
    ).toEqual([]);
    expect(manifest.skipped.map((s: { path: string }) => s.path)).toEqual(
      expect.arrayContaining([
        "events",
        "events/audit.jsonl",
        "events/deployments.jsonl",
        "events/alerts.jsonl",
      ]),
    );
    const report = await runDoctor({ fs, stateRoot: "/s", context: CTX });
    expect(report.checks.find((c) => c.name === "events_readable")).toMatchObject({ ok: false });
    expect(report.checks.find((c) => c.name === "events_readable")!.detail).toMatch(
      /under events, a symlink, not a regular file \(not followed\)/,
    );
    const opened = fs.log.filter(
      (c) =>
        ["readFile", "createReadStream", "readRange"].includes(c.op) &&
        (c.path.includes("/events/") || c.path.startsWith("/elsewhere")),
    );
    expect(opened).toEqual([]);
  });

  it("a state file behind a linked folder is not read by doctor", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 1_000 }],
      plantSecrets: false,
    });
    const ctx = sr.contextDir(CTX);
    await fs.rename(`${ctx}/alerts`, "/outside-alerts");
    fs.symlink("/outside-alerts", `${ctx}/alerts`);
    const report = await runDoctor({ fs, stateRoot: "/s", context: CTX });
    expect(report.checks.find((c) => c.name === "state_files_parse")!.detail).toMatch(
      /alerts\/policy.json: under alerts, a symlink/,
    );
  });
});

describe("context names by byte length", () => {
  it("refuses a name longer than 200 UTF-8 bytes, whatever its character count", () => {
    expect(MAX_CONTEXT_NAME_BYTES).toBe(200);
    const err = (() => {
      try {
        validateContextName("日".repeat(80)); // 80 characters, 240 bytes
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/240 bytes long in UTF-8; the limit is 200 bytes/);
    expect(validateContextName("日".repeat(66))).toBe("日".repeat(66)); // 198 bytes
    expect(validateContextName("a".repeat(200))).toBe("a".repeat(200));
    expect(() => validateContextName("a".repeat(201))).toThrow(UsageError);
  });
});

describe("guards resolve symbolic links", () => {
  it("a path that is a link into a work tree is inside it", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/repo/.git", { recursive: true });
    await fs.mkdir("/repo/data", { recursive: true });
    await fs.mkdir("/home/op", { recursive: true });
    fs.symlink("/repo/data", "/home/op/backups");
    expect(await workTreeOf(fs, "/home/op/backups")).toBe("/repo");
    expect(await workTreeOf(fs, "/home/op/backups/not-yet/made")).toBe("/repo");
    expect(await workTreeOf(fs, "/home/op/elsewhere")).toBeNull();
  });

  it("doctor sees a state root that is a link into a work tree as inside it", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/repo/.git", { recursive: true });
    await createStateRoot({
      fs,
      root: "/repo/state",
      contexts: [{ name: CTX, eventBytes: 500 }],
      plantSecrets: false,
    });
    await fs.mkdir("/home/op", { recursive: true });
    fs.symlink("/repo/state", "/home/op/paas");
    const report = await runDoctor({ fs, stateRoot: "/home/op/paas", context: CTX });
    expect(report.checks.find((c) => c.name === "state_root_outside_repo")).toMatchObject({ ok: false });
  });
});
