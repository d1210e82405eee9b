import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot } from "@paas-backup/testing";
import { contextStatus, createSnapshot, pushOffsite, runTick } from "../src/index.js";
import { decideTick } from "../src/snapshot/tick-entry.js";
import { findSnapshot, listSnapshots, parseSnapshotId, verifyChainCached } from "../src/repository/index.js";
import { fleetContexts } from "../src/governance/index.js";
import { offsiteAfterTick, pruneOffsite, type OffsiteTarget } from "../src/offsite/offsite.js";
import { planRetention } from "../src/retention/index.js";
import type { LockOwner } from "../src/snapshot/index.js";

/**
 * Issue 20 §2, "Over time and retention" and "Status and integrity": one test per defect class,
 * each of which failed on the code before its fix (the fleet simulation found each first).
 */
const owner: LockOwner = { pid: 4242, host: "unit", command: "tick", isAlive: () => false };
const POLICY = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };
const HOUR = 3600_000;

async function world(contexts = ["alpha"]) {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/state",
    contexts: contexts.map((name) => ({ name, eventBytes: 2_000 })),
    plantSecrets: false,
  });
  let now = Date.parse("2026-11-20T00:30:00Z");
  const clock = () => new Date(now);
  const set = (t: number) => {
    now = t;
    fs.now = t;
  };
  set(now);
  const tick = (extra: Partial<Parameters<typeof runTick>[0]> = {}) =>
    runTick({
      fs,
      stateRoot: "/state",
      backupRoot: "/backups",
      allContexts: true,
      clock,
      owner,
      lockTimeoutMs: 0,
      insecurePlaintext: true,
      retention: POLICY,
      ...extra,
    });
  const status = (context = "alpha", targets: OffsiteTarget[] = []) =>
    contextStatus({
      fs,
      backupRoot: "/backups",
      stateRoot: "/state",
      context,
      now: clock(),
      mandatoryDrills: [],
      targets,
    });
  return { fs, clock, set, now: () => now, tick, status };
}

describe("snapshots from the future (a clock that jumped)", () => {
  it("are kept, listed and restorable by id, but never latest, never the newest for the schedule or its age", async () => {
    const w = await world();
    await w.tick(); // the day's full, 2026-11-20T00:30
    w.set(w.now() + 90 * 24 * HOUR); // the clock jumps three months forward
    const ahead = (await w.tick()).outcomes[0]!.snapshot!.id;
    w.set(Date.parse("2026-11-20T02:00:00Z")); // and is corrected
    const snaps = await listSnapshots(w.fs, "/backups", "alpha");
    expect(snaps.map((s) => s.id)).toContain(ahead);

    // the schedule: an incremental is due (the real newest is 90 min old), not "-129510 min old"
    const decision = decideTick(snaps, w.clock());
    expect(decision.action).toBe("incremental");
    expect(decision.reason).toMatch(/^newest snapshot is 90 min old; 1 snapshot\(s\) from the future/);
    const taken = (await w.tick()).outcomes[0]!;
    expect(taken).toMatchObject({ ok: true, action: "incremental" });
    const inc = taken.snapshot!.id;
    // the incremental extends the real newest, not the one from the future
    const incRef = (await listSnapshots(w.fs, "/backups", "alpha")).find((s) => s.id === inc)!;
    expect(incRef.parent!.id).toBe("20261120T003000Z");

    // latest is the newest the clock has reached; the future one is still restorable by its id
    expect((await findSnapshot(w.fs, "/backups", "alpha", "latest", w.clock())).snapshot.id).toBe(inc);
    expect((await findSnapshot(w.fs, "/backups", "alpha", ahead, w.clock())).snapshot.id).toBe(ahead);

    // status: flagged, and the newest full's age is the real one (a missed daily full can alarm)
    w.set(Date.parse("2026-11-21T05:00:00Z"));
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.newestFull!.id).toBe("20261120T003000Z");
    expect(st.newestFull!.ageSeconds).toBe(28.5 * 3600);
    expect(st.attention.join("\n")).toMatch(/no full in 29 h/);
    expect(st.attention.join("\n")).toMatch(/1 snapshot\(s\) are from the future .*20270218T003000Z/);
  });

  it("when every snapshot is from the future, status says so and tick takes a new full", async () => {
    const w = await world();
    await w.tick();
    w.set(w.now() - 60 * 24 * HOUR); // the clock was corrected two months back
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.newestFull).toBeNull();
    expect(st.attention.join("\n")).toMatch(/every snapshot is from the future .*tick takes a new full/);
    const r = await w.tick();
    expect(r.outcomes[0]).toMatchObject({ ok: true, action: "full" });
    expect(r.outcomes[0]!.reason).toMatch(/1 snapshot\(s\) from the future \(ahead of the clock\) ignored/);
    // prune (the policy's numbers) kept the future one and the new full
    expect((await listSnapshots(w.fs, "/backups", "alpha")).length).toBe(2);
  });
});

