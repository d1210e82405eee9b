import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { ListMultipartUploadsCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { startRgw, type Rgw } from "@paas-backup/testing";
import { S3Storage } from "@paas-backup/s3";
import {
  probeConditionalWrites,
  readFencedLog,
  readLeaseState,
  acquireLease,
} from "@paas-backup/core/repository";
import { startS3rver, type S3rver } from "../../cli/test/s3rver.js";

// Several hosts sharing one bucket, on a real S3 server (Ceph RGW 16): the create-only writes
// leases and commits rest on, from separate processes (packages/s3/test/lease-worker.mjs, which
// runs the built packages), with SIGSTOP and SIGKILL where a host pauses or dies.

let rgw: Rgw;
beforeAll(async () => {
  rgw = await startRgw();
});
afterAll(async () => {
  await rgw?.stop();
});

const WORKER = join(import.meta.dirname, "lease-worker.mjs");

interface Worker {
  child: ChildProcess;
  events: Record<string, unknown>[];
  next(event: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function worker(options: Record<string, unknown>): Worker {
  const child = spawn(process.execPath, [WORKER, JSON.stringify({ endpoint: rgw.endpoint, ...options })], {
    env: { PATH: process.env.PATH, ...rgw.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const events: Record<string, unknown>[] = [];
  const waiters: { event: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  let buffer = "";
  child.stdout!.on("data", (chunk) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const e = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
      buffer = buffer.slice(nl + 1);
      events.push(e);
      for (const w of waiters.filter((w) => w.event === e.event)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  child.stderr!.resume();
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return {
    child,
    events,
    exited,
    next: (event) =>
      new Promise((resolve, reject) => {
        const seen = events.find((e) => e.event === event);
        if (seen) return resolve(seen);
        waiters.push({ event, resolve });
        void exited.then((code) =>
          reject(new Error(`worker exited ${code} before "${event}": ${JSON.stringify(events)}`)),
        );
      }),
  };
}

function storageOf(bucket: string, prefix = "fleet"): S3Storage {
  return new S3Storage({
    bucket,
    prefix,
    url: `s3://${bucket}/${prefix}`,
    endpoint: rgw.endpoint,
    pathStyle: true,
    client: rgw.client,
  });
}

/** server time passes in whole seconds (Date and Last-Modified): wait until the server's clock moved `ms` */
async function serverWait(storage: S3Storage, ms: number): Promise<void> {
  const start = (await storage.serverTime()).getTime();
  while ((await storage.serverTime()).getTime() - start < ms) await new Promise((r) => setTimeout(r, 200));
}

describe("create-only writes on RGW", () => {
  it("lets exactly one of many racing writers create a key, and gives the server's time", async () => {
    const storage = storageOf(await rgw.createBucket({ prefix: "race" }));
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => storage.createOnly("k", Buffer.from(`writer ${i}\n`))),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const won = results.find((r) => r.created) as { at: Date };
    expect(Math.abs(won.at.getTime() - (await storage.serverTime()).getTime())).toBeLessThan(5_000);
    // the object holds exactly the winner's bytes, whichever writer won
    const winner = results.findIndex((r) => r.created);
    const chunks: Buffer[] = [];
    for await (const c of await storage.get("k")) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe(`writer ${winner}\n`);
  });

  it("passes the probe on a plain bucket, and refuses a versioned or Object Lock bucket (RGW 16 adds a version)", async () => {
    await expect(probeConditionalWrites(storageOf(await rgw.createBucket()))).resolves.toBeUndefined();
    for (const kind of [{ versioning: true }, { objectLock: true }]) {
      const bucket = await rgw.createBucket({ prefix: "versioned", ...kind });
      const err = await probeConditionalWrites(storageOf(bucket)).catch((e: unknown) => e);
      expect(err, JSON.stringify(kind)).toMatchObject({
        code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
        exitCode: 4,
      });
      expect((err as Error).message).toContain(`s3://${bucket}/fleet`);
    }
  });

  it("refuses s3rver, which ignores the condition", async () => {
    let s3rver: S3rver | undefined;
    try {
      s3rver = await startS3rver();
      const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3");
      const client = new S3Client({
        endpoint: s3rver.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      });
      await client.send(new CreateBucketCommand({ Bucket: "fleet" }));
      const storage = new S3Storage({ bucket: "fleet", prefix: "p", url: "s3://fleet/p", client });
      await expect(probeConditionalWrites(storage)).rejects.toMatchObject({
        code: "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
      });
    } finally {
      await s3rver?.stop();
    }
  });
});

describe("several hosts, one bucket (RGW)", () => {
  it("three host processes take turns on one lease: every commit lands once, in epoch order, none fenced", async () => {
    const bucket = await rgw.createBucket({ prefix: "turns" });
    const hosts = ["host-a", "host-b", "host-c"].map((host) =>
      worker({
        bucket,
        prefix: "fleet",
        name: "context/shared",
        host,
        ttlMs: 10_000,
        commits: 3,
        rounds: 3,
        waitForLease: true,
        probe: true,
      }),
    );
    expect(await Promise.all(hosts.map((h) => h.exited))).toEqual([0, 0, 0]);
    const log = await readFencedLog(storageOf(bucket), "context/shared");
    expect(log).toHaveLength(27);
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: 27 }, (_, i) => i + 1));
    expect(log.every((e) => e.kind === "commit" && !e.fenced)).toBe(true);
    // one writer at a time: an epoch's three commits are consecutive, epochs only grow
    const epochs = log.map((e) => e.epoch);
    expect(epochs).toEqual([...epochs].sort((a, b) => a - b));
    for (let i = 0; i < 27; i += 3) expect(new Set(epochs.slice(i, i + 3)).size).toBe(1);
    expect(new Set(epochs).size).toBe(9);
    expect(new Set(log.map((e) => e.data.host))).toEqual(new Set(["host-a", "host-b", "host-c"]));
  });

  it("a writer paused past its lease (SIGSTOP) fails to commit once it goes on; the host that took over commits", async () => {
    const bucket = await rgw.createBucket({ prefix: "paused" });
    const storage = storageOf(bucket);
    const a = worker({
      bucket,
      prefix: "fleet",
      name: "context/c1",
      host: "host-a",
      ttlMs: 3_000,
      holdMs: 500,
      commits: 1,
    });
    await a.next("holding");
    a.child.kill("SIGSTOP");
    // while it is stopped, a second host cannot take the lease before the ttl has passed on the server's clock
    const early = await acquireLease({
      storage,
      name: "context/c1",
      holder: { host: "host-b", pid: 1, command: "test" },
      ttlMs: 3_000,
    }).catch((e: unknown) => e);
    expect(early).toMatchObject({ code: "PAAS_BACKUP_LOCKED", data: { holder: { host: "host-a" } } });
    await serverWait(storage, 5_000);
    const b = worker({
      bucket,
      prefix: "fleet",
      name: "context/c1",
      host: "host-b",
      ttlMs: 3_000,
      commits: 1,
    });
    expect(await b.exited).toBe(0);
    expect(b.events.find((e) => e.event === "acquired")).toMatchObject({ epoch: 2, tookOver: 1 });
    a.child.kill("SIGCONT");
    expect(await a.exited).toBe(6);
    expect(a.events.at(-1)).toMatchObject({ event: "error", code: "PAAS_BACKUP_LEASE_LOST" });
    const log = await readFencedLog(storage, "context/c1");
    expect(log.map((e) => [e.epoch, e.kind, e.data.host ?? null, e.fenced])).toEqual([
      [2, "begin", null, false],
      [2, "commit", "host-b", false],
    ]);
  });

  it("a host killed mid-upload (SIGKILL) blocks the context only until its lease lapses; its staged upload is swept", async () => {
    const bucket = await rgw.createBucket({ prefix: "killed" });
    const storage = storageOf(bucket);
    const a = worker({
      bucket,
      prefix: "fleet",
      name: "context/c1",
      host: "host-a",
      ttlMs: 3_000,
      uploadBytes: 64 * 1024 * 1024,
      commits: 1,
    });
    await a.next("uploading");
    await new Promise((r) => setTimeout(r, 300));
    a.child.kill("SIGKILL");
    await a.exited;
    expect((await readLeaseState(storage, "context/c1")).released).toBe(false);
    await serverWait(storage, 4_000);
    const b = worker({
      bucket,
      prefix: "fleet",
      name: "context/c1",
      host: "host-b",
      ttlMs: 3_000,
      commits: 1,
    });
    expect(await b.exited, JSON.stringify(b.events)).toBe(0);
    expect(b.events.find((e) => e.event === "acquired")).toMatchObject({ epoch: 2, tookOver: 1 });
    expect(await storage.head("context/c1/big-1.bin")).toBeNull();
    const listed = await rgw.client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: "fleet/context/c1/" }),
    );
    const uploads = async () =>
      (
        await rgw.client.send(
          new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: "fleet/context/c1/" }),
        )
      ).Uploads ?? [];
    const unfinished = (await uploads()).map((u) => u.Key!.slice("fleet/".length));
    const far = new Date(Date.now() + 86_400_000);
    const swept = await storage.sweepStaged("context/c1/", far);
    // a completed staged object is a leftover to sweep, and so is a multipart upload never
    // completed (no listing of objects shows it, yet its parts are stored): it is aborted
    const leftovers = (listed.Contents ?? []).map((o) => o.Key!.slice("fleet/".length));
    expect([...swept].sort()).toEqual([...new Set([...leftovers, ...unfinished])].sort());
    expect(await uploads()).toEqual([]);
    expect((await readFencedLog(storage, "context/c1")).filter((e) => e.kind === "commit")).toHaveLength(1);
  });
});
