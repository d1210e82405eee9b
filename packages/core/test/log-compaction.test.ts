import { describe, it, expect } from "vitest";
import { MemoryStorage } from "@paas-backup/testing";
import {
  acquireLease,
  compactLog,
  readFencedLog,
  type LogEntry,
  type ObjectStorage,
} from "../src/repository/index.js";

// Compaction of the fenced commit log on the in-memory bucket (create-only writes, the bucket's
// clock moved by the test): readers see the same entries before, during and after it, a
// compaction cut short at any storage call leaves a log that reads the same, and the entries it
// covers go only after the delete delay. The CLI runs it in maintenance on a real RGW bucket
// (packages/cli/test/shared-root.test.ts).

const holder = (host: string) => ({ host, pid: 100, command: "tick" });
const DAY = 86_400_000;

function bucket() {
  let now = Date.parse("2026-12-01T00:00:00Z");
  const storage = new MemoryStorage("memory://fleet", false, () => new Date(now));
  return { storage, advance: (ms: number) => (now += ms) };
}

/** what a reader takes from the log: every entry in effect, with its fencing */
async function view(storage: ObjectStorage, name = "context/c1") {
  return (await readFencedLog(storage, name))
    .filter((e) => !(e.kind === "commit" && e.fenced) && e.kind !== "begin")
    .map((e) => ({ seq: e.seq, epoch: e.epoch, kind: e.kind, data: e.data }));
}

/** A log with commits of two epochs, a takeover (begin), a late commit it fenced, and a relocation. */
async function history(storage: MemoryStorage, advance: (ms: number) => void) {
  const a = await acquireLease({ storage, name: "context/c1", holder: holder("h1"), ttlMs: 30_000 });
  await a.commit({ snapshot: "s1" });
  await a.commit({ snapshot: "s2" });
  advance(31_000);
  const b = await acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 30_000 });
  // a writer of epoch 1 that skipped its own check lands behind the begin: fenced
  await storage.createOnly(
    "log/context/c1/000000000004",
    Buffer.from(
      JSON.stringify({ seq: 4, epoch: 1, kind: "commit", lease: "context/c1", data: { snapshot: "late" } }),
    ),
  );
  await b.commit({ snapshot: "s3" });
  // an entry of a kind compaction does not interpret (keys rotate's relocation): carried as it is
  await b.commit({
    relocation: {
      rotation: "r1",
      snapshot: "s2",
      at: "2026-12-01T00:00:31Z",
      keys: { "c1/s2.tar.gz": "c1/rotations/r1/s2/s2.tar.gz" },
    },
  });
  await b.commit({ snapshot: "s4" });
  await b.release();
}