describe("status and integrity", () => {
  async function ticked() {
    const w = await world(["alpha", "beta"]);
    await w.tick();
    w.set(w.now() + 2 * HOUR);
    await w.tick();
    expect((await w.status()).ok).toBe(true);
    return w;
  }
  const fullOf = async (w: Awaited<ReturnType<typeof world>>) =>
    (await listSnapshots(w.fs, "/backups", "alpha")).filter((s) => s.kind === "full").pop()!;

  it("a byte flipped in the newest full (size and mtime kept) needs attention", async () => {
    const w = await ticked();
    const full = await fullOf(w);
    const before = await w.fs.lstat(full.artifactPath);
    w.fs.flipByte(full.artifactPath, Math.floor(before.size / 2), 0x10);
    const after = await w.fs.lstat(full.artifactPath);
    expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.chain.ok).toBe(false);
    expect(st.chain.detail).toMatch(/no longer matches its checksum/);
    // and tick does not extend that chain: it takes a full instead
    w.set(w.now() + HOUR);
    const o = (await w.tick()).outcomes.find((x) => x.context === "alpha")!;
    expect(o).toMatchObject({ ok: true, action: "full" });
    expect(o.reason).toMatch(/took a full instead of an incremental/);
  });

  it("a removed .sha256 of the newest full needs attention", async () => {
    const w = await ticked();
    await w.fs.rm(`${(await fullOf(w)).artifactPath}.sha256`);
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.attention.join("\n")).toMatch(/no readable checksum file/);
  });

  it("a vanished context folder needs attention, and status still lists it", async () => {
    const w = await ticked();
    await w.fs.rename("/state/contexts/alpha", "/lost-alpha");
    expect(await fleetContexts(w.fs, "/state", "/backups")).toEqual(["alpha", "beta"]);
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.attention.join("\n")).toMatch(/context folder \/state\/contexts\/alpha is missing/);
  });

  it("a context folder that is a symbolic link is not read through, fails its tick and needs attention", async () => {
    const w = await ticked();
    await w.fs.rename("/state/contexts/alpha", "/elsewhere");
    w.fs.symlink("/elsewhere", "/state/contexts/alpha");
    expect(await fleetContexts(w.fs, "/state", "/backups")).toEqual(["alpha", "beta"]);
    w.set(w.now() + 2 * HOUR);
    const r = await w.tick();
    expect(r.exitCode).toBe(7);
    const alpha = r.outcomes.find((o) => o.context === "alpha")!;
    expect(alpha).toMatchObject({ ok: false, error: { code: "PAAS_BACKUP_CONTEXT_NOT_A_FOLDER" } });
    expect(alpha.error!.message).toMatch(/symbolic link, not a folder: it is not backed up/);
    expect(r.outcomes.find((o) => o.context === "beta")).toMatchObject({ ok: true, action: "incremental" });
    const st = await w.status();
    expect(st.ok).toBe(false);
    expect(st.attention.join("\n")).toMatch(/is a symbolic link: paas-backup never reads through links/);
  });

  it("the chain check re-reads a large link the cache vouches for, one link a run, within hours", async () => {
    const w = await ticked();
    const all = await listSnapshots(w.fs, "/backups", "alpha");
    const newest = all[all.length - 1]!;
    const full = await fullOf(w);
    // treat every link as large: only the rotation re-reads it
    const check = (at: number) =>
      verifyChainCached(w.fs, "/backups", newest, all, {
        now: new Date(at),
        write: { nonce: "t" },
        cheapRehashBytes: 0,
      });
    expect(await check(w.now())).toBeNull(); // reads and remembers every link
    w.fs.flipByte(full.artifactPath, 100, 0x01);
    expect(await check(w.now() + HOUR)).toBeNull(); // vouched for, read an hour ago
    expect(await check(w.now() + 7 * HOUR)).toMatch(/no longer matches its checksum/); // its deep check came
  });
});

