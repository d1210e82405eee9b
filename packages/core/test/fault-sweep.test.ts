import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import {
  MemoryFileSystem,
  MemoryStorage,
  FaultInjectingFileSystem,
  countFileSystemCalls,
  createStateRoot,
  appendEvents,
  type FaultPlan,
} from "@paas-backup/testing";
import {
  createSnapshot,
  pruneSnapshots,
  pushOffsite,
  verifySnapshots,
  type FileSystem,
} from "../src/index.js";
import { verifyOffsite, rootView, type OffsiteTarget } from "../src/offsite/offsite.js";
import { ageEncryptor, generateIdentityFile } from "../src/archive/index.js";
import {
  scanSnapshots,
  scanSnapshotsIn,
  LocalStorage,
  readRepositoryIdentity,
} from "../src/repository/index.js";

/**
 * Issue 9 §7: fault injection at every filesystem call. For each operation, every call N from 1
 * to the operation's total is failed once by a thrown error (EIO, ENOSPC, EACCES in turn) and
 * once by a simulated crash (call N and all after it never happen). After each: every snapshot
 * listed verifies (deep), nothing partial or damaged is listed, the live context is unchanged,
 * and the next run on the healthy filesystem succeeds and leaves everything verifying.
 */
const CTX = "internal-dogfood";
const CODES = ["EIO", "ENOSPC", "EACCES"] as const;
const T0 = Date.parse("2026-11-24T00:00:00Z");

function clockAt(start: number, stepMs = 61_000) {
  let t = start;
  return () => new Date((t += stepMs));
}

async function liveState(fs: MemoryFileSystem): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const path of fs.files("/state"))
    out.set(
      path,
      createHash("sha256")
        .update(await fs.readFile(path))
        .digest("hex"),
    );
  return out;
}

async function assertRepositoryHealthy(fs: MemoryFileSystem, where: string): Promise<string[]> {
  const { snapshots, damaged } = await scanSnapshots(fs, "/b", CTX);
  expect(
    damaged.map((d) => d.id),
    `${where}: damaged snapshots listed`,
  ).toEqual([]);
  if (snapshots.length === 0) return [];
  const results = await verifySnapshots({ fs, backupRoot: "/b", context: CTX, snapshot: "all", deep: true });
  for (const r of results)
    expect(
      {
        id: r.id,
        ok: r.ok,
        checksum: r.checksum,
        chain: r.chainProblem,
        deep: r.deep?.error?.message ?? null,
      },
      where,
    ).toMatchObject({ ok: true });
  return snapshots.map((s) => s.id);
}

interface Operation {
  name: string;
  setup(): Promise<MemoryFileSystem>;
  run(fs: FileSystem, inner: MemoryFileSystem): Promise<unknown>;
  /** extra checks after the fault and after the recovery run */
  after?(inner: MemoryFileSystem, phase: "faulted" | "recovered", where: string): Promise<void>;
}

async function baseState(): Promise<MemoryFileSystem> {
  const fs = new MemoryFileSystem();
  fs.now = T0;
  await createStateRoot({
    fs,
    root: "/state",
    contexts: [{ name: CTX, eventBytes: 1_500 }],
    plantSecrets: false,
  });
  return fs;
}

const snap = (fs: FileSystem, clock: () => Date, kind: "full" | "incremental" = "full") =>
  createSnapshot({
    fs,
    stateRoot: "/state",
    backupRoot: "/b",
    context: CTX,
    clock,
    kind,
    insecurePlaintext: true,
    sleep: async () => undefined,
  });

const offsiteTarget = (fs: FileSystem): OffsiteTarget => ({
  name: "disk",
  storage: new LocalStorage(fs, "/offsite", { readOnly: true }),
});
/** the directory target gets the plaintext snapshots encrypted on push (issue 21 §5): that path is swept too */
const pushRecipient = generateIdentityFile(new Date(T0)).then((k) => k.recipient);

