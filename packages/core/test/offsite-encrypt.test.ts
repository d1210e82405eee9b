import { describe, it, expect } from "vitest";
import { Readable } from "node:stream";
import { MemoryFileSystem, MemoryStorage, createStateRoot } from "@paas-backup/testing";
import { createSnapshot, PaasBackupError } from "../src/index.js";
import { ageDecryptor, ageEncryptor, generateIdentityFile } from "../src/archive/index.js";
import { offsiteAfterTick, pushOffsite, verifyOffsite, type OffsiteTarget } from "../src/offsite/offsite.js";

/** Issue 21 §5 on the memory filesystem: a plaintext snapshot leaves the host encrypted, or not at all. */
const CTX = "internal-dogfood";
const at = new Date("2026-06-01T01:00:00Z");
const clock = () => at;

async function plaintextSnapshot() {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/s",
    contexts: [{ name: CTX, eventBytes: 5_000 }],
    plantSecrets: false,
  });
  const snap = await createSnapshot({
    fs,
    stateRoot: "/s",
    backupRoot: "/b",
    context: CTX,
    clock,
    insecurePlaintext: true,
  });
  return { fs, snap };
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("offsite push of a snapshot that is plaintext at home", () => {
  it("encrypts it to the recipients: the target holds the age file and its own checksum, which verify compares against", async () => {
    const { fs, snap } = await plaintextSnapshot();
    const key = await generateIdentityFile(at);
    const bucket = new MemoryStorage("memory://b", false, clock);
    const target: OffsiteTarget = { name: "b", storage: bucket };
    const r = await pushOffsite({
      fs,
      backupRoot: "/b",
      context: CTX,
      target,
      clock,
      encryptor: ageEncryptor([key.recipient]),
    });
    const copy = r.pushed[0]!;
    expect(copy).toMatchObject({ id: snap.id, encryptedOnPush: true, sourceSha256: snap.sha256 });
    expect(copy.artifact.endsWith(`${snap.id}.tar.gz.age`)).toBe(true);
    expect([...bucket.objects.keys()].filter((k) => k.endsWith(".tar.gz"))).toEqual([]);
    const stored = bucket.objects.get(copy.artifact)!.data;
    expect(copy.sha256).not.toBe(snap.sha256);
    expect(Buffer.from(bucket.objects.get(`${copy.artifact}.sha256`)!.data).toString()).toBe(
      `${copy.sha256}  ${snap.id}.tar.gz.age\n`,
    );
    // the identity opens it to the home artifact's exact bytes
    const plain = await bytesOf(
      Readable.from([Buffer.from(stored)]).pipe(ageDecryptor([key.identity]).decrypt()),
    );
    expect(plain.equals(Buffer.from(await fs.readFile(snap.artifact)))).toBe(true);
    // a second push finds it there by the home artifact it encrypts: nothing is sent again
    const again = await pushOffsite({
      fs,
      backupRoot: "/b",
      context: CTX,
      target,
      clock,
      encryptor: ageEncryptor([key.recipient]),
    });
    expect(again).toMatchObject({ pushed: [], alreadyThere: [snap.id] });
    // verify compares against the encrypted object's checksum
    expect(
      (await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target, clock, deep: true })).results[0]!.ok,
    ).toBe(true);
    bucket.objects.get(copy.artifact)!.data[60] ^= 1;
    const bad = await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target, clock, deep: true });
    expect(bad.results[0]!.ok).toBe(false);
    const healed = await pushOffsite({
      fs,
      backupRoot: "/b",
      context: CTX,
      target,
      clock,
      encryptor: ageEncryptor([key.recipient]),
    });
    expect(healed.repaired.map((x) => x.id)).toEqual([snap.id]);
    expect(
      (await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target, clock, deep: true })).results[0]!.ok,
    ).toBe(true);
  });

  it("a damaged encrypted copy is replaced by a plaintext one once the target says allowPlaintext, and goes: one artifact per id", async () => {
    const { fs, snap } = await plaintextSnapshot();
    const key = await generateIdentityFile(at);
    const bucket = new MemoryStorage("memory://b", false, clock);
    const encryptor = ageEncryptor([key.recipient]);
    const first = await pushOffsite({
      fs,
      backupRoot: "/b",
      context: CTX,
      target: { name: "b", storage: bucket },
      clock,
      encryptor,
    });
    const age = first.pushed[0]!.artifact;
    bucket.objects.get(age)!.data[60] ^= 1;
    const open: OffsiteTarget = { name: "b", storage: bucket, allowPlaintext: true };
    expect(
      (await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target: open, clock, deep: true }))
        .results[0]!.ok,
    ).toBe(false);
    const healed = await pushOffsite({ fs, backupRoot: "/b", context: CTX, target: open, clock, encryptor });
    expect(healed.repaired.map((r) => r.id)).toEqual([snap.id]);
    expect(healed.pushed[0]!.encryptedOnPush ?? false).toBe(false);
    const artifacts = [...bucket.objects.keys()].filter((k) => /\.tar\.gz(\.age)?$/.test(k));
    expect(artifacts).toEqual([age.replace(/\.age$/, "")]);
    expect(
      (await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target: open, clock, deep: true }))
        .results[0]!.ok,
    ).toBe(true);
  });

  it("without a recipient: refused with a named error (exit 4) and nothing sent; a target with allowPlaintext takes it as it is, and tick's step does both before it fails", async () => {
    const { fs, snap } = await plaintextSnapshot();
    const closed: OffsiteTarget = {
      name: "closed",
      storage: new MemoryStorage("memory://closed", false, clock),
    };
    const open: OffsiteTarget = {
      name: "open",
      storage: new MemoryStorage("memory://open", false, clock),
      allowPlaintext: true,
    };
    const err = await pushOffsite({ fs, backupRoot: "/b", context: CTX, target: closed, clock }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(PaasBackupError);
    expect(err).toMatchObject({ code: "PAAS_BACKUP_OFFSITE_NO_RECIPIENT", exitCode: 4 });
    expect(err.message).toContain(snap.id);
    expect(err.remediation).toMatch(/recipients.*allowPlaintext: true/);
    const closedKeys = [...(closed.storage as MemoryStorage).objects.keys()];
    expect(closedKeys.filter((k) => k.includes(".tar.gz"))).toEqual([]);
    const reported = await pushOffsite({
      fs,
      backupRoot: "/b",
      context: CTX,
      target: closed,
      clock,
      refusal: "report",
    });
    expect(reported.refused).toEqual([snap.id]);

    const tickErr = await offsiteAfterTick({
      fs,
      backupRoot: "/b",
      context: CTX,
      targets: [closed, open],
      clock,
    }).catch((e) => e);
    expect(tickErr).toMatchObject({ code: "PAAS_BACKUP_OFFSITE_NO_RECIPIENT" });
    // the open target was pushed all the same, in plaintext
    const openKeys = [...(open.storage as MemoryStorage).objects.keys()];
    expect(openKeys.some((k) => k.endsWith(`${snap.id}.tar.gz`))).toBe(true);
    expect(openKeys.some((k) => k.endsWith(".age"))).toBe(false);
  });
});