describe("retention over time", () => {
  it("tick with the policy's numbers keeps the incremental it just took", async () => {
    const w = await world();
    await w.tick();
    w.set(w.now() + HOUR + 23 * 60_000);
    const r = await w.tick();
    const inc = r.outcomes[0]!.snapshot!.id;
    expect(r.outcomes[0]!.pruned).not.toContain(inc);
    expect((await listSnapshots(w.fs, "/backups", "alpha")).map((s) => s.id)).toContain(inc);
  });

  it("tick --all-contexts applies the target's retention to a context whose folder vanished (and to one that became a link), and names it vanished", async () => {
    const w = await world(["alpha", "beta", "gamma"]);
    const storage = new MemoryStorage("memory://offsite", false, w.clock);
    const target: OffsiteTarget = { name: "offsite", storage, retention: POLICY, allowPlaintext: true };
    const afterEach = (context: string) =>
      offsiteAfterTick({ fs: w.fs, backupRoot: "/backups", context, targets: [target], clock: w.clock });
    const copies = (context: string) =>
      [...storage.objects.keys()]
        .flatMap((k) => new RegExp(`^roots/[0-9a-f]+/${context}/(.+)\\.tar\\.gz$`).exec(k)?.[1] ?? [])
        .sort();
    // twenty days of daily fulls pushed for every context, the target's retention not yet applied
    // (the daily maintenance's push alone): twenty copies each
    for (let day = 0; day < 20; day++) {
      expect((await w.tick()).exitCode).toBe(0);
      for (const context of ["alpha", "beta", "gamma"])
        await pushOffsite({ fs: w.fs, backupRoot: "/backups", context, target, clock: w.clock });
      w.set(w.now() + 24 * HOUR);
    }
    expect(copies("beta")).toHaveLength(20);
    // beta's folder vanishes (a lost disk under the state root, or a retired context); gamma's
    // becomes a symbolic link; the backup root still holds both
    await w.fs.rename("/state/contexts/beta", "/lost-beta");
    await w.fs.rename("/state/contexts/gamma", "/elsewhere-gamma");
    w.fs.symlink("/elsewhere-gamma", "/state/contexts/gamma");
    const newest = { beta: copies("beta").at(-1)!, gamma: copies("gamma").at(-1)! };
    const last = await w.tick({ afterEach });
    // gamma cannot be backed up: the tick says so (exit 7); beta is named vanished, not a failure
    expect(last.exitCode).toBe(7);
    const beta = last.outcomes.find((o) => o.context === "beta")!;
    expect([beta.ok, beta.vanished, beta.action, beta.snapshot]).toEqual([true, true, "none", null]);
    expect(beta.reason).toContain("/state/contexts/beta is gone");
    expect(beta.reason).toContain("age out by each target's retention");
    expect(last.vanished).toEqual(["beta"]);
    expect(last.outcomes.find((o) => o.context === "gamma")!.error?.code).toBe(
      "PAAS_BACKUP_CONTEXT_NOT_A_FOLDER",
    );
    for (const context of ["beta", "gamma"] as const) {
      const ids = copies(context);
      // the target holds exactly what its retention keeps of the copies' own dates (7 daily, 4
      // weekly, 3 monthly of twenty days), the newest copy still there: none deleted because the
      // live folder is gone
      const plan = planRetention({
        snapshots: ids.map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
        policy: POLICY,
      });
      expect(plan.remove).toEqual([]);
      expect(ids.length).toBeGreaterThanOrEqual(7);
      expect(ids.length).toBeLessThan(20);
      expect(ids).toContain(newest[context]);
    }
    // status names the vanished context and that its copies age out by the targets' retention
    const st = await w.status("beta", [target]);
    expect(st.ok).toBe(false);
    expect(st.attention.join(" ")).toMatch(/missing \(vanished\).*age out by each target's retention/);
  });

  it("tick applies the target's retention offsite; a lost root's copies age out by the same rule, none because its local full is gone", async () => {
    const w = await world();
    const storage = new MemoryStorage("memory://offsite", false, w.clock);
    const target: OffsiteTarget = { name: "offsite", storage, retention: POLICY, allowPlaintext: true };
    // another backup root (a disk since lost) pushed ten daily fulls of alpha to the same target
    for (let day = 0; day < 10; day++) {
      await createSnapshot({
        fs: w.fs,
        stateRoot: "/state",
        backupRoot: "/lost-root",
        context: "alpha",
        clock: w.clock,
        insecurePlaintext: true,
      });
      await pushOffsite({ fs: w.fs, backupRoot: "/lost-root", context: "alpha", target, clock: w.clock });
      w.set(w.now() + 24 * HOUR);
    }
    await w.fs.rm("/lost-root", { recursive: true });
    const afterEach = (context: string) =>
      offsiteAfterTick({ fs: w.fs, backupRoot: "/backups", context, targets: [target], clock: w.clock });
    for (let i = 0; i < 45 * 2; i++) {
      const r = await w.tick({ afterEach });
      expect(r.exitCode).toBe(0);
      w.set(w.now() + 12 * HOUR);
    }
    const byRoot = new Map<string, string[]>();
    for (const key of storage.objects.keys()) {
      const m = /^roots\/([0-9a-f]+)\/alpha\/(.+)\.tar\.gz$/.exec(key);
      if (m) byRoot.set(m[1]!, [...(byRoot.get(m[1]!) ?? []), m[2]!]);
    }
    expect(byRoot.size).toBe(2);
    for (const [, ids] of byRoot) {
      const plan = planRetention({
        snapshots: ids.map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
        policy: POLICY,
      });
      expect(plan.remove).toEqual([]);
    }
    const counts = [...byRoot.values()].map((ids) => ids.length).sort((a, b) => a - b);
    // the lost root's ten dailies: trimmed to the policy's set of its own dates (the last 7 days, the
    // newest of each week and month), none deleted for want of a local full
    expect(counts[0]).toBe(8);
    // this root's 45 dailies: 7 daily + weekly + monthly, not 45
    expect(counts[1]).toBeGreaterThanOrEqual(7);
    expect(counts[1]).toBeLessThanOrEqual(14);
    // a prune run by hand finds nothing left to do
    const again = await pruneOffsite({
      fs: w.fs,
      backupRoot: "/backups",
      context: "alpha",
      target,
      clock: w.clock,
    });
    expect(again.remove).toEqual([]);
    expect(again.otherRoots.flatMap((r) => r.remove)).toEqual([]);
  });

  it("a push does not send back a full whose copy the target's retention removed: a tagged full kept at home is not re-sent after every offsite prune", async () => {
    const w = await world();
    const storage = new MemoryStorage("memory://offsite", false, w.clock);
    // plaintext snapshots go as they are (encryption on push is tested on its own)
    const target: OffsiteTarget = { name: "offsite", storage, retention: POLICY, allowPlaintext: true };
    const push = () =>
      pushOffsite({ fs: w.fs, backupRoot: "/backups", context: "alpha", target, clock: w.clock });
    // the operator's "before the upgrade" full, kept at home beyond the slots by retention.keepTags
    const tagged = await createSnapshot({
      fs: w.fs,
      stateRoot: "/state",
      backupRoot: "/backups",
      context: "alpha",
      clock: w.clock,
      insecurePlaintext: true,
      tags: ["pre-upgrade"],
    });
    await push();
    // five months of daily fulls: the target's 7/4/3 no longer keeps the tagged one
    for (let day = 0; day < 150; day++) {
      w.set(w.now() + 24 * HOUR);
      await w.tick({ keepTags: ["pre-upgrade"] });
    }
    expect((await listSnapshots(w.fs, "/backups", "alpha")).map((s) => s.id)).toContain(tagged.id);
    const copies = () =>
      [...storage.objects.keys()].flatMap((k) => /\/alpha\/(.+)\.tar\.gz$/.exec(k)?.[1] ?? []).sort();
    await push();
    await pruneOffsite({ fs: w.fs, backupRoot: "/backups", context: "alpha", target, clock: w.clock });
    const pruned = copies();
    expect(pruned).not.toContain(tagged.id);
    // the next push (the daily maintenance's) leaves the target as its retention wants it
    const again = await push();
    expect(again.pushed.map((c) => c.id)).toEqual([]);
    expect(again.removedByRetention).toEqual([tagged.id]);
    expect(copies()).toEqual(pruned);
    const plan = planRetention({
      snapshots: copies().map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
      policy: POLICY,
      now: w.clock(),
    });
    expect(plan.remove).toEqual([]);
  });
});