/** one lock-enabled memory bucket per fixture, kept across the faulted run and the next one */
const buckets = new WeakMap<MemoryFileSystem, MemoryStorage>();
const bucketOf = (inner: MemoryFileSystem) => {
  let b = buckets.get(inner);
  if (!b)
    buckets.set(inner, (b = new MemoryStorage("memory://sweep", true, () => new Date(T0 + 2 * 86_400_000))));
  return b;
};
/** Offsite copies live below roots/<backup root id>/ (issue 12): none before the root has an identity. */
const rootIdOf = async (inner: MemoryFileSystem) => (await readRepositoryIdentity(inner, "/b"))?.id ?? null;
const memoryTarget = (inner: MemoryFileSystem): OffsiteTarget => ({
  name: "bucket",
  storage: bucketOf(inner),
  objectLock: { mode: "COMPLIANCE", days: 30 },
  // the plaintext copy path, swept here; the directory target sweeps the encrypted one
  allowPlaintext: true,
});

const operations: Operation[] = [
  {
    name: "createSnapshot (full)",
    async setup() {
      const fs = await baseState();
      await snap(fs, clockAt(T0));
      return fs;
    },
    run: (fs) => snap(fs, clockAt(T0 + 3600_000)),
  },
  {
    name: "createSnapshot (incremental)",
    async setup() {
      const fs = await baseState();
      await snap(fs, clockAt(T0));
      await appendEvents(
        fs,
        `/state/contexts/${CTX}/events/audit.jsonl`,
        "audit",
        CTX,
        3,
        new Date(T0),
        90_000,
      );
      fs.now += 5_000;
      await fs.writeFile(
        `/state/contexts/${CTX}/targets.json`,
        `${JSON.stringify({ current_target: "edge-2", targets: [] }, null, 2)}\n`,
      );
      return fs;
    },
    run: (fs) => snap(fs, clockAt(T0 + 3600_000), "incremental"),
  },
  {
    name: "pruneSnapshots",
    async setup() {
      const fs = await baseState();
      // three days: a full and an incremental each; keep one day
      for (let day = 0; day < 3; day++) {
        await snap(fs, clockAt(T0 + day * 86_400_000));
        await appendEvents(
          fs,
          `/state/contexts/${CTX}/events/audit.jsonl`,
          "audit",
          CTX,
          1,
          new Date(T0),
          90_000 + day,
        );
        fs.now += 1000;
        await snap(fs, clockAt(T0 + day * 86_400_000 + 3600_000), "incremental");
      }
      return fs;
    },
    run: (fs) =>
      pruneSnapshots({
        fs,
        backupRoot: "/b",
        context: CTX,
        clock: () => new Date(T0 + 3 * 86_400_000),
        policy: { hourly: 1, daily: 1, weekly: 0, monthly: 0 },
      }),
    async after(inner, phase, where) {
      const { snapshots } = await scanSnapshots(inner, "/b", CTX);
      if (phase === "recovered")
        expect(
          snapshots.map((s) => s.kind),
          where,
        ).toEqual(["full", "incremental"]);
      // an interrupted prune never leaves a listed incremental without its parent (verify's chain check covers it too)
      for (const s of snapshots)
        if (s.kind === "incremental")
          expect(
            snapshots.some((p) => p.id === s.parent?.id),
            where,
          ).toBe(true);
    },
  },
  {
    name: "pushOffsite (directory target)",
    async setup() {
      const fs = await baseState();
      await snap(fs, clockAt(T0));
      await snap(fs, clockAt(T0 + 86_400_000));
      return fs;
    },
    run: async (fs) =>
      pushOffsite({
        fs,
        backupRoot: "/b",
        context: CTX,
        target: offsiteTarget(fs),
        clock: () => new Date(T0 + 2 * 86_400_000),
        encryptor: ageEncryptor([await pushRecipient]),
      }).then((r) => {
        if (r.problems.length) throw new Error(`push problems: ${JSON.stringify(r.problems)}`);
        return r;
      }),
    async after(inner, phase, where) {
      // nothing partial is listed at the target either: every snapshot there has its checksum and verifies
      const id = await rootIdOf(inner);
      const { snapshots, damaged } = await scanSnapshots(
        inner,
        id ? `/offsite/roots/${id}` : "/offsite",
        CTX,
      );
      expect(damaged, where).toEqual([]);
      for (const s of snapshots)
        expect(s.checksum, `${where}: ${s.id} listed at the target without its checksum`).not.toBeNull();
      if (phase === "recovered") {
        expect(snapshots).toHaveLength(2);
        // only encrypted copies left the host, whatever was interrupted
        expect(
          snapshots.map((s) => s.encrypted),
          where,
        ).toEqual([true, true]);
        const { results } = await verifyOffsite({
          fs: inner,
          backupRoot: "/b",
          context: CTX,
          target: offsiteTarget(inner),
          clock: () => new Date(T0 + 2 * 86_400_000),
          deep: true,
        });
        for (const r of results) expect(r, where).toMatchObject({ ok: true });
      }
    },
  },
  {
    name: "pushOffsite (memory target with object lock)",
    async setup() {
      const fs = await baseState();
      await snap(fs, clockAt(T0));
      await snap(fs, clockAt(T0 + 86_400_000));
      return fs;
    },
    run: (fs, inner) =>
      pushOffsite({
        fs,
        backupRoot: "/b",
        context: CTX,
        target: memoryTarget(inner),
        clock: () => new Date(T0 + 2 * 86_400_000),
      }).then((r) => {
        if (r.problems.length) throw new Error(`push problems: ${JSON.stringify(r.problems)}`);
        return r;
      }),
    async after(inner, phase, where) {
      const id = await rootIdOf(inner);
      const { snapshots, damaged } = await scanSnapshotsIn(
        id ? rootView(bucketOf(inner), id) : bucketOf(inner),
        CTX,
      );
      expect(damaged, where).toEqual([]);
      for (const s of snapshots)
        expect(s.checksum, `${where}: ${s.id} listed at the target without its checksum`).not.toBeNull();
      if (phase === "recovered") {
        expect(snapshots).toHaveLength(2);
        const { results } = await verifyOffsite({
          fs: inner,
          backupRoot: "/b",
          context: CTX,
          target: memoryTarget(inner),
          clock: () => new Date(T0 + 2 * 86_400_000),
          deep: true,
        });
        for (const r of results) expect(r, where).toMatchObject({ ok: true, immutable: true });
      }
    },
  },
];

