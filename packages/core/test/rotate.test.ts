import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot, appendEvents } from "@paas-backup/testing";
import {
  createSnapshot,
  restoreSnapshot,
  verifySnapshots,
  ageEncryptor,
  ageDecryptor,
} from "../src/index.js";
import { generateIdentityFile } from "../src/archive/age-entry.js";
import { auditKey, listRotations, rotateRecipients, type RotationStep } from "../src/keys/index.js";
import { generateSigningKeyFile } from "../src/signing/sshsig.js";
import { checkSnapshotSignature } from "../src/signing/verify.js";
import { parseAllowedSigners } from "../src/signing/sshsig.js";
import { backupRootStorage, openRepository } from "../src/repository/repository.js";
import { pushOffsite } from "../src/offsite/push.js";
import { withContext } from "../src/context/session.js";

/** Issue 24 §3 on the memory fs: keys rotate re-encrypts, keeps chains and signatures whole, and resumes. */
const CTX = "internal-dogfood";

async function world() {
  const fs = new MemoryFileSystem();
  const sr = await createStateRoot({
    fs,
    root: "/s",
    contexts: [{ name: CTX, eventBytes: 10_000 }],
    plantSecrets: false,
  });
  let t = Date.parse("2026-11-24T00:00:00Z");
  const clock = () => new Date((t += 3600_000));
  const oldKey = await generateIdentityFile(new Date());
  const keep = await generateIdentityFile(new Date());
  const newKey = await generateIdentityFile(new Date());
  const { key: signer } = generateSigningKeyFile("host-a");
  const base = {
    fs,
    stateRoot: "/s",
    backupRoot: "/b",
    context: CTX,
    clock,
    encryptor: ageEncryptor([oldKey.recipient, keep.recipient]),
    signer,
  };
  const full = await createSnapshot(base);
  const incs = [];
  for (let i = 0; i < 2; i++) {
    await appendEvents(
      fs,
      `${sr.contextDir(CTX)}/events/audit.jsonl`,
      "audit",
      CTX,
      2_000,
      new Date(),
      50_000 + i,
    );
    fs.now += 1;
    incs.push(await createSnapshot({ ...base, kind: "incremental" }));
  }
  return { fs, sr, clock, oldKey, keep, newKey, signer, full, incs };
}

