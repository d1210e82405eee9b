import { describe, it, expect, afterAll } from "vitest";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { randomBytes, createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { nodeFs } from "@paas-backup/core/node";
import {
  ObjectNotFoundError,
  openRepository,
  checkSnapshotChecksum,
  stagedKey,
  probeConditionalWrites,
  type ObjectStorage,
} from "@paas-backup/core/repository";
import { IntegrityError, isNotFound } from "@paas-backup/core/errors";
import { createSnapshot } from "@paas-backup/core/snapshot";
import { pruneSnapshots } from "@paas-backup/core/retention";
import { pushOffsite } from "@paas-backup/core/offsite";
import { ageEncryptor, generateIdentityFile } from "@paas-backup/core/age";
import { readHistoryLines, type PruneHistoryLine } from "@paas-backup/core/repository";
import type { FileSystem } from "@paas-backup/core";
import { createStateRoot } from "./state-root.js";
import { MemoryStorage } from "./memory-storage.js";

/**
 * The storage contract as a suite any driver runs in its own tests (as restic's backend `Suite`
 * and unstorage's `testDriver` are): `describeStorageContract("my driver", () => openMine())`
 * inside a vitest test file. `open` gives a fresh, empty storage each time. A driver that passes
 * it can hold a repository: the last case writes, lists, verifies and prunes snapshots through it.
 * Imported from `@paas-backup/testing/storage-contract` (it needs vitest; the rest of the package
 * does not).
 */
export function describeStorageContract(name: string, open: () => Promise<ObjectStorage>): void {
  const cleanups: (() => void)[] = [];
  describe(`storage contract: ${name}`, () => {
    afterAll(() => {
      for (const c of cleanups.splice(0)) c();
    });
    objectContract(open);
    stagingContract(open);
    appendAndCreateOnlyContract(open);
    repositoryContract(open, cleanups);
  });
}

/** Objects: put and get back, one typed not-found, listing by prefix. */
function objectContract(open: () => Promise<ObjectStorage>): void {
  it("puts an object and gives it back with its size and sha256", async () => {
    const storage = await open();
    const data = randomBytes(70_000);
    const put = await storage.put("ctx/a.bin", body(data), { sha256: sha(data), size: data.length });
    expect(put).toMatchObject({ key: "ctx/a.bin", size: data.length, sha256: sha(data) });
    const head = await storage.head("ctx/a.bin");
    expect(head).toMatchObject({ key: "ctx/a.bin", size: data.length });
    if (head!.sha256 !== null) expect(head!.sha256).toBe(sha(data));
    expect(sha(await readAll(await storage.get("ctx/a.bin")))).toBe(sha(data));
    if (storage.flags.permissions)
      expect(head!.mode! & 0o200).toBe(storage.url.includes("offsite") ? 0 : 0o200);
    // a second put replaces the object
    const next = Buffer.from("replaced\n");
    await storage.put("ctx/a.bin", body(next), { sha256: sha(next), size: next.length });
    expect((await readAll(await storage.get("ctx/a.bin"))).toString()).toBe("replaced\n");
  });

  it("has one typed not-found for a missing object: get rejects, head is null, delete is a no-op", async () => {
    const storage = await open();
    const err = await storage.get("ctx/missing.tar.gz").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(isNotFound(err)).toBe(true);
    expect((err as ObjectNotFoundError).code).toBe("PAAS_BACKUP_OBJECT_NOT_FOUND");
    expect((err as ObjectNotFoundError).message).toContain(storage.locate("ctx/missing.tar.gz"));
    expect(await storage.head("ctx/missing.tar.gz")).toBeNull();
    expect(await storage.head("nothing/at/all")).toBeNull();
    await expect(storage.delete("ctx/missing.tar.gz")).resolves.toBeUndefined();
  });

  it("lists by prefix in key order, shallow or deep, across pages", async () => {
    const storage = await open();
    for (const k of ["a/3", "a/1", "a/2", "a/sub/x", "ab/1", "b/1"])
      await storage.put(k, body(Buffer.from(k)), { sha256: sha(Buffer.from(k)), size: k.length });
    expect(await keys(storage, "a/", true)).toEqual(["a/1", "a/2", "a/3"]);
    expect(await keys(storage, "a/")).toEqual(["a/1", "a/2", "a/3", "a/sub/x"]);
    expect(await keys(storage, "nothing/")).toEqual([]);
    await storage.delete("a/2");
    expect(await keys(storage, "a/", true)).toEqual(["a/1", "a/3"]);
  });
}

/** Staged writes: invisible until committed with the right sha256, dropped on abort, swept once old. */
function stagingContract(open: () => Promise<ObjectStorage>): void {
  it("shows a staged object only once it is committed, with the sha256 of the bytes streamed in", async () => {
    const storage = await open();
    const data = randomBytes(6 * 1024 * 1024 + 123); // above the S3 part size: a multipart upload
    const staged = await storage.stage("ctx/big.tar.gz");
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), staged.stream);
    expect(await storage.head("ctx/big.tar.gz")).toBeNull();
    expect(await keys(storage, "ctx/")).toEqual([]);
    const done = await staged.commit(sha(data));
    expect(done).toMatchObject({ key: "ctx/big.tar.gz", size: data.length, sha256: sha(data) });
    expect(await keys(storage, "ctx/")).toEqual(["ctx/big.tar.gz"]);
    expect(sha(await readAll(await storage.get("ctx/big.tar.gz")))).toBe(sha(data));
    await staged.abort(); // after a commit: nothing to drop, the object stays
    expect(await storage.head("ctx/big.tar.gz")).not.toBeNull();
    expect(await storage.sweepStaged("ctx/", FAR_FUTURE)).toEqual([]);
  });

  it("refuses to commit bytes that hash otherwise than expected, and leaves nothing visible", async () => {
    const storage = await open();
    const staged = await storage.stage("ctx/x.tar.gz");
    await pipeline(body(Buffer.from("what was written")), staged.stream);
    const err = await staged.commit(sha(Buffer.from("what was meant"))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).code).toBe("PAAS_BACKUP_STORAGE_MISMATCH");
    await staged.abort();
    expect(await storage.head("ctx/x.tar.gz")).toBeNull();
    expect(await keys(storage, "ctx/")).toEqual([]);
  });

  it("drops an aborted stage; a crashed one is swept only once older than the cut-off", async () => {
    const storage = await open();
    const aborted = await storage.stage("ctx/aborted.tar.gz");
    aborted.stream.write(Buffer.from("half"));
    await aborted.abort();
    expect(await storage.head("ctx/aborted.tar.gz")).toBeNull();

    const crashed = await storage.stage("ctx/crashed.tar.gz"); // neither committed nor aborted
    await pipeline(body(Buffer.from("all of it")), crashed.stream);
    expect(await keys(storage, "ctx/")).toEqual([]);
    expect(await storage.sweepStaged("ctx/", new Date(0))).toEqual([]); // too young to be a leftover
    const swept = await sweepUntilFound(storage, "ctx/");
    expect(swept).toHaveLength(1);
    expect(swept[0]).toMatch(/^ctx\/\.crashed\.tar\.gz\.[0-9a-f]{8}\.partial$/);
    expect(await storage.sweepStaged("ctx/", FAR_FUTURE)).toEqual([]);
    expect(stagedKey("ctx/crashed.tar.gz", "0000").startsWith("ctx/.crashed.tar.gz.")).toBe(true);
  });
}

