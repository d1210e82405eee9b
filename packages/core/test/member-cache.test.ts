import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import {
  MemoryFileSystem,
  FaultInjectingFileSystem,
  countFileSystemCalls,
  createStateRoot,
  appendEvents,
} from "@paas-backup/testing";
import { createSnapshot, verifySnapshots, type FileSystem } from "../src/index.js";
import { listSnapshots } from "../src/repository/index.js";
import { inlineScanLane } from "../src/snapshot/index.js";
import { memberCacheDir } from "../src/snapshot/member-cache.js";

/**
 * Issue 23 §2: a full keeps each log's gzip members in the member cache and the next full copies
 * those of bytes the log still holds, compressing only the new tail; reuse only what is proven.
 */
const CTX = "internal-dogfood";
const MiB = 1024 * 1024;
const AUDIT = `/state/contexts/${CTX}/events/audit.jsonl`;

function clockFrom(start: string) {
  let t = Date.parse(start);
  return () => new Date((t += 61_000));
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The plain files of a .tar (ustar and pax, as our writer and GNU tar write): path -> [offset of its data, bytes]. */
function tarFiles(tar: Buffer): Map<string, { offset: number; data: Buffer }> {
  const out = new Map<string, { offset: number; data: Buffer }>();
  let at = 0;
  let paxPath: string | null = null;
  while (at + 512 <= tar.length) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.toString("utf8", 0, 100).replace(/\0.*$/s, "");
    const size = parseInt(h.toString("ascii", 124, 136).replace(/\0.*$/s, "").trim() || "0", 8);
    const type = String.fromCharCode(h[156]!);
    const data = tar.subarray(at + 512, at + 512 + size);
    if (type === "x") {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString("utf8"));
      paxPath = m ? m[1]! : null;
    } else {
      if (type === "0") out.set(paxPath ?? name, { offset: at + 512, data });
      paxPath = null;
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

async function setup(eventBytes = 3 * MiB) {
  const fs = new MemoryFileSystem();
  await createStateRoot({
    fs,
    root: "/state",
    contexts: [{ name: CTX, eventBytes }],
    plantSecrets: false,
  });
  const clock = clockFrom("2026-11-24T10:00:00Z");
  const full = () =>
    createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/backups",
      context: CTX,
      clock,
      insecurePlaintext: true,
      memberCache: true,
    });
  return { fs, clock, full };
}

async function grow(fs: MemoryFileSystem, bytes: number, at = 10_000_000) {
  await appendEvents(fs, AUDIT, "audit", CTX, bytes, new Date("2026-11-25T00:00:00Z"), at);
}

/** The artifact inflated as one gzip stream (what `tar -xzf` does) and its audit log checked against the live one. */
async function assertHoldsLiveAudit(fs: MemoryFileSystem, artifact: string) {
  const tar = gunzipSync(Buffer.from(await fs.readFile(artifact)));
  const audit = tarFiles(tar).get("events/audit.jsonl");
  expect(audit, "events/audit.jsonl in the artifact").toBeDefined();
  expect(sha(audit!.data)).toBe(sha(await fs.readFile(AUDIT)));
  return { tar, audit: audit! };
}

