import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage, createStateRoot, appendEvents } from "@paas-backup/testing";
import { createSnapshot, pruneSnapshots, pushOffsite, type FileSystem } from "../src/index.js";
import { offsiteRecordsIn, type OffsiteTarget } from "../src/offsite/offsite.js";
import { ageEncryptor, generateIdentityFile } from "../src/archive/index.js";
import { buildReport } from "../src/governance/report.js";
import {
  openRepository,
  readHistoryLines,
  readIdentityIn,
  type ObjectStorage,
} from "../src/repository/index.js";
import type { PruneHistoryLine } from "../src/repository/history.js";

/**
 * Issue 19 §2: createSnapshot, prune and offsite push read and write only through the repository's
 * storage. The repository here is an ObjectStorage (the memory driver standing in for a bucket),
 * and the FileSystem refuses every path under the backup root except the context session's own
 * (its lock, and the folder that lock lives in): a verified-chain cache, a history line, a push
 * record or an encryption scratch file written there fails the call. The same flows on a folder
 * root still write where they always did.
 */
const CTX = "internal-dogfood";
const T0 = Date.parse("2026-11-24T00:00:00Z");
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const recipient = generateIdentityFile(new Date(T0)).then((k) => k.recipient);

/**
 * What the context session keeps under the backup root (separate from the repository, issue 19 §1):
 * the location check reads the root, the lock is a file in the context's folder there. Nothing else
 * under the backup root is allowed.
 */
const SESSION_PATHS = [
  // the location check (policy §7.1): the backup root is not inside a git work tree
  /^\/b$/,
  /^\/b\/\.git$/,
  new RegExp(`^/b/${CTX}$`),
  // the lock, and the temporary file it is made from (util/atomic.ts createFileExclusive)
  new RegExp(`^/b/${CTX}/\\.?\\.lock(\\.[0-9a-f-]+\\.tmp)?$`),
  // a keys rotate killed inside a commit is finished before anything reads (finishRotationCommits): looked for
  new RegExp(`^/b/${CTX}/rotations$`),
];

/** The memory fs, refusing any backup-root path the session does not own; `touched` records what it allowed. */
function backupRootGuard(inner: MemoryFileSystem, touched: Set<string>): FileSystem {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        for (const a of args)
          if (typeof a === "string" && (a === "/b" || a.startsWith("/b/"))) {
            if (!SESSION_PATHS.some((p) => p.test(a)))
              throw new Error(`backup root touched through the FileSystem: ${String(prop)} ${a}`);
            touched.add(a);
          }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as FileSystem;
}

