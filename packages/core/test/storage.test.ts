import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot, appendEvents } from "@paas-backup/testing";
import { createSnapshot } from "../src/index.js";
import {
  listSnapshots,
  listSnapshotsIn,
  checkSnapshotChecksum,
  chainOf,
  backupRootStorage,
} from "../src/repository/index.js";
import { materializeChain } from "../src/restore/index.js";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";

const CTX = "internal-dogfood";

describe("one repository logic over every storage driver", () => {
  it("lists, checks and replays the same snapshots from the backup root and from a bucket", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 20_000 }],
      plantSecrets: false,
    });
    let t = Date.parse("2026-11-24T00:00:00Z");
    const clock = () => new Date((t += 3600_000));
    await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    await appendEvents(
      fs,
      `${sr.contextDir(CTX)}/events/audit.jsonl`,
      "audit",
      CTX,
      3_000,
      new Date(),
      90_000,
    );
    fs.now += 1;
    await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
      kind: "incremental",
    });

    // Copy every object of the backup root into a bucket, key for key.
    const bucket = new MemoryStorage("memory://bucket", false, clock);
    const home = backupRootStorage(fs, "/b");
    for await (const o of home.list(`${CTX}/`, { shallow: true })) {
      const data = Buffer.from(await fs.readFile(`/b/${o.key}`));
      await bucket.put(o.key, Readable.from([data]), {
        sha256: createHash("sha256").update(data).digest("hex"),
        size: data.length,
      });
    }
    const local = await listSnapshots(fs, "/b", CTX);
    const remote = await listSnapshotsIn(bucket, CTX);
    expect(remote.map((r) => [r.id, r.kind, r.parent?.id ?? null, r.bytes])).toEqual(
      local.map((r) => [r.id, r.kind, r.parent?.id ?? null, r.bytes]),
    );
    expect(remote[1]!.artifactPath).toBe(`memory://bucket/${CTX}/${remote[1]!.id}.tar.gz`);
    for (const r of remote) expect((await checkSnapshotChecksum(r)).state).toBe("verified");

    const fromHome = await materializeChain({ fs, chain: chainOf(local[1]!, local).chain, target: null });
    const fromBucket = await materializeChain({ fs, chain: chainOf(remote[1]!, remote).chain, target: null });
    expect(fromBucket.files).toEqual(fromHome.files);
    expect(fromBucket.files.length).toBe(10);

    // Damage in the bucket is seen by the same code.
    const key = remote[0]!.artifactKey;
    bucket.objects.get(key)!.data[20] ^= 1;
    expect((await checkSnapshotChecksum((await listSnapshotsIn(bucket, CTX))[0]!)).state).toBe("mismatch");
  });
});
