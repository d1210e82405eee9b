import { describe, it, expect } from "vitest";
import { Writable } from "node:stream";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { diffSnapshots, dumpSnapshotFile, listSnapshotFiles } from "../src/snapshot/inspect.js";
import { restoreSnapshot, runTick, verifySnapshots } from "../src/index.js";
import type { LockOwner } from "../src/snapshot/index.js";

/**
 * Issue 20 §2, "A snapshot dated in the future": every reader that resolves `latest` (ls, dump,
 * diff, verify) picks what restore picks, the newest snapshot the clock has reached, and says
 * which snapshots from the future it passed over, in restore's words.
 */
const owner: LockOwner = { pid: 4242, host: "unit", command: "tick", isAlive: () => false };
const HOUR = 3600_000;

async function world() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/state",
    contexts: [{ name: "alpha", eventBytes: 2_000 }],
    plantSecrets: false,
  });
  let now = Date.parse("2026-11-20T00:30:00Z");
  const clock = () => new Date(now);
  const set = (t: number) => {
    now = t;
    fs.now = t;
  };
  set(now);
  const tick = async () =>
    (
      await runTick({
        fs,
        stateRoot: "/state",
        backupRoot: "/backups",
        allContexts: true,
        clock,
        owner,
        lockTimeoutMs: 0,
        insecurePlaintext: true,
      })
    ).outcomes[0]!.snapshot!.id;
  return { fs, clock, set, now: () => now, tick };
}

/** A full, then one taken while the clock was three months ahead, then the clock corrected and an incremental. */
async function jumpedClock() {
  const w = await world();
  const full = await w.tick();
  w.set(w.now() + 90 * 24 * HOUR);
  await w.fs.appendFile("/state/contexts/alpha/events/audit.jsonl", '{"note":"from the future"}\n');
  const ahead = await w.tick();
  w.set(Date.parse("2026-11-20T02:00:00Z"));
  await w.fs.appendFile("/state/contexts/alpha/events/audit.jsonl", '{"note":"present"}\n');
  const inc = await w.tick();
  return { ...w, full, ahead, inc };
}

function sink(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return Object.assign(out, { text: () => Buffer.concat(chunks).toString("utf8") });
}

describe("readers resolve latest as restore does", () => {
  it("ls, dump, diff and verify pass over a snapshot from the future, with restore's warning", async () => {
    const w = await jumpedClock();
    const base = { fs: w.fs, backupRoot: "/backups", context: "alpha", clock: w.clock };
    const warning = new RegExp(
      `^latest is ${w.inc}: 1 newer snapshot\\(s\\) are from the future \\(ahead of the clock 2026-11-20T02:00:00.000Z by more than 5 minutes\\) and never latest: ${w.ahead}; `,
    );

    const ls = await listSnapshotFiles({ ...base, snapshot: "latest" });
    expect(ls.snapshot.id).toBe(w.inc);
    expect(ls.warnings).toHaveLength(1);
    expect(ls.warnings[0]).toMatch(warning);

    const out = sink();
    const dump = await dumpSnapshotFile({
      ...base,
      snapshot: "latest",
      path: "events/audit.jsonl",
      scratch: "/tmp/scratch",
      out,
    });
    expect(dump.snapshot.id).toBe(w.inc);
    expect(out.text()).toContain('{"note":"present"}'); // the future snapshot's log has no such line
    expect(dump.warnings).toEqual(ls.warnings);

    const diff = await diffSnapshots({
      ...base,
      stateRoot: "/state",
      from: w.full,
      to: "latest",
      scratch: "/tmp/diff",
    });
    expect(diff.to).toBe(w.inc);
    expect(diff.warnings).toEqual(ls.warnings);

    const told: string[] = [];
    const verified = await verifySnapshots({ ...base, snapshot: "latest", onWarning: (m) => told.push(m) });
    expect(verified.map((v) => v.id)).toEqual([w.inc]);
    expect(told).toEqual(ls.warnings);

    // restore gives the same warning in its plan, so every reader says it the same way
    const restored = await restoreSnapshot({
      ...base,
      stateRoot: "/state",
      snapshot: "latest",
      ticket: "T-1",
      operator: "unit",
      dryRun: true,
    });
    expect(restored.snapshot.id).toBe(w.inc);
    expect(restored.warnings).toContain(ls.warnings[0]);

    // by its id, the one from the future is still there to read, and nothing warns
    const byId = await listSnapshotFiles({ ...base, snapshot: w.ahead });
    expect(byId.snapshot.id).toBe(w.ahead);
    expect(byId.warnings).toEqual([]);
  });

  it("when every snapshot is from the future, ls and verify refuse latest as restore does", async () => {
    const w = await world();
    await w.tick();
    w.set(w.now() - 60 * 24 * HOUR); // the clock was corrected two months back
    const base = { fs: w.fs, backupRoot: "/backups", context: "alpha", clock: w.clock };
    const refusal = {
      code: "PAAS_BACKUP_NO_SNAPSHOTS",
      message: expect.stringMatching(/is from the future \(ahead of the clock, .*\), so none is latest/),
    };
    await expect(listSnapshotFiles({ ...base, snapshot: "latest" })).rejects.toMatchObject(refusal);
    await expect(verifySnapshots({ ...base, snapshot: "latest" })).rejects.toMatchObject(refusal);
    await expect(
      restoreSnapshot({
        ...base,
        stateRoot: "/state",
        snapshot: "latest",
        ticket: "T-1",
        operator: "unit",
        dryRun: true,
      }),
    ).rejects.toMatchObject(refusal);
  });
});