export const injectionPoints: Record<string, number> = {};

describe("fault injection at every filesystem call", () => {
  for (const op of operations) {
    it(`${op.name}: a throw or a crash at any call leaves verifying snapshots, an unchanged context, and a next run that succeeds`, async () => {
      // the fixture is built once and cloned for each run (building it is most of a run's cost)
      const fixture = await op.setup();
      const fresh = () => fixture.clone();
      const counted = fresh();
      const { calls } = await countFileSystemCalls(
        async () => counted,
        (fs) => op.run(fs, counted),
      );
      injectionPoints[op.name] = calls;
      expect(calls).toBeGreaterThan(10);
      for (let at = 1; at <= calls; at++) {
        for (const mode of ["throw", "crash"] as const) {
          const plan: FaultPlan = { at, mode, code: CODES[at % CODES.length] };
          const where = `${op.name}, ${mode} at call ${at}/${calls}`;
          const inner = fresh();
          const before = await liveState(inner);
          const faulty = new FaultInjectingFileSystem(inner, plan);
          await op.run(faulty, inner).catch(() => undefined);
          expect(faulty.injected, where).not.toBeNull();
          // every file opened for reading is closed, whatever failed (a leaked fd per failed run adds up in a daemon)
          expect(faulty.openReaders, `${where}: files left open`).toBe(0);
          // "reboot": from here on the healthy filesystem
          expect(await liveState(inner), `${where}: live context changed`).toEqual(before);
          await assertRepositoryHealthy(inner, where);
          await op.after?.(inner, "faulted", where);
          await op.run(inner, inner);
          await assertRepositoryHealthy(inner, `${where}, next run`);
          await op.after?.(inner, "recovered", `${where}, next run`);
          expect(await liveState(inner), `${where}: live context changed by the next run`).toEqual(before);
          // what the interrupted run left half-written is swept by the next prune once it is an hour old
          const keepAll = { hourly: 1000, daily: 1000, weekly: 1000, monthly: 1000 };
          await pruneSnapshots({
            fs: inner,
            backupRoot: "/b",
            context: CTX,
            clock: () => new Date(T0 + 10 * 86_400_000),
            policy: keepAll,
          });
          expect(
            inner.files("/b").filter((f) => /\.(partial|tmp)$/.test(f)),
            `${where}: leftovers after prune`,
          ).toEqual([]);
        }
      }
      console.log(`fault sweep: ${op.name}: ${calls} injection points x 2 modes`);
    });
  }
});
