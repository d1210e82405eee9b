import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot, appendEvents } from "@paas-backup/testing";
import {
  createSnapshot,
  verifySnapshots,
  ageEncryptor,
  ageDecryptor,
  ExitCode,
  UsageError,
} from "../src/index.js";
import { generateIdentityFile } from "../src/archive/age-entry.js";

const CTX = "internal-dogfood";

async function twoSnapshots(encrypted = false) {
  const fs = new MemoryFileSystem();
  const sr = await createStateRoot({
    fs,
    root: "/s",
    contexts: [{ name: CTX, eventBytes: 10_000 }],
    plantSecrets: false,
  });
  let t = Date.parse("2026-11-24T00:00:00Z");
  const clock = () => new Date((t += 3600_000));
  const key = await generateIdentityFile(new Date());
  const enc = encrypted ? { encryptor: ageEncryptor([key.recipient]) } : { insecurePlaintext: true };
  const full = await createSnapshot({ fs, stateRoot: "/s", backupRoot: "/b", context: CTX, clock, ...enc });
  await appendEvents(fs, `${sr.contextDir(CTX)}/events/audit.jsonl`, "audit", CTX, 2_000, new Date(), 50_000);
  fs.now += 1;
  const inc = await createSnapshot({
    fs,
    stateRoot: "/s",
    backupRoot: "/b",
    context: CTX,
    clock,
    kind: "incremental",
    ...enc,
  });
  return { fs, full, inc, decryptor: ageDecryptor([key.identity]) };
}

describe("verifySnapshots", () => {
  it("verifies every snapshot, its chain and (deep) its replayed contents", async () => {
    const { fs, full, inc } = await twoSnapshots();
    const r = await verifySnapshots({ fs, backupRoot: "/b", context: CTX, snapshot: "all", deep: true });
    expect(r.map((v) => [v.id, v.kind, v.checksum, v.chainOk, v.ok])).toEqual([
      [full.id, "full", "verified", true, true],
      [inc.id, "incremental", "verified", true, true],
    ]);
    expect(r[1]!.chain).toEqual([full.id, inc.id]);
    expect(r[1]!.deep).toMatchObject({ ok: true, files: full.files, error: null });
  });

  it("a corrupt full fails its checksum and breaks the incremental built on it (exit 3 for the deep check)", async () => {
    const { fs, full, inc } = await twoSnapshots();
    const data = Buffer.from(await fs.readFile(full.artifact));
    data[data.length >> 1] ^= 0xff;
    await fs.writeFile(full.artifact, data, { mode: 0o600 });
    const r = await verifySnapshots({ fs, backupRoot: "/b", context: CTX, snapshot: "all", deep: true });
    expect(r[0]).toMatchObject({ id: full.id, checksum: "mismatch", ok: false });
    expect(r[1]).toMatchObject({ id: inc.id, checksum: "verified", chainOk: false, ok: false });
    expect(r[1]!.chainProblem).toBe(`link ${full.id}: mismatch`);
    expect(r[1]!.deep?.error).toMatchObject({
      code: "PAAS_BACKUP_CHAIN_BROKEN",
      exitCode: ExitCode.integrity,
    });
  });

  it("reports an artifact others can read, and refuses an unknown snapshot id as a usage error", async () => {
    const { fs, inc } = await twoSnapshots();
    await fs.chmod(inc.artifact, 0o644);
    const [v] = await verifySnapshots({ fs, backupRoot: "/b", context: CTX, snapshot: "latest" });
    expect(v).toMatchObject({
      id: inc.id,
      checksum: "verified",
      ok: false,
      access: ["artifact mode 644 lets others read it (want 600)"],
    });
    await expect(
      verifySnapshots({ fs, backupRoot: "/b", context: CTX, snapshot: "20990101T000000Z" }),
    ).rejects.toBeInstanceOf(UsageError);
  });

  it("an encrypted chain verifies deep with its identity, and says so when the identity is missing", async () => {
    const { fs, decryptor } = await twoSnapshots(true);
    const withKey = await verifySnapshots({
      fs,
      backupRoot: "/b",
      context: CTX,
      snapshot: "all",
      deep: true,
      decryptor,
    });
    expect(withKey.every((v) => v.ok && v.deep?.ok)).toBe(true);
    const withoutKey = await verifySnapshots({
      fs,
      backupRoot: "/b",
      context: CTX,
      snapshot: "latest",
      deep: true,
    });
    expect(withoutKey[0]!.checksum).toBe("verified"); // checksums need no key
    expect(withoutKey[0]!.deep?.error).toMatchObject({
      code: "PAAS_BACKUP_IDENTITY_REQUIRED",
      exitCode: ExitCode.safety,
    });
  });
});
