import { describe, it, expect } from "vitest";
import { MemoryStorage } from "@paas-backup/testing";
import {
  acquireLease,
  probeConditionalWrites,
  readFencedLog,
  readLeaseState,
  LocalStorage,
} from "../src/repository/index.js";
import type { ObjectStorage } from "../src/index.js";
import { MemoryFileSystem } from "@paas-backup/testing";

// The shared repository's single writers, on the in-memory bucket with a clock the test moves
// (the bucket's clock is the "server" clock leases are judged on). The same functions run on a
// real RGW bucket, from several processes, in packages/s3/test/fleet-rgw.test.ts.

const holder = (host: string) => ({ host, pid: 100, command: "tick" });

function bucket() {
  let now = Date.parse("2026-12-01T00:00:00Z");
  const storage = new MemoryStorage("memory://fleet", false, () => new Date(now));
  return { storage, advance: (ms: number) => (now += ms) };
}

describe("leases on create-only writes", () => {
  it("has one holder; a second is told who holds it (exit 6); a released lease goes to the next epoch", async () => {
    const { storage } = bucket();
    const a = await acquireLease({ storage, name: "context/oss-demo", holder: holder("h1"), ttlMs: 60_000 });
    expect(a.epoch).toBe(1);
    const busy = await acquireLease({
      storage,
      name: "context/oss-demo",
      holder: holder("h2"),
      ttlMs: 60_000,
    }).catch((e: unknown) => e);
    expect(busy).toMatchObject({
      code: "PAAS_BACKUP_LOCKED",
      exitCode: 6,
      data: { epoch: 1, holder: { host: "h1" } },
    });
    expect((busy as Error).message).toMatch(/leased by tick \(pid 100 on h1\), epoch 1/);
    await a.release();
    const b = await acquireLease({ storage, name: "context/oss-demo", holder: holder("h2"), ttlMs: 60_000 });
    expect(b.epoch).toBe(2);
    expect(b.tookOver).toBeNull();
    // a clean hand-over needs no fencing entry
    expect(await readFencedLog(storage, "context/oss-demo")).toEqual([]);
  });

  it("lets exactly one of many racing hosts take a free lease", async () => {
    const { storage } = bucket();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        acquireLease({ storage, name: "maintenance", holder: holder(`h${i}`), ttlMs: 60_000 }),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const r of results.filter((r) => r.status === "rejected"))
      expect((r as PromiseRejectedResult).reason.code).toBe("PAAS_BACKUP_LOCKED");
  });

  it("judges staleness on the server's clock: renewed, it holds; silent past its ttl, it is taken over", async () => {
    const { storage, advance } = bucket();
    const a = await acquireLease({ storage, name: "context/c1", holder: holder("h1"), ttlMs: 60_000 });
    advance(50_000);
    await a.renew();
    advance(50_000); // 100 s after taking it, 50 s after the renewal: still held
    await expect(
      acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 60_000 }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_LOCKED" });
    advance(11_000);
    const b = await acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 60_000 });
    expect(b).toMatchObject({ epoch: 2, tookOver: 1 });
    // the old holder finds out at its next renewal, and cannot commit
    await expect(a.renew()).rejects.toMatchObject({ code: "PAAS_BACKUP_LEASE_LOST", exitCode: 6 });
    await expect(a.commit({ snapshot: "late" })).rejects.toMatchObject({ code: "PAAS_BACKUP_LEASE_LOST" });
    // the holder's own longer ttl wins over a taker's shorter one
    const c = await acquireLease({ storage, name: "context/c2", holder: holder("h1"), ttlMs: 120_000 });
    advance(70_000);
    await expect(
      acquireLease({ storage, name: "context/c2", holder: holder("h2"), ttlMs: 60_000 }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_LOCKED" });
    expect(c.epoch).toBe(1);
  });

  it("fences a writer that paused between reading the log and committing: its commit is refused, not recorded", async () => {
    const { storage, advance } = bucket();
    const a = await acquireLease({ storage, name: "context/c1", holder: holder("h1"), ttlMs: 30_000 });
    await a.commit({ snapshot: "s1" });
    // pause a's next commit right before its create-only PUT, as a GC pause or SIGSTOP would
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    let reachedPut!: () => void;
    const atPut = new Promise<void>((r) => (reachedPut = r));
    const createOnly = storage.createOnly.bind(storage);
    let pauseOnce = true;
    storage.createOnly = async (key, body) => {
      if (pauseOnce && key.startsWith("log/") && body.includes('"h1-late"')) {
        pauseOnce = false;
        reachedPut();
        await paused;
      }
      return createOnly(key, body);
    };
    const late = a.commit({ snapshot: "h1-late" }).catch((e: unknown) => e);
    await atPut;
    advance(31_000);
    const b = await acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 30_000 });
    const s2 = await b.commit({ snapshot: "s2" });
    resume();
    expect(await late).toMatchObject({ code: "PAAS_BACKUP_LEASE_LOST", data: { epoch: 1, takenBy: 2 } });
    const log = await readFencedLog(storage, "context/c1");
    expect(log.map((e) => [e.seq, e.epoch, e.kind, e.data.snapshot ?? null, e.fenced])).toEqual([
      [1, 1, "commit", "s1", false],
      [2, 2, "begin", null, false],
      [3, 2, "commit", "s2", false],
    ]);
    expect(s2.seq).toBe(3);
  });

  it("marks as fenced, for readers, a commit that lands behind a later epoch's begin", async () => {
    const { storage, advance } = bucket();
    const a = await acquireLease({ storage, name: "context/c1", holder: holder("h1"), ttlMs: 30_000 });
    advance(31_000);
    await acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 30_000 });
    // a writer that skipped its own check (an older paas-backup, a bug) still cannot count
    await storage.createOnly(
      "log/context/c1/000000000002",
      Buffer.from(JSON.stringify({ seq: 2, epoch: 1, kind: "commit", lease: "context/c1", data: {} })),
    );
    expect((await readFencedLog(storage, "context/c1")).map((e) => [e.epoch, e.kind, e.fenced])).toEqual([
      [2, "begin", false],
      [1, "commit", true],
    ]);
    expect(a.epoch).toBe(1);
    expect((await readLeaseState(storage, "context/c1")).epoch).toBe(2);
  });

  it("keeps the lease's keys few: epochs before the previous one are dropped when a new one is taken", async () => {
    const { storage } = bucket();
    for (let i = 0; i < 5; i++) {
      const l = await acquireLease({ storage, name: "maintenance", holder: holder("h1"), ttlMs: 60_000 });
      await l.renew();
      await l.release();
    }
    const keys = [...storage.objects.keys()].filter((k) => k.startsWith("leases/maintenance/")).sort();
    expect(keys).toEqual([
      "leases/maintenance/e000000000004",
      "leases/maintenance/e000000000004.r000001",
      "leases/maintenance/e000000000004.released",
      "leases/maintenance/e000000000005",
      "leases/maintenance/e000000000005.r000001",
      "leases/maintenance/e000000000005.released",
    ]);
  });
});

describe("refusing storage that ignores create-only writes", () => {
  it("passes a bucket that honours them, and refuses one that does not with a named error (exit 4)", async () => {
    const { storage } = bucket();
    await expect(probeConditionalWrites(storage)).resolves.toBeUndefined();
    expect([...storage.objects.keys()]).toEqual([]); // the probe cleans up
    storage.honoursConditions = false;
    const err = await probeConditionalWrites(storage).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES", exitCode: 4 });
    expect((err as Error).message).toContain("memory://fleet");
    expect((err as { remediation: string }).remediation).toMatch(/without versioning or Object Lock/);
  });

  it("refuses a local folder (create-only writes, but no server clock to judge leases on) as a shared repository", async () => {
    const local: ObjectStorage = new LocalStorage(new MemoryFileSystem(), "/repo");
    await expect(probeConditionalWrites(local)).rejects.toMatchObject({
      code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
    });
    await expect(
      acquireLease({ storage: local, name: "maintenance", holder: holder("h1"), ttlMs: 60_000 }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES" });
  });
});