/** What sharing a repository needs where the driver has it: append, and create-only writes with a server clock. */
function appendAndCreateOnlyContract(open: () => Promise<ObjectStorage>): void {
  it("append, where the driver has it, adds to an object (creating it) and a reader sees every line in order", async () => {
    const storage = await open();
    if (!storage.append) return; // object stores have none: history is then an object per line
    await storage.append("ctx/history/prune.jsonl", "one\n");
    await storage.append("ctx/history/prune.jsonl", "two\n");
    expect((await readAll(await storage.get("ctx/history/prune.jsonl"))).toString()).toBe("one\ntwo\n");
    expect(await keys(storage, "ctx/history/")).toEqual(["ctx/history/prune.jsonl"]);
  });

  it("create-only writes: exactly one of racing creators wins; a driver without them or without a server clock is refused for sharing", async () => {
    const storage = await open();
    if (!storage.createOnly) {
      await expect(probeConditionalWrites(storage)).rejects.toMatchObject({
        code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
      });
      return;
    }
    const made = await Promise.all(
      Array.from({ length: 6 }, (_, i) => storage.createOnly!("leases/x/e1", Buffer.from(`racer ${i}\n`))),
    );
    expect(made.filter((m) => m.created)).toHaveLength(1);
    expect((await readAll(await storage.get("leases/x/e1"))).toString()).toMatch(/^racer \d\n$/);
    const listed = [];
    for await (const o of storage.list("leases/x/", { keysOnly: true })) listed.push(o);
    expect(listed).toMatchObject([{ key: "leases/x/e1", size: "racer 0\n".length }]);
    expect(listed[0]!.lastModified).toBeInstanceOf(Date);
    if (!storage.serverTime) {
      // Create-only writes without a server clock (a folder): one host's, never shared by leases.
      await expect(probeConditionalWrites(storage)).rejects.toMatchObject({
        code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
      });
      return;
    }
    expect(await storage.serverTime()).toBeInstanceOf(Date);
    await expect(probeConditionalWrites(storage)).resolves.toBeUndefined();
  });
}

