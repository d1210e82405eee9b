import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot } from "@paas-backup/testing";
import { createSnapshot, pushOffsite } from "../src/index.js";
import { fetchChainFromOffsite, listOffsite, type OffsiteTarget } from "../src/offsite/offsite.js";
import { listSnapshots, readRepositoryIdentity } from "../src/repository/index.js";

/**
 * Issue 20 §2, "After a lost disk, offsite copies are hard to find": a fresh backup root has a
 * new identity, and the copies the lost root pushed sit under the lost root's id. When exactly one
 * root at the target holds the context and id, restore --from-offsite uses it and says so;
 * otherwise it names the roots and --offsite-root.
 */
const CTX = "alpha";

async function world() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/state",
    contexts: [{ name: CTX, eventBytes: 2_000 }],
    plantSecrets: false,
  });
  let now = Date.parse("2026-11-20T00:30:00Z");
  const clock = () => new Date(now);
  fs.now = now;
  const advance = (ms: number) => {
    now += ms;
    fs.now = now;
  };
  // plaintext snapshots, copied as they are: the target allows it (issue 21 §5)
  const target: OffsiteTarget = {
    name: "nfs",
    storage: new MemoryStorage("memory://nfs", false, clock),
    allowPlaintext: true,
  };
  /** a host's backup root: a full of alpha pushed to the target; its id and root id */
  const host = async (backupRoot: string, hostName: string) => {
    const snap = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot,
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    await pushOffsite({ fs, backupRoot, context: CTX, target, clock, host: hostName });
    return { id: snap.id, root: (await readRepositoryIdentity(fs, backupRoot))!.id };
  };
  const fetch = (snapshot: string, root?: string) =>
    fetchChainFromOffsite({
      fs,
      backupRoot: "/fresh",
      context: CTX,
      target,
      snapshot,
      clock,
      ...(root ? { root } : {}),
    });
  return { fs, clock, advance, target, host, fetch };
}

describe("restore --from-offsite after a lost disk", () => {
  it("uses the one root at the target that holds the snapshot, and says which", async () => {
    const w = await world();
    const lost = await w.host("/lost", "web-1");
    await w.fs.rm("/lost", { recursive: true }); // the disk is gone
    w.advance(3600_000);
    // the fresh root is empty: offsite list names the root that holds copies of the context
    const listed = await listOffsite({
      fs: w.fs,
      backupRoot: "/fresh",
      context: CTX,
      target: w.target,
      clock: w.clock,
    });
    expect(listed.entries).toEqual([]);
    expect(listed.otherRoots).toEqual([{ id: lost.root, host: "web-1", copies: 1, newest: lost.id }]);

    const plan = await w.fetch(lost.id);
    expect(plan).toMatchObject({ asked: lost.id, chosen: lost.id, fetched: [lost.id] });
    expect(plan.root).toMatchObject({ id: lost.root, host: "web-1" });
    expect(plan.root!.why).toMatch(/only backup root at the target that holds it/);
    // fetched into the fresh root, checksum checked: the restore reads it from there
    expect((await listSnapshots(w.fs, "/fresh", CTX)).map((s) => s.id)).toEqual([lost.id]);
  });

  it("latest, on a root with nothing of the context, is the only holder's newest", async () => {
    const w = await world();
    const lost = await w.host("/lost", "web-1");
    const plan = await w.fetch("latest");
    expect(plan).toMatchObject({ chosen: lost.id, root: { id: lost.root } });
  });

  it("with two roots holding the id, names both and --offsite-root; --offsite-root picks one", async () => {
    const w = await world();
    const a = await w.host("/lost-a", "web-1");
    const b = await w.host("/lost-b", "web-2"); // same second: the same id, another root
    expect(b.id).toBe(a.id);
    const refused = await w.fetch(a.id).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: "PAAS_BACKUP_OFFSITE_ROOT_AMBIGUOUS",
      exitCode: 2,
      data: {
        roots: [a, b]
          .sort((x, y) => (x.root < y.root ? -1 : 1))
          .map((r) => ({ id: r.root, host: r.root === a.root ? "web-1" : "web-2", snapshot: a.id })),
      },
    });
    const message = (refused as Error).message;
    expect(message).toContain(`${a.root} (host web-1)`);
    expect(message).toContain(`${b.root} (host web-2)`);
    expect((refused as { remediation: string }).remediation).toMatch(/--offsite-root <root id>/);
    // nothing was fetched
    expect(await listSnapshots(w.fs, "/fresh", CTX)).toEqual([]);

    const picked = await w.fetch(a.id, b.root);
    expect(picked).toMatchObject({
      chosen: a.id,
      fetched: [a.id],
      root: { id: b.root, why: "named by --offsite-root" },
    });
  });

  it("an id no root holds is not found, and points at offsite list --all-roots", async () => {
    const w = await world();
    await w.host("/lost", "web-1");
    await expect(w.fetch("20261101T000000Z")).rejects.toMatchObject({
      code: "PAAS_BACKUP_SNAPSHOT_NOT_FOUND",
      remediation: expect.stringContaining("offsite list --context alpha --all-roots"),
    });
  });
});