describe("the member cache (a daily full costs what the day added)", () => {
  it("copies the last full's members of a log that only grew, and the artifact is byte-identical to the live log", async () => {
    const { fs, full } = await setup();
    const first = await full();
    expect(first.reusedBytes).toBe(0);
    const dir = memberCacheDir("/state", CTX);
    // beside the contexts, 0600, never in the backup root
    const cached = fs.files(dir);
    expect(cached).toContain(`${dir}/index.json`);
    for (const f of cached) expect((await fs.lstat(f)).mode & 0o777, f).toBe(0o600);
    expect(fs.files("/backups").some((f) => f.includes("member"))).toBe(false);

    await grow(fs, 200_000);
    const second = await full();
    const auditBefore = first.storedBytes; // sanity: something was stored
    expect(auditBefore).toBeGreaterThan(0);
    // the audit log held 3 MiB-ish before: its whole 1 MiB members are copied
    expect(second.reusedBytes).toBeGreaterThanOrEqual(MiB);
    expect(second.reusedBytes % MiB).toBe(0);
    const { audit } = await assertHoldsLiveAudit(fs, second.artifact);

    // the log's data starts on a member boundary (its header ended the member before)
    const [snap] = (await listSnapshots(fs, "/backups", CTX)).filter((s) => s.id === second.id);
    const plain = snap!.manifest!.gzipMembers!.plain;
    const starts = new Set<number>([0]);
    plain.reduce((n, p) => (starts.add(n + p), n + p), 0);
    expect(starts.has(audit.offset)).toBe(true);
    for (let k = 1; k * MiB < audit.data.length; k++) expect(starts.has(audit.offset + k * MiB)).toBe(true);

    const [v] = await verifySnapshots({
      fs,
      backupRoot: "/backups",
      context: CTX,
      snapshot: second.id,
      deep: true,
    });
    expect(v).toMatchObject({ ok: true, checksum: "verified" });
  });

  it("keeps a copied member where it lies: the next full's cache writes only the members it compressed", async () => {
    const { fs, full } = await setup();
    await full();
    const dir = memberCacheDir("/state", CTX);
    const readIndex = async () => JSON.parse(String(await fs.readFile(`${dir}/index.json`)));
    const auditOf = (index: { logs: { path: string }[] }) =>
      index.logs.find((l) => l.path === "events/audit.jsonl") as unknown as {
        members: { bytes: number }[];
        segments: { name: string; from: number; offset: number }[];
      };
    const first = auditOf(await readIndex());
    expect(first.segments).toHaveLength(1);
    const firstBlob = first.segments[0]!.name;
    const firstBlobBytes = Buffer.from(await fs.readFile(`${dir}/${firstBlob}`));
    // a day's growth of several members: the second full copies the first's and compresses the rest
    await grow(fs, 2.5 * MiB, 20_000_000);
    const second = await full();
    // (reusedBytes counts every log's; the audit log's part of it is the first full's members)
    expect(second.reusedBytes).toBeGreaterThanOrEqual(first.members.length * MiB);
    const after = auditOf(await readIndex());
    expect(after.segments[0]).toEqual({ name: firstBlob, from: 0, offset: 0 });
    expect(after.segments[1]!.from).toBe(first.members.length);
    expect(after.segments[1]!.name).not.toBe(firstBlob);
    // the first blob is untouched, the new one holds only the new members
    expect(sha(await fs.readFile(`${dir}/${firstBlob}`))).toBe(sha(firstBlobBytes));
    const newBlob = Buffer.from(await fs.readFile(`${dir}/${after.segments[1]!.name}`));
    expect(newBlob.length).toBe(after.members.slice(first.members.length).reduce((n, m) => n + m.bytes, 0));
    // a third full copies members from both blobs and still holds the live log byte for byte
    await grow(fs, 300_000, 30_000_000);
    const third = await full();
    expect(third.reusedBytes - second.reusedBytes).toBe((after.members.length - first.members.length) * MiB);
    await assertHoldsLiveAudit(fs, third.artifact);
    // blobs no index names are swept; both still named are kept
    const index = await readIndex();
    expect(auditOf(index).segments.map((g) => g.name)).toContain(firstBlob);
    const named = new Set<string>(
      index.logs.flatMap((l: { segments: { name: string }[] }) => l.segments.map((g) => `${dir}/${g.name}`)),
    );
    expect(
      fs
        .files(dir)
        .filter((f) => f.endsWith(".members"))
        .sort(),
    ).toEqual([...named].sort());
  });

  it("reuses nothing of a log rewritten since (its prefix no longer hashes to what the full recorded)", async () => {
    const { fs, full } = await setup();
    await full();
    // one byte changed in the first member of every log
    for (const log of ["audit", "deployments", "alerts"]) {
      const path = `/state/contexts/${CTX}/events/${log}.jsonl`;
      const bytes = Buffer.from(await fs.readFile(path));
      bytes[10] = bytes[10] === 0x41 ? 0x42 : 0x41;
      await fs.writeFile(path, bytes, { mode: 0o600 });
    }
    await grow(fs, 50_000);
    const next = await full();
    expect(next.reusedBytes).toBe(0);
    await assertHoldsLiveAudit(fs, next.artifact);
    // the cache now holds this full's members
    const index = JSON.parse(String(await fs.readFile(`${memberCacheDir("/state", CTX)}/index.json`)));
    expect(index.snapshot).toBe(next.id);
  });

  it("compresses again a cached member whose bytes do not hash to what the full recorded", async () => {
    const { fs, full } = await setup();
    await full();
    const dir = memberCacheDir("/state", CTX);
    const index = JSON.parse(String(await fs.readFile(`${dir}/index.json`)));
    const log = index.logs.find((l: { path: string }) => l.path === "events/audit.jsonl");
    const blob = `${dir}/${log.segments[0].name}`;
    const damaged = Buffer.from(await fs.readFile(blob));
    damaged[20] ^= 0xff; // inside the first member
    await fs.writeFile(blob, damaged, { mode: 0o600 });
    await grow(fs, 50_000);
    const next = await full();
    await assertHoldsLiveAudit(fs, next.artifact);
    // the damaged member was compressed from the source; the others were still copied
    const reusedWithout = next.reusedBytes;
    const { fs: fs2, full: full2 } = await setup();
    await full2();
    await grow(fs2, 50_000);
    const intact = await full2();
    expect(reusedWithout).toBe(intact.reusedBytes - MiB);
  });

  it("reuses nothing when the scanner's rules changed since the cached full", async () => {
    const { fs, full } = await setup();
    await full();
    const path = `${memberCacheDir("/state", CTX)}/index.json`;
    const index = JSON.parse(String(await fs.readFile(path)));
    await fs.writeFile(path, JSON.stringify({ ...index, scannerRules: index.scannerRules - 1 }), {
      mode: 0o600,
    });
    await grow(fs, 50_000);
    const next = await full();
    expect(next.reusedBytes).toBe(0);
    await assertHoldsLiveAudit(fs, next.artifact);
  });

  it("is left alone without memberCache (SDK default): nothing is written into the state root", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: CTX, eventBytes: 2 * MiB }],
      plantSecrets: false,
    });
    const snap = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/backups",
      context: CTX,
      clock: clockFrom("2026-11-24T10:00:00Z"),
      insecurePlaintext: true,
    });
    expect(snap.reusedBytes).toBe(0);
    expect(fs.files("/state/.paas-backup")).toEqual([]);
  });
});

