import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot } from "@paas-backup/testing";
import {
  acquireLease,
  listCommittedSnapshots,
  listSnapshotsIn,
  readHistoryLines,
  type PruneHistoryLine,
} from "../src/repository/index.js";
import { createSnapshot } from "../src/index.js";
import { hideMarked, listMarks, pruneShared } from "../src/retention/index.js";

// Two-phase deletes in a shared repository, on the memory bucket whose clock is the server's.

const CTX = "oss-demo";
const HOUR = 3_600_000;

describe("two-phase prune of a shared repository", () => {
  it("marks first and removes only after the delay; a marked snapshot stays readable and is not listed; a mark a live chain needs is dropped", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 3_000 }],
      plantSecrets: false,
    });
    let now = Date.parse("2026-12-01T00:00:00Z");
    const clock = () => new Date(now);
    const storage = new MemoryStorage("memory://shared", false, clock);
    const ids: string[] = [];
    for (const kind of ["full", "incremental", "full", "incremental"] as const) {
      ids.push(
        (
          await createSnapshot({
            fs,
            stateRoot: "/s",
            backupRoot: "/scratch",
            repository: storage,
            context: CTX,
            clock,
            kind,
            insecurePlaintext: true,
          })
        ).id,
      );
      now += HOUR;
    }
    const lease = await acquireLease({
      storage,
      name: `context/${CTX}`,
      holder: { host: "h1", pid: 1, command: "prune" },
      ttlMs: 300_000,
    });
    const prune = () =>
      pruneShared({
        fs,
        scratch: "/scratch",
        storage,
        lease,
        context: CTX,
        policy: { hourly: 1, daily: 0, weekly: 0, monthly: 0 },
        clock,
        deleteAfterMs: 24 * HOUR,
      });
    const first = await prune();
    expect(first).toMatchObject({ marked: [ids[1], ids[0]], removed: [], unmarked: [], waiting: [] });
    // gone from listings through the view, still there for a restore that is reading them
    const view = hideMarked(storage, CTX, new Set((await listMarks(storage, CTX)).keys()));
    expect((await listSnapshotsIn(view, CTX)).map((s) => s.id)).toEqual([ids[2], ids[3]]);
    expect((await listSnapshotsIn(storage, CTX)).map((s) => s.id)).toEqual(ids);
    const old = (await listSnapshotsIn(storage, CTX))[0]!;
    expect((await storage.get(old.artifactKey)).readable).toBe(true);
    // a pruner that paused and woke up late marks the full the newest incremental needs
    await storage.createOnly(`marks/${CTX}/${ids[2]}`, Buffer.from("{}"));
    now += 23 * HOUR;
    const early = await prune();
    expect(early.removed).toEqual([]);
    expect(early.unmarked).toEqual([ids[2]]);
    expect(early.waiting.map((w) => w.id)).toEqual([ids[1], ids[0]]);
    expect(early.waiting[0]!.dueAt).toBe(
      new Date(Date.parse("2026-12-01T04:00:00Z") + 24 * HOUR).toISOString(),
    );
    now += 2 * HOUR;
    const due = await prune();
    expect(due).toMatchObject({ marked: [], removed: [ids[1], ids[0]], unmarked: [], waiting: [] });
    expect((await listSnapshotsIn(storage, CTX)).map((s) => s.id)).toEqual([ids[2], ids[3]]);
    expect([...(await listMarks(storage, CTX)).keys()]).toEqual([]);
    expect([...storage.objects.keys()].filter((k) => k.startsWith(`${CTX}/${ids[0]}`))).toEqual([]);
    // each removal was recorded in the bucket's prune history first (no beforeRemove given)
    const history = await readHistoryLines<PruneHistoryLine>(storage, CTX, "prune");
    // (lines of the same second are in nonce order)
    expect(history.lines.map((l) => `${l.id} ${l.where}`).sort()).toEqual(
      [ids[0], ids[1]].map((id) => `${id} memory://shared`).sort(),
    );
  });

  it("refuses to prune a context under another context's lease", async () => {
    const storage = new MemoryStorage("memory://shared");
    const lease = await acquireLease({
      storage,
      name: "context/other",
      holder: { host: "h1", pid: 1, command: "prune" },
      ttlMs: 300_000,
    });
    await expect(
      pruneShared({
        fs: new MemoryFileSystem(),
        scratch: "/x",
        storage,
        lease,
        context: CTX,
        clock: () => new Date(),
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_INVALID_ARGUMENT" });
  });

  it("lists only committed snapshots: a writer paused past its lease made its artifact visible, but its refused commit keeps it out", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 3_000 }],
      plantSecrets: false,
    });
    let now = Date.parse("2026-12-01T00:00:00Z");
    const clock = () => new Date(now);
    const storage = new MemoryStorage("memory://shared", false, clock);
    const lease = (host: string) =>
      acquireLease({
        storage,
        name: `context/${CTX}`,
        holder: { host, pid: 1, command: "tick" },
        ttlMs: 60_000,
      });
    const snapshot = () =>
      createSnapshot({
        fs,
        stateRoot: "/s",
        backupRoot: "/cache-" + now,
        repository: storage,
        context: CTX,
        clock,
        insecurePlaintext: true,
      });
    const a = await lease("h1");
    const first = await snapshot();
    await a.commit({ snapshot: first.id });
    now += HOUR;
    const late = await snapshot(); // h1 uploads, then stalls past its lease before committing
    now += 2 * 60_000;
    const b = await lease("h2");
    now += 1_000;
    const taken = await snapshot();
    await b.commit({ snapshot: taken.id });
    await expect(a.commit({ snapshot: late.id })).rejects.toMatchObject({ code: "PAAS_BACKUP_LEASE_LOST" });
    expect((await listSnapshotsIn(storage, CTX)).map((s) => s.id)).toEqual([first.id, late.id, taken.id]);
    expect((await listCommittedSnapshots(storage, CTX)).map((s) => s.id)).toEqual([first.id, taken.id]);
  });
});