/** The driver holds a repository: snapshots written, listed, verified and pruned through it, and through it only. */
function repositoryContract(open: () => Promise<ObjectStorage>, cleanups: (() => void)[]): void {
  repositoryRoundTrip(open, cleanups);
  repositoryThroughStorageOnly(open, cleanups);
}

/** Snapshots written through the driver list, find, chain, verify, prune and delete. */
function repositoryRoundTrip(open: () => Promise<ObjectStorage>, cleanups: (() => void)[]): void {
  it("holds a repository: a snapshot written through the driver lists, verifies and prunes", async () => {
    const storage = await open();
    const base = mkdtempSync(join(tmpdir(), "pb-contract-"));
    cleanups.push(() => rmSync(base, { recursive: true, force: true }));
    await createStateRoot({
      fs: nodeFs,
      root: join(base, "state"),
      contexts: [{ name: "oss-demo", eventBytes: 4_000 }],
      plantSecrets: false,
    });
    let t = Date.parse("2026-11-01T00:00:00Z");
    const clock = () => new Date((t += 86_400_000));
    const made = [];
    for (let i = 0; i < 3; i++)
      made.push(
        await createSnapshot({
          fs: nodeFs,
          stateRoot: join(base, "state"),
          backupRoot: join(base, "unused"),
          repository: storage,
          context: "oss-demo",
          clock,
          insecurePlaintext: true,
        }),
      );
    expect(made[0]!.artifact).toBe(storage.locate(`oss-demo/${made[0]!.id}.tar.gz`));
    const repository = openRepository(storage);
    const listed = await repository.snapshots("oss-demo");
    expect((await repository.find("oss-demo", "latest")).snapshot.id).toBe(made[2]!.id);
    expect((await repository.chain(listed[2]!)).chain.map((s) => s.id)).toEqual([made[2]!.id]);
    expect(listed.map((s) => s.id)).toEqual(made.map((m) => m.id));
    for (const s of listed) expect((await checkSnapshotChecksum(s)).state).toBe("verified");
    const pruned = await pruneSnapshots({
      fs: nodeFs,
      backupRoot: join(base, "unused"),
      repository: storage,
      context: "oss-demo",
      policy: { hourly: 0, daily: 1, weekly: 0, monthly: 0 },
      clock,
    });
    expect(pruned.removed).toEqual([made[1]!.id, made[0]!.id]);
    expect((await repository.snapshots("oss-demo")).map((s) => s.id)).toEqual([made[2]!.id]);
    await repository.delete((await repository.snapshots("oss-demo"))[0]!);
    expect(await repository.snapshots("oss-demo")).toEqual([]);
    await expect(repository.find("oss-demo", "latest")).rejects.toMatchObject({
      code: "PAAS_BACKUP_NO_SNAPSHOTS",
    });
  });
}