describe("compaction of the fenced commit log", () => {
  it("summarises the log in a create-only checkpoint readers start from: the same entries, fewer reads; what it covers goes after the delay", async () => {
    const { storage, advance } = bucket();
    await history(storage, advance);
    const before = await view(storage);
    expect(before.map((e) => e.data.snapshot ?? "relocation")).toEqual([
      "s1",
      "s2",
      "s3",
      "relocation",
      "s4",
    ]);
    const m = await acquireLease({ storage, name: "context/c1", holder: holder("h3"), ttlMs: 30_000 });
    // s1's objects are gone (prune removed it): its commit drops out; every other entry is kept
    const obsolete = (e: LogEntry) => e.data.snapshot === "s1";
    const first = await compactLog({ lease: m, minEntries: 3, deleteAfterMs: DAY, obsolete });
    expect(first).toMatchObject({ checkpoint: 7, carried: 4, removed: [] });
    const after = await view(storage);
    expect(after).toEqual(before.filter((e) => e.data.snapshot !== "s1"));
    // the relocation entry verbatim
    const relocation = after.find((e) => "relocation" in e.data)!;
    expect(relocation).toEqual(before.find((e) => "relocation" in e.data));
    // a reader now reads one checkpoint and the entries after it, not the 8 entries
    let gets = 0;
    const counting = new Proxy(storage, {
      get(target, prop, receiver) {
        if (prop === "get")
          return (key: string) => {
            gets++;
            return target.get(key);
          };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    await readFencedLog(counting, "context/c1");
    expect(gets).toBe(1);
    // a commit after the checkpoint by the lease that took over is counted; by epoch 1 it would be fenced
    await m.commit({ snapshot: "s5" });
    expect((await view(storage)).map((e) => e.data.snapshot ?? "relocation")).toEqual([
      "s2",
      "s3",
      "relocation",
      "s4",
      "s5",
    ]);
    // nothing is removed before the checkpoint is a delete delay old
    expect((await compactLog({ lease: m, minEntries: 3, deleteAfterMs: DAY })).removed).toEqual([]);
    advance(DAY + 1000);
    const later = await compactLog({ lease: m, minEntries: 3, deleteAfterMs: DAY });
    expect(later.removed).toHaveLength(7);
    expect([...storage.objects.keys()].filter((k) => k.startsWith("log/")).sort()).toEqual([
      "log/context/c1/000000000007.checkpoint",
      "log/context/c1/000000000008",
    ]);
    expect((await view(storage)).map((e) => e.data.snapshot ?? "relocation")).toEqual([
      "s2",
      "s3",
      "relocation",
      "s4",
      "s5",
    ]);
    // the next entries number on from the checkpoint, not from what is left
    await m.commit({ snapshot: "s6" });
    expect((await readFencedLog(storage, "context/c1")).at(-1)).toMatchObject({ seq: 9, fenced: false });
    // a later checkpoint builds on this one, and its removal takes the older checkpoint too
    expect(await compactLog({ lease: m, minEntries: 2, deleteAfterMs: DAY })).toMatchObject({
      checkpoint: 9,
    });
    advance(DAY + 1000);
    await compactLog({ lease: m, minEntries: 2, deleteAfterMs: DAY });
    expect([...storage.objects.keys()].filter((k) => k.startsWith("log/"))).toEqual([
      "log/context/c1/000000000009.checkpoint",
    ]);
    expect((await view(storage)).map((e) => e.data.snapshot ?? "relocation")).toEqual([
      "s2",
      "s3",
      "relocation",
      "s4",
      "s5",
      "s6",
    ]);
    await m.release();
  });

  it("cut short at any storage call (a kill, a failed request), leaves a log that reads the same; a reader at any step sees the same; the next run finishes", async () => {
    for (let failAt = 1; ; failAt++) {
      const { storage, advance } = bucket();
      await history(storage, advance);
      const m = await acquireLease({ storage, name: "context/c1", holder: holder("h3"), ttlMs: 30_000 });
      await compactLog({ lease: m, minEntries: 1, deleteAfterMs: DAY });
      await m.commit({ snapshot: "s5" });
      advance(DAY + 1000);
      const expected = await view(storage);
      // count the storage calls of a compaction (a second checkpoint, then removal of the first's entries)
      let calls = 0;
      const faulty = new Proxy(storage, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (
            typeof v !== "function" ||
            !["list", "get", "createOnly", "delete", "serverTime"].includes(String(prop))
          )
            return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          return (...args: unknown[]) => {
            calls++;
            if (calls === failAt) throw new Error(`fault at storage call ${failAt} (${String(prop)})`);
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      }) as MemoryStorage;
      const lease = Object.assign(Object.create(Object.getPrototypeOf(m) as object) as typeof m, m, {
        storage: faulty,
      });
      const outcome = await compactLog({ lease, minEntries: 1, deleteAfterMs: DAY }).then(
        () => "done",
        (e: Error) => e.message,
      );
      // the bucket as this run left it is what a reader at that step reads
      expect(await view(storage), `after: ${outcome}`).toEqual(expected);
      // a new run (a new process) finishes the work, and the log still reads the same
      await compactLog({ lease: m, minEntries: 1, deleteAfterMs: DAY });
      advance(DAY + 1000);
      await compactLog({ lease: m, minEntries: 1, deleteAfterMs: DAY });
      expect(await view(storage)).toEqual(expected);
      expect([...storage.objects.keys()].filter((k) => k.startsWith("log/"))).toEqual([
        "log/context/c1/000000000008.checkpoint",
      ]);
      if (outcome === "done") {
        expect(failAt).toBeGreaterThan(5);
        break;
      }
    }
  });

  it("refuses the commit of a writer that paused until its entry's number was written, compacted and removed: never reported as made", async () => {
    const { storage, advance } = bucket();
    const a = await acquireLease({ storage, name: "context/c1", holder: holder("h1"), ttlMs: 30_000 });
    await a.commit({ snapshot: "s1" });
    // pause a's next commit right before its create-only PUT (SIGSTOP, a suspended VM)
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    let reachedPut!: () => void;
    const atPut = new Promise<void>((r) => (reachedPut = r));
    const createOnly = storage.createOnly.bind(storage);
    let pauseOnce = true;
    storage.createOnly = async (key, body) => {
      if (pauseOnce && key.startsWith("log/") && body.includes('"late"')) {
        pauseOnce = false;
        reachedPut();
        await paused;
      }
      return createOnly(key, body);
    };
    const late = a.commit({ snapshot: "late" }).catch((e: unknown) => e);
    await atPut;
    // meanwhile: maintenance takes the lapsed lease over, entries 2.. are written and compacted,
    // and a day later removed, so the number a's PUT is aimed at is free again
    advance(31_000);
    const m = await acquireLease({ storage, name: "context/c1", holder: holder("h2"), ttlMs: 30_000 });
    await m.commit({ snapshot: "s2" });
    await compactLog({ lease: m, minEntries: 1, deleteAfterMs: DAY });
    advance(DAY + 1000);
    await compactLog({ lease: m, minEntries: 1, deleteAfterMs: DAY });
    expect(storage.objects.has("log/context/c1/000000000002")).toBe(false);
    resume();
    expect(await late).toMatchObject({ code: "PAAS_BACKUP_LEASE_LOST", data: { epoch: 1, takenBy: 2 } });
    expect((await view(storage)).map((e) => e.data.snapshot)).toEqual(["s1", "s2"]);
    await m.release();
  });
});