async function stateWithHistory(): Promise<MemoryFileSystem> {
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

function clockAt(start: number) {
  let t = start;
  return () => new Date((t += 61_000));
}

/**
 * Three days of a full and an incremental each (the incremental extends a chain the verified-chain
 * cache vouches for), a prune keeping one day, and a push of the plaintext fulls, encrypted on
 * their way out. Runs on the given fs and repository (undefined: the folder root /b).
 */
async function threeDaysPruneAndPush(
  inner: MemoryFileSystem,
  fs: FileSystem,
  repository: ObjectStorage | undefined,
  extra: { records?: ObjectStorage; scratch?: string },
  target: OffsiteTarget,
) {
  const on = repository ? { repository } : {};
  const kinds: string[] = [];
  for (let day = 0; day < 3; day++) {
    for (const kind of ["full", "incremental"] as const) {
      await appendEvents(
        inner,
        `/state/contexts/${CTX}/events/audit.jsonl`,
        "audit",
        CTX,
        2,
        new Date(T0),
        1000 * day,
      );
      inner.now += 1000;
      const s = await createSnapshot({
        fs,
        stateRoot: "/state",
        backupRoot: "/b",
        ...on,
        context: CTX,
        clock: clockAt(T0 + day * DAY + (kind === "full" ? 0 : HOUR)),
        kind,
        insecurePlaintext: true,
        sleep: async () => undefined,
      });
      kinds.push(s.promotedToFull ? `full (${s.promotedToFull})` : s.kind);
    }
  }
  const pruned = await pruneSnapshots({
    fs,
    backupRoot: "/b",
    ...on,
    context: CTX,
    clock: () => new Date(T0 + 3 * DAY),
    policy: { hourly: 1, daily: 1, weekly: 0, monthly: 0 },
  });
  const pushed = await pushOffsite({
    fs,
    backupRoot: "/b",
    ...on,
    ...extra,
    context: CTX,
    target,
    clock: () => new Date(T0 + 3 * DAY + HOUR),
    host: "sdk-host",
    encryptor: ageEncryptor([await recipient]),
  });
  return { kinds, pruned, pushed };
}

const keysOf = (m: MemoryStorage) => [...m.objects.keys()].sort();

describe("an SDK caller's repository on an ObjectStorage: snapshot, prune and push go through the storage only", () => {
  it("three days of snapshots, a prune and an encrypted push touch nothing under the backup root but the context's lock", async () => {
    const inner = await stateWithHistory();
    const touched = new Set<string>();
    const fs = backupRootGuard(inner, touched);
    const repo = new MemoryStorage("memory://repo");
    const bucket = new MemoryStorage("memory://offsite");
    const target: OffsiteTarget = { name: "bucket", storage: bucket };

    const { kinds, pruned, pushed } = await threeDaysPruneAndPush(
      inner,
      fs,
      repo,
      { scratch: "/host-cache/scratch" },
      target,
    );
    // every incremental extended a chain that verified (through the cache kept in the repository)
    expect(kinds).toEqual(["full", "incremental", "full", "incremental", "full", "incremental"]);
    expect(pruned.removed).toHaveLength(4);
    expect(pushed.problems).toEqual([]);
    expect(pushed.pushed.map((c) => c.encryptedOnPush)).toEqual([true]);

    // Nothing under the backup root but the session's lock and the folders it lives in.
    expect(inner.files("/b")).toEqual([]); // the lock is released: not even it is left
    expect([...touched].every((p) => SESSION_PATHS.some((r) => r.test(p)))).toBe(true);

    // What a folder root keeps under /b is in the repository instead.
    const id = (await readIdentityIn(repo))!.id;
    const keys = keysOf(repo);
    expect(keys).toContain(`${CTX}/.verified-chain.json`);
    expect(keys).toContain(`${CTX}/offsite/bucket.json`); // the push record, in the repository
    expect(keys).toContain("paas-backup.repository.json");
    const history = await readHistoryLines<PruneHistoryLine>(repo, CTX, "prune");
    expect(history.lines.map((l) => l.id).sort()).toEqual([...pruned.removed].sort());
    expect(history.lines.every((l) => l.where === "memory://repo")).toBe(true);
    expect(keys.filter((k) => k.startsWith(`history/${CTX}/prune/`))).toHaveLength(4);
    // the encrypted copy at the target, under the repository's identity; the scratch file is gone
    const copy = `roots/${id}/${pushed.pushed[0]!.artifact.split("/").slice(2).join("/")}`;
    expect(keysOf(bucket)).toContain(copy);
    expect(keysOf(bucket)).toContain(`roots/${id}/${CTX}/records-head.json`);
    expect(inner.files("/host-cache")).toEqual([]);

    // the report reads the prune history from the repository (its record-chain section still reads
    // the session's incident and drill records in the backup root folder: unguarded here)
    const report = await buildReport({
      fs: inner,
      backupRoot: "/b",
      sources: {
        snapshots: (c) => openRepository(repo).snapshots(c),
        history: (c, stream) => readHistoryLines(repo, c, stream),
        records: async () => [],
        contexts: async () => [CTX],
      },
      contexts: [CTX],
      period: { from: new Date(T0).toISOString(), to: new Date(T0 + 4 * DAY).toISOString(), label: "test" },
      clock: () => new Date(T0 + 3 * DAY + 2 * HOUR),
    });
    expect(report.contexts[0]!.retention.deletions.map((d) => d.id).sort()).toEqual(
      [...pruned.removed].sort(),
    );

    // a second push on a new host cache: the record in the repository says the copy is there
    const again = await pushOffsite({
      fs,
      backupRoot: "/b",
      repository: repo,
      scratch: "/other-host/scratch",
      context: CTX,
      target,
      clock: () => new Date(T0 + 3 * DAY + 2 * HOUR),
      encryptor: ageEncryptor([await recipient]),
    });
    expect(again.pushed).toEqual([]);
    expect(again.alreadyThere).toEqual(pushed.pushed.map((c) => c.id));
  });

  it("a bucket's push records live at offsite-records/<context>/ when the caller says so, as an s3:// root keeps them", async () => {
    const inner = await stateWithHistory();
    const fs = backupRootGuard(inner, new Set());
    const repo = new MemoryStorage("memory://repo");
    const target: OffsiteTarget = { name: "bucket", storage: new MemoryStorage("memory://offsite") };
    await threeDaysPruneAndPush(inner, fs, repo, { records: offsiteRecordsIn(repo), scratch: "/s" }, target);
    const keys = keysOf(repo);
    expect(keys).toContain(`offsite-records/${CTX}/bucket.json`);
    expect(keys.filter((k) => k.includes("/offsite/"))).toEqual([]);
  });

  it("on a folder root the same flows keep everything in the backup root, where older versions read it", async () => {
    const inner = await stateWithHistory();
    const target: OffsiteTarget = { name: "bucket", storage: new MemoryStorage("memory://offsite") };
    const { kinds, pruned, pushed } = await threeDaysPruneAndPush(inner, inner, undefined, {}, target);
    expect(kinds).toEqual(["full", "incremental", "full", "incremental", "full", "incremental"]);
    expect(pushed.pushed).toHaveLength(1);
    expect(inner.files("/b").sort()).toEqual(
      expect.arrayContaining([
        `/b/${CTX}/.verified-chain.json`,
        `/b/${CTX}/history/prune.jsonl`,
        `/b/${CTX}/offsite/bucket.json`,
        "/b/paas-backup.repository.json",
      ]),
    );
    // prune's history stays JSON Lines, one line per deletion, appended
    const lines = Buffer.from(await inner.readFile(`/b/${CTX}/history/prune.jsonl`))
      .toString("utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as PruneHistoryLine);
    expect(lines.map((l) => l.id).sort()).toEqual([...pruned.removed].sort());
    expect(lines.every((l) => l.where === "local")).toBe(true);
    // nothing of the bucket layout appears in a folder root (it would list as a context)
    expect(
      inner.files("/b").filter((p) => p.startsWith("/b/history/") || p.startsWith("/b/offsite-records/")),
    ).toEqual([]);
    // the encrypt-on-push scratch folder is the one a folder root always used, and it is empty
    expect(inner.files(`/b/${CTX}/offsite`)).toEqual([`/b/${CTX}/offsite/bucket.json`]);
  });
});
