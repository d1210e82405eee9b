import { describe, it, expect } from "vitest";
import {
  MemoryFileSystem,
  FaultInjectingFileSystem,
  createStateRoot,
  appendEvents,
} from "@paas-backup/testing";
import {
  createSnapshot,
  verifySnapshots,
  pruneSnapshots,
  restoreSnapshot,
  IntegrityError,
} from "../src/index.js";
import { listSnapshots, scanSnapshots } from "../src/repository/index.js";

const CTX = "internal-dogfood";

function clockFrom(start: string, stepMs = 3_700_000) {
  let t = Date.parse(start);
  return () => new Date((t += stepMs));
}

async function threeSnapshots() {
  const fs = new MemoryFileSystem();
  const sr = await createStateRoot({
    fs,
    root: "/state",
    contexts: [{ name: CTX, eventBytes: 5_000 }],
    plantSecrets: false,
  });
  const clock = clockFrom("2026-11-24T00:00:00Z");
  const base = {
    fs,
    stateRoot: "/state",
    backupRoot: "/b",
    context: CTX,
    clock,
    insecurePlaintext: true,
  } as const;
  const full = await createSnapshot(base);
  await appendEvents(fs, `${sr.contextDir(CTX)}/events/audit.jsonl`, "audit", CTX, 5, new Date(), 50_000);
  const inc1 = await createSnapshot({ ...base, kind: "incremental" });
  const full2 = await createSnapshot(base);
  return { fs, sr, clock, base, full, inc1, full2 };
}

describe("one bad snapshot never stops a context", () => {
  it("a damaged sidecar manifest gets its own error in list and verify; prune, snapshots and other restores go on", async () => {
    const { fs, base, full, inc1, full2 } = await threeSnapshots();
    await fs.writeFile(inc1.manifestFile, '{"format": "paas-backup-manifest@1", "id": "'); // torn
    const { snapshots, damaged } = await scanSnapshots(fs, "/b", CTX);
    expect(snapshots.map((s) => s.id)).toEqual([full.id, full2.id]);
    expect(damaged).toHaveLength(1);
    expect(damaged[0]).toMatchObject({ id: inc1.id, error: { code: "PAAS_BACKUP_MANIFEST_INVALID" } });
    expect(damaged[0]!.error.message).toContain(inc1.manifestFile);

    const verified = await verifySnapshots({
      fs,
      backupRoot: "/b",
      context: CTX,
      snapshot: "all",
      deep: true,
    });
    expect(verified.map((v) => [v.id, v.ok, v.kind])).toEqual([
      [full.id, true, "full"],
      [inc1.id, false, "unknown"],
      [full2.id, true, "full"],
    ]);
    expect(verified[1]!.manifestError?.code).toBe("PAAS_BACKUP_MANIFEST_INVALID");
    expect(verified[1]!.checksum).toBe("verified"); // the artifact itself is fine; only its manifest is not

    const next = await createSnapshot({ ...base, kind: "incremental" });
    expect(next).toMatchObject({ kind: "incremental", parent: { id: full2.id } });
    const pruned = await pruneSnapshots({
      fs,
      backupRoot: "/b",
      context: CTX,
      clock: base.clock,
      policy: { hourly: 1, daily: 1, weekly: 0, monthly: 0 },
    });
    expect(pruned.removed).toContain(full.id);
    expect(fs.files("/b").filter((f) => f.includes(inc1.id))).toHaveLength(3); // never pruned on unknown data

    const restored = await restoreSnapshot({
      fs,
      stateRoot: "/restored",
      backupRoot: "/b",
      context: CTX,
      snapshot: full2.id,
      ticket: "T-1",
      operator: "unit",
      clock: base.clock,
    });
    expect(restored.outcome).toBe("restored");
    const refused = await restoreSnapshot({
      fs,
      stateRoot: "/restored2",
      backupRoot: "/b",
      context: CTX,
      snapshot: inc1.id,
      ticket: "T-2",
      operator: "unit",
      clock: base.clock,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(IntegrityError);
    expect(refused).toMatchObject({ code: "PAAS_BACKUP_MANIFEST_INVALID" });
    expect((refused as IntegrityError).remediation).toContain(next.id);
  });

  it("an I/O error reading a manifest is not damage: the listing fails instead of calling the snapshot broken", async () => {
    const { fs, inc1 } = await threeSnapshots();
    const counting = new FaultInjectingFileSystem(fs);
    await scanSnapshots(counting, "/b", CTX);
    const read = counting.log.find(
      (c) => c.path === inc1.manifestFile && (c.op === "createReadStream" || c.op === "readFile"),
    );
    expect(read).toBeDefined();
    const failing = new FaultInjectingFileSystem(fs, { at: read!.n, mode: "throw", code: "EIO" });
    await expect(scanSnapshots(failing, "/b", CTX)).rejects.toMatchObject({ code: "EIO" });
  });

  it("an incremental is not added to a chain whose full no longer verifies: a full is taken and says why", async () => {
    const { fs, base, full2 } = await threeSnapshots();
    const inc = await createSnapshot({ ...base, kind: "incremental" });
    expect(inc.kind).toBe("incremental");
    // corrupt the chain's full (same size, new bytes)
    const bytes = Buffer.from(await fs.readFile(full2.artifact));
    bytes[bytes.length >> 1] ^= 0xff;
    fs.now += 1000;
    await fs.writeFile(full2.artifact, bytes);
    const promoted = await createSnapshot({ ...base, kind: "incremental" });
    expect(promoted.kind).toBe("full");
    expect(promoted.promotedToFull).toMatch(
      new RegExp(`chain it would extend does not verify: link ${full2.id} no longer matches its checksum`),
    );
    const after = await createSnapshot({ ...base, kind: "incremental" });
    expect(after).toMatchObject({ kind: "incremental", parent: { id: promoted.id } });
  });

  it("a small link is re-read by every incremental, so bit rot that keeps its size and mtime is found", async () => {
    // issue 20: the (sha256, size, mtime) cache once let a flipped byte pass; links up to
    // CHEAP_REHASH_BYTES are cheap to read again, and larger ones rotate through a deep check
    // (over-time.test.ts).
    const { fs, base, full2 } = await threeSnapshots();
    await createSnapshot({ ...base, kind: "incremental" }); // verifies full2 and caches it
    const counting = new FaultInjectingFileSystem(base.fs);
    await createSnapshot({ ...base, fs: counting, kind: "incremental" });
    const artifactReads = counting.log.filter(
      (c) => (c.op === "createReadStream" || c.op === "readFile") && c.path === full2.artifact,
    );
    expect(artifactReads.length).toBeGreaterThan(0);
    fs.flipByte(full2.artifact, 100);
    const promoted = await createSnapshot({ ...base, kind: "incremental" });
    expect(promoted.kind).toBe("full");
    expect(promoted.promotedToFull).toMatch(new RegExp(`link ${full2.id} no longer matches its checksum`));
  });
});
