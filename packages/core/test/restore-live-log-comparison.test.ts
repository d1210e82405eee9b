import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot, eventLine } from "@paas-backup/testing";
import { createSnapshot, restoreSnapshot } from "../src/index.js";

/**
 * A restore decides whether each live event log extends the snapshot's (its lines since are
 * appended) or not (they are kept in the incident) by comparing the live log with the restored
 * one while it extracts it, instead of hashing every live log again afterwards. The answer must
 * be the one the hash gave: through an incremental chain, for a log altered inside the
 * snapshot's bytes, and for a log replaced by another file while the restore ran.
 */
const CTX = "alpha";
const STATE = "/state";
const BACKUPS = "/backups";
const LIVE = `${STATE}/contexts/${CTX}`;
const AUDIT = `${LIVE}/events/audit.jsonl`;

async function world() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: STATE,
    contexts: [{ name: CTX, eventBytes: 40_000 }],
    plantSecrets: false,
  });
  let t = Date.parse("2026-11-24T10:00:00Z");
  const clock = () => new Date((t += 60_000));
  let n = 0;
  const lines = (count: number) =>
    Array.from({ length: count }, () => `${eventLine("audit", CTX, clock(), 5000 + n++)}\n`).join("");
  const snapshot = async (kind: "full" | "incremental") =>
    (
      await createSnapshot({
        fs,
        stateRoot: STATE,
        backupRoot: BACKUPS,
        context: CTX,
        clock,
        insecurePlaintext: true,
        kind,
      })
    ).id;
  const restore = (snapshot: string) =>
    restoreSnapshot({
      fs,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot,
      ticket: "INC-1",
      operator: "test",
      clock,
    });
  const text = async (path: string) => Buffer.from(await fs.readFile(path)).toString("utf8");
  /** the audit log's line of the incident record: where its kept lines went */
  const keptAudit = async (incidentFile: string) =>
    (
      JSON.parse(await text(incidentFile)) as {
        eventLines: { path: string; action: string; keptIn?: string }[];
      }
    ).eventLines.find((e) => e.path === "events/audit.jsonl")!;
  return { fs, lines, snapshot, restore, text, keptAudit };
}

describe("restore compares the live logs with the restored ones as it extracts them", () => {
  it("appends the lines since an incremental chain's newest link, and only those", async () => {
    const w = await world();
    await w.snapshot("full");
    await w.fs.appendFile(AUDIT, w.lines(3), { mode: 0o600 });
    const id = await w.snapshot("incremental");
    const atSnapshot = await w.text(AUDIT);
    const since = w.lines(2);
    await w.fs.appendFile(AUDIT, since, { mode: 0o600 });
    const r = await w.restore(id);
    expect(r.ok).toBe(true);
    expect(r.eventLines.find((e) => e.path === "events/audit.jsonl")).toMatchObject({
      action: "append",
      lines: 2,
    });
    const restored = await w.text(AUDIT);
    expect(restored.startsWith(atSnapshot + since)).toBe(true);
    // the restore's own audit event is the only line after them
    expect(
      restored
        .slice((atSnapshot + since).length)
        .trim()
        .split("\n"),
    ).toHaveLength(1);
  });

  it("keeps the live lines in the incident when the live log differs inside the snapshot's bytes", async () => {
    const w = await world();
    const id = await w.snapshot("full");
    const atSnapshot = await w.text(AUDIT);
    // one byte changed half way through what the snapshot read, then new lines: longer, not an extension
    const middle = Math.floor(atSnapshot.length / 2);
    const altered =
      atSnapshot.slice(0, middle) + (atSnapshot[middle] === "a" ? "b" : "a") + atSnapshot.slice(middle + 1);
    const since = w.lines(2);
    await w.fs.writeFile(AUDIT, altered + since, { mode: 0o600 });
    const r = await w.restore(id);
    expect(r.ok).toBe(true);
    const audit = await w.keptAudit(r.incidentFile);
    expect(audit.action).toBe("keep");
    expect(await w.text(audit.keptIn!)).toContain(since);
    // the restored log is the snapshot's, plus the restore's own event
    expect((await w.text(AUDIT)).startsWith(atSnapshot)).toBe(true);
  });

  it("judges a log replaced by another file after staging compared it by that file, not the one compared", async () => {
    const w = await world();
    const id = await w.snapshot("full");
    const atSnapshot = await w.text(AUDIT);
    const since = w.lines(2);
    await w.fs.appendFile(AUDIT, since, { mode: 0o600 });
    // The live log is replaced (another inode) once staging has read it: what staging found about
    // the old file must not decide for the new one, which does not begin with the snapshot's bytes.
    const rotated = w.lines(600);
    const fs = w.fs;
    const rotatesAfterStaging = new Proxy(fs, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "writeFile") return typeof value === "function" ? value.bind(target) : value;
        return async (path: string, data: Uint8Array | string, options?: object) => {
          // the staged block marker is the first file written whole into staging, once staging has
          // extracted (and compared) everything
          if (path.includes("/staging/")) {
            if (!(await exists(fs, `${AUDIT}.rotated`))) {
              await fs.writeFile(`${AUDIT}.rotated`, rotated, { mode: 0o600 });
              await fs.rename(`${AUDIT}.rotated`, AUDIT);
            }
          }
          return target.writeFile(path, data, options);
        };
      },
    });
    // longer than the snapshot's log, so only the inode tells it from an extension
    expect(rotated.length).toBeGreaterThan(atSnapshot.length);
    const r = await restoreSnapshot({
      fs: rotatesAfterStaging,
      stateRoot: STATE,
      backupRoot: BACKUPS,
      context: CTX,
      snapshot: id,
      ticket: "INC-1",
      operator: "test",
      clock: () => new Date("2026-11-25T00:00:00Z"),
    });
    expect(r.ok).toBe(true);
    const audit = await w.keptAudit(r.incidentFile);
    expect(audit.action).toBe("keep");
    expect(await w.text(audit.keptIn!)).toBe(rotated);
    expect((await w.text(AUDIT)).startsWith(atSnapshot)).toBe(true);
  });
});

async function exists(fs: MemoryFileSystem, path: string): Promise<boolean> {
  return fs.lstat(path).then(
    () => true,
    () => false,
  );
}