describe("the member cache under faults", () => {
  it("a throw or a crash at any filesystem call of a full that keeps members leaves the next full holding the live logs", async () => {
    // small enough to sweep quickly, large enough that the audit log has a whole member to copy
    const { fs, full } = await setup(300_000);
    await grow(fs, 1.1 * MiB, 5_000_000);
    expect(Buffer.from(await fs.readFile(AUDIT)).length).toBeGreaterThan(MiB);
    expect((await full()).storedBytes).toBeGreaterThan(0);
    await grow(fs, 20_000);
    const fixture = fs.clone();
    const run = (f: FileSystem, clock: () => Date) =>
      createSnapshot({
        fs: f,
        stateRoot: "/state",
        backupRoot: "/backups",
        context: CTX,
        clock,
        insecurePlaintext: true,
        memberCache: true,
        scanLane: inlineScanLane(),
      });
    const { calls } = await countFileSystemCalls(
      async () => fixture.clone(),
      (f) => run(f, clockFrom("2026-11-26T10:00:00Z")),
    );
    expect(calls).toBeGreaterThan(10);
    console.log(`member cache fault sweep: ${calls} injection points x 2 modes`);
    for (let at = 1; at <= calls; at++)
      for (const mode of ["throw", "crash"] as const) {
        const where = `${mode} at call ${at}/${calls}`;
        const inner = fixture.clone();
        const clock = clockFrom("2026-11-26T10:00:00Z");
        await run(new FaultInjectingFileSystem(inner, { at, mode, code: "EIO" }), clock).catch(
          () => undefined,
        );
        await grow(inner, 20_000, 20_000_000);
        const next = await run(inner, clock);
        await assertHoldsLiveAudit(inner, next.artifact);
        const [v] = await verifySnapshots({
          fs: inner,
          backupRoot: "/backups",
          context: CTX,
          snapshot: next.id,
          deep: true,
        });
        expect(v, where).toMatchObject({ ok: true });
      }
  });
});