describe("keys rotate", () => {
  it("re-encrypts every snapshot to the new set: the removed key opens none, chains, signatures and restores hold", async () => {
    const w = await world();
    const target = { name: "mem", storage: new MemoryStorage() };
    await pushOffsite({ fs: w.fs, backupRoot: "/b", context: CTX, target, clock: w.clock });
    const before = await auditKey({
      fs: w.fs,
      backupRoot: "/b",
      contexts: [CTX],
      identities: [w.oldKey.identity],
      offsiteTargets: [target],
    });
    expect(before.opens).toHaveLength(4); // three at home, the full offsite

    const result = await rotateRecipients({
      fs: w.fs,
      backupRoot: "/b",
      context: CTX,
      add: [w.newKey.recipient],
      remove: [w.oldKey.recipient],
      identities: [w.oldKey.identity],
      clock: w.clock,
      signer: w.signer,
      offsiteTargets: [target],
    });
    expect(result.rotation.snapshots.map((s) => s.phase)).toEqual(["done", "done", "done"]);
    expect(result.rotation.offsite).toEqual([{ target: "mem", id: w.full.id, action: "replaced" }]);
    const after = await auditKey({
      fs: w.fs,
      backupRoot: "/b",
      contexts: [CTX],
      identities: [w.oldKey.identity],
      offsiteTargets: [target],
    });
    expect(after.opens).toEqual([]);
    expect(after.checked).toBe(4);
    const opensNew = await auditKey({
      fs: w.fs,
      backupRoot: "/b",
      contexts: [CTX],
      identities: [w.newKey.identity],
      offsiteTargets: [target],
    });
    expect(opensNew.opens).toHaveLength(4);

    const snaps = await openRepository(backupRootStorage(w.fs, "/b")).snapshots(CTX);
    // the sidecar carries the current set and the payload hash; the artifact changed, the payload did not
    for (const s of snaps) {
      expect(s.manifest!.encryption.recipients).toEqual([w.keep.recipient, w.newKey.recipient]);
      expect(s.manifest!.payloadSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(s.manifest!.rotations).toHaveLength(1);
      expect(s.manifest!.rotations![0]!.removed).toEqual([w.oldKey.recipient]);
    }
    expect(snaps[1]!.manifest!.parent!.payloadSha256).toBe(snaps[0]!.manifest!.payloadSha256);
    // the signatures were renewed by the rotating host
    const allowed = parseAllowedSigners(`host-a ${w.signer.publicKeyText}\n`);
    for (const s of snaps) expect((await checkSnapshotSignature(s, allowed)).state).toBe("signed");
    // every chain verifies with the parent's new sha256, and the newest restores with the new key only
    const verified = await verifySnapshots({
      fs: w.fs,
      backupRoot: "/b",
      context: CTX,
      snapshot: "all",
      deep: true,
      decryptor: ageDecryptor([w.newKey.identity]),
    });
    expect(verified.map((v) => [v.checksum, v.chainOk, v.deep?.ok])).toEqual(
      Array(3).fill(["verified", true, true]),
    );
    const restored = await restoreSnapshot({
      fs: w.fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      snapshot: "latest",
      ticket: "INC-ROT",
      operator: "op",
      clock: w.clock,
      decryptor: ageDecryptor([w.newKey.identity]),
      signatures: { allowedSigners: allowed },
    });
    expect(restored.ok).toBe(true);
    await expect(
      restoreSnapshot({
        fs: w.fs,
        stateRoot: "/s",
        backupRoot: "/b",
        context: CTX,
        snapshot: "latest",
        ticket: "INC-OLD",
        operator: "op",
        clock: w.clock,
        decryptor: ageDecryptor([w.oldKey.identity]),
        signatures: { allowedSigners: allowed },
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_WRONG_IDENTITY" });
    // a new incremental links to the rotated chain by the payload hash too
    const next = await createSnapshot({
      fs: w.fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock: w.clock,
      kind: "incremental",
      encryptor: ageEncryptor([w.keep.recipient, w.newKey.recipient]),
      signer: w.signer,
    });
    expect(next.kind).toBe("incremental");
    expect(next.parent).toMatchObject({ id: snaps[2]!.id, payloadSha256: snaps[2]!.manifest!.payloadSha256 });
  });

  it("stopped after any step, a rerun resumes and ends in the same place", async () => {
    const phases: string[] = [];
    for (let stopAt = 0; ; stopAt++) {
      const w = await world();
      let steps = 0;
      const opts = {
        fs: w.fs,
        backupRoot: "/b",
        context: CTX,
        add: [w.newKey.recipient],
        remove: [w.oldKey.recipient],
        identities: [w.oldKey.identity],
        clock: w.clock,
        signer: w.signer,
      };
      const stopped = await rotateRecipients({
        ...opts,
        onStep: (step: RotationStep) => {
          if (steps++ === stopAt) {
            phases.push(`${step.id.slice(-4)}:${step.phase}`);
            throw new Error("stop");
          }
        },
      }).then(
        () => false,
        (err: Error) => {
          if (err.message !== "stop") throw err;
          return true;
        },
      );
      if (!stopped) break;
      const [unfinished] = await listRotations(w.fs, "/b", CTX);
      expect(unfinished!.finishedAt).toBeNull();
      const resumed = await rotateRecipients(opts);
      expect(resumed.resumed).toBe(unfinished!.id);
      expect(resumed.rotation.snapshots.every((s) => s.phase === "done")).toBe(true);
      expect((await listRotations(w.fs, "/b", CTX)).map((r) => r.finishedAt !== null)).toEqual([true]);
      const audit = await auditKey({
        fs: w.fs,
        backupRoot: "/b",
        contexts: [CTX],
        identities: [w.oldKey.identity],
      });
      expect(audit.opens).toEqual([]);
      const verified = await verifySnapshots({
        fs: w.fs,
        backupRoot: "/b",
        context: CTX,
        snapshot: "all",
        deep: true,
        decryptor: ageDecryptor([w.newKey.identity]),
      });
      expect(verified.map((v) => [v.checksum, v.chainOk, v.deep?.ok])).toEqual(
        Array(3).fill(["verified", true, true]),
      );
      // no staged copy is left behind
      expect(w.fs.files("/b").filter((f) => f.includes("/rotations/") && !f.endsWith(".json"))).toEqual([]);
    }
    // three snapshots, three steps each (staged, committing, done)
    expect(phases).toHaveLength(9);
  });

  it("a commit killed halfway is finished by the next session of the context, without the key", async () => {
    const w = await world();
    const opts = {
      fs: w.fs,
      backupRoot: "/b",
      context: CTX,
      add: [w.newKey.recipient],
      remove: [w.oldKey.recipient],
      identities: [w.oldKey.identity],
      clock: w.clock,
      signer: w.signer,
    };
    await expect(
      rotateRecipients({
        ...opts,
        onStep: (step: RotationStep) => {
          if (step.phase === "committing") throw new Error("stop");
        },
      }),
    ).rejects.toThrow("stop");
    const [record] = await listRotations(w.fs, "/b", CTX);
    const step = record!.snapshots.find((s) => s.phase === "committing")!;
    // the commit's first write, as a kill right after it leaves things: new artifact, old checksum
    const staged = `/b/${CTX}/rotations/${record!.id}/${step.artifact}`;
    await w.fs.writeFile(`/b/${CTX}/${step.artifact}`, await w.fs.readFile(staged), { mode: 0o600 });
    const torn = await verifySnapshots({ fs: w.fs, backupRoot: "/b", context: CTX, snapshot: "all" });
    expect(torn[0]!.checksum).toBe("mismatch");
    // any command that opens the context's session (snapshot, tick, prune, restore, push) finishes it
    await withContext({ fs: w.fs, backupRoot: "/b", context: CTX, clock: w.clock }, async () => undefined);
    const healed = await verifySnapshots({ fs: w.fs, backupRoot: "/b", context: CTX, snapshot: "all" });
    expect(healed.map((v) => [v.checksum, v.chainOk])).toEqual(Array(3).fill(["verified", true]));
    expect((await listRotations(w.fs, "/b", CTX))[0]!.snapshots[0]!.phase).toBe("done");
    const resumed = await rotateRecipients(opts);
    expect(resumed.rotation.snapshots.every((s) => s.phase === "done")).toBe(true);
    const audit = await auditKey({
      fs: w.fs,
      backupRoot: "/b",
      contexts: [CTX],
      identities: [w.oldKey.identity],
    });
    expect(audit.opens).toEqual([]);
  });

  it("refuses what it cannot do safely, before touching anything", async () => {
    const w = await world();
    const base = {
      fs: w.fs,
      backupRoot: "/b",
      context: CTX,
      clock: w.clock,
      identities: [w.oldKey.identity],
    };
    await expect(rotateRecipients({ ...base, add: [], remove: [] })).rejects.toMatchObject({
      code: "PAAS_BACKUP_INVALID_ARGUMENT",
    });
    await expect(
      rotateRecipients({ ...base, add: [w.newKey.recipient], remove: [w.oldKey.recipient] }),
    ).rejects.toThrow(/is signed, and keys rotate rewrites what its signature covers/);
    await expect(
      rotateRecipients({
        ...base,
        signer: w.signer,
        add: [],
        remove: [w.oldKey.recipient, w.keep.recipient],
      }),
    ).rejects.toThrow(/leaves snapshot .* with no recipient/);
  });
});
