import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { MemoryStorage } from "@paas-backup/testing";
import { createSnapshot, pushOffsite } from "../src/index.js";
import { verifyOffsite } from "../src/offsite/offsite.js";
import {
  ensureIdentityIn,
  ensureRepositoryIdentity,
  readIdentityIn,
  readRepositoryIdentity,
  REPOSITORY_FILE,
} from "../src/repository/index.js";

const CTX = "internal-dogfood";

describe("offsite healing under Object Lock", () => {
  it("says so and keeps both when Object Lock forbids replacing a damaged copy", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 5_000 }],
      plantSecrets: false,
    });
    const at = new Date("2026-06-01T01:00:00Z");
    const clock = () => at;
    const snap = await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    const bucket = new MemoryStorage("memory://locked", true, clock);
    // plaintext snapshots are copied as they are only where the target allows it (issue 21 §5)
    const target = {
      name: "locked",
      storage: bucket,
      objectLock: { mode: "COMPLIANCE" as const, days: 30 },
      allowPlaintext: true,
    };
    const first = await pushOffsite({ fs, backupRoot: "/b", context: CTX, target, clock });
    expect(first.pushed[0]).toMatchObject({ id: snap.id, immutable: true });
    const key = first.pushed[0]!.artifact;
    const good = Buffer.from(bucket.objects.get(key)!.data);
    bucket.objects.get(key)!.data[40] ^= 1;
    const deep = await verifyOffsite({ fs, backupRoot: "/b", context: CTX, target, clock, deep: true });
    expect(deep.results[0]!.ok).toBe(false);
    const push = await pushOffsite({ fs, backupRoot: "/b", context: CTX, target, clock });
    expect(push.pushed).toEqual([]);
    expect(push.problems[0]!.problem).toMatch(
      /Object Lock forbids replacing it until 2026-07-01.*both are kept/,
    );
    // nothing was lost: the damaged copy is still there, the good one at home
    expect(bucket.objects.get(key)!.data.equals(good)).toBe(false);
    expect(push.copies[0]).toMatchObject({ id: snap.id, ok: false });
  });
});

describe("backup root identity", () => {
  it("is created once: racing creators agree on one id, and it is kept in the root", async () => {
    const fs = new MemoryFileSystem();
    const clock = () => new Date("2026-06-01T00:00:00Z");
    const ids = await Promise.all(
      Array.from({ length: 8 }, () => ensureRepositoryIdentity(fs, "/b", clock, "host-a")),
    );
    expect(new Set(ids.map((i) => i.id)).size).toBe(1);
    expect(ids[0]!.id).toMatch(/^[0-9a-f]{16}$/);
    expect((await readRepositoryIdentity(fs, "/b"))!.id).toBe(ids[0]!.id);
    expect(JSON.parse(Buffer.from(await fs.readFile(`/b/${REPOSITORY_FILE}`)).toString()).host).toBe(
      "host-a",
    );
    expect((await ensureRepositoryIdentity(new MemoryFileSystem(), "/b", clock)).id).not.toBe(ids[0]!.id);
  });

  it("is made through the repository's storage: racing creators on a bucket agree on the one create-only write", async () => {
    const bucket = new MemoryStorage("memory://identity");
    const clock = () => new Date("2026-06-01T00:00:00Z");
    expect(await readIdentityIn(bucket)).toBeNull();
    const ids = await Promise.all(Array.from({ length: 8 }, () => ensureIdentityIn(bucket, clock, "host-b")));
    expect(new Set(ids.map((i) => i.id)).size).toBe(1);
    expect(await readIdentityIn(bucket)).toMatchObject({ id: ids[0]!.id, host: "host-b" });
    const keys: string[] = [];
    for await (const o of bucket.list("")) keys.push(o.key);
    expect(keys).toEqual([REPOSITORY_FILE]);
  });
});