/** Every write of snapshot, incremental, prune and push goes through the driver: the backup root holds only the session. */
function repositoryThroughStorageOnly(open: () => Promise<ObjectStorage>, cleanups: (() => void)[]): void {
  it("holds a repository through the storage only: snapshots, incrementals, a prune and an encrypted push write nothing to the backup root but the context session's lock", async () => {
    const storage = await open();
    const base = mkdtempSync(join(tmpdir(), "pb-contract-"));
    cleanups.push(() => rmSync(base, { recursive: true, force: true }));
    const ctx = "oss-demo";
    await createStateRoot({
      fs: nodeFs,
      root: join(base, "state"),
      contexts: [{ name: ctx, eventBytes: 4_000 }],
      plantSecrets: false,
    });
    // the backup root holds only the context session (issue 19 §1): the location check, the
    // lock and the lookup for an interrupted keys rotate; any other access through fs fails
    const session = join(base, "session");
    const allowed = [session, join(session, ".git"), join(session, ctx), join(session, ctx, "rotations")];
    const fs = fsOutside(session, allowed);
    const day = 86_400_000;
    const t0 = Date.parse("2026-11-01T00:00:00Z");
    const kinds: string[] = [];
    for (const [at, kind] of [
      [t0, "full"],
      [t0 + 3_600_000, "incremental"],
      [t0 + day, "full"],
      [t0 + day + 3_600_000, "incremental"],
    ] as const) {
      const made = await createSnapshot({
        fs,
        stateRoot: join(base, "state"),
        backupRoot: session,
        repository: storage,
        context: ctx,
        clock: () => new Date(at),
        kind,
        insecurePlaintext: true,
      });
      kinds.push(made.promotedToFull ?? made.kind);
    }
    // each incremental extended a chain that verified, its cache an object of the repository
    expect(kinds).toEqual(["full", "incremental", "full", "incremental"]);
    expect(await storage.head(`${ctx}/.verified-chain.json`)).not.toBeNull();
    const pruned = await pruneSnapshots({
      fs,
      backupRoot: session,
      repository: storage,
      context: ctx,
      policy: { hourly: 1, daily: 1, weekly: 0, monthly: 0 },
      clock: () => new Date(t0 + 2 * day),
    });
    expect(pruned.removed).toHaveLength(2);
    const history = await readHistoryLines<PruneHistoryLine>(storage, ctx, "prune");
    expect(history.lines.map((l) => l.id).sort()).toEqual([...pruned.removed].sort());
    const target = { name: "away", storage: new MemoryStorage("memory://away") };
    const scratch = join(base, "scratch");
    const pushed = await pushOffsite({
      fs,
      backupRoot: session,
      repository: storage,
      scratch,
      context: ctx,
      target,
      clock: () => new Date(t0 + 2 * day),
      encryptor: ageEncryptor([(await generateIdentityFile(new Date(t0))).recipient]),
    });
    expect(pushed.problems).toEqual([]);
    expect(pushed.pushed.map((c) => c.encryptedOnPush)).toEqual([true]);
    expect(await storage.head(`${ctx}/offsite/away.json`)).not.toBeNull(); // the push record
    // nothing left in the backup root (the lock is released) nor in the scratch folder
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true, recursive: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name));
    expect([...files(session), ...files(scratch)]).toEqual([]);
  });
}

/**
 * A FileSystem that fails any call naming a path under the backup root `session` other than
 * the `allowed` ones and the lock's files: what the storage-only case runs with.
 */
function fsOutside(session: string, allowed: string[]): FileSystem {
  return new Proxy(nodeFs, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        for (const a of args)
          if (
            typeof a === "string" &&
            (a === session || a.startsWith(`${session}/`)) &&
            !allowed.includes(a) &&
            !/\/\.?\.lock(\.[0-9a-f-]+\.tmp)?$/.test(a)
          )
            throw new Error(`the backup root was touched through the FileSystem: ${String(prop)} ${a}`);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as FileSystem;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const body = (b: Buffer) => Readable.from([b]);
const FAR_FUTURE = new Date("2100-01-01T00:00:00Z");

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
async function keys(storage: ObjectStorage, prefix: string, shallow = false): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix, { shallow })) out.push(o.key);
  return out;
}
/** staged leftovers show up in no listing; sweep (retrying while an upload completes) finds them */
async function sweepUntilFound(storage: ObjectStorage, prefix: string): Promise<string[]> {
  for (let i = 0; i < 50; i++) {
    const swept = await storage.sweepStaged(prefix, FAR_FUTURE);
    if (swept.length > 0) return swept;
    await new Promise((r) => setTimeout(r, 100));
  }
  return [];
}
