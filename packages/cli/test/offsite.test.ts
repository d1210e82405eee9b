import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from "vitest";
import { existsSync, readFileSync, writeFileSync, readdirSync, rmSync, statSync, chmodSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import {
  S3Client,
  PutObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
} from "@aws-sdk/client-s3";
import { pruneOffsite } from "@paas-backup/core/offsite";
import { pushOffsite, createSnapshot } from "@paas-backup/core";
import { MemoryStorage, startRgw, type Rgw } from "@paas-backup/testing";
import { S3Storage } from "@paas-backup/s3";
import { nodeFs } from "@paas-backup/core/node";
import { CLI, makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
let creds: Record<string, string>;

let server: Rgw;
let endpoint: string;
let proxy: Server;
let proxyEndpoint: string;
const seenHeaders: Record<string, string | string[] | undefined>[] = [];
let client: S3Client;

beforeAll(async () => {
  server = await startRgw();
  creds = server.env;
  const addr = { port: Number(new URL(server.endpoint).port) };
  endpoint = `http://127.0.0.1:${addr.port}`;
  // A recording proxy in front of RGW: shows which headers we send.
  proxy = createServer((req, res) => {
    seenHeaders.push({ method: req.method, url: req.url, ...req.headers });
    const up = request(
      { host: "127.0.0.1", port: addr.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 500, r.headers);
        r.pipe(res);
      },
    );
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", () => r()));
  proxyEndpoint = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  client = server.client;
});

afterAll(async () => {
  await new Promise((r) => proxy.close(r));
  await server.stop();
});

/** The backup root's identity: offsite keys live below roots/<id>/. */
function rootOf(backupRoot: string): string {
  return JSON.parse(readFileSync(join(backupRoot, "paas-backup.repository.json"), "utf8")).id;
}

async function newBucket(): Promise<string> {
  return server.createBucket({ prefix: "backups" });
}

describe("offsite copies to an S3-compatible server", () => {
  let sb: Sandbox;
  let bucket: string;
  let s3: string[];
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 200_000, releases: 1 }]);
    bucket = await newBucket();
    s3 = ["--to", `s3://${bucket}/si-paas`, "--endpoint", endpoint, "--path-style"];
  });
  afterEach(() => sb.cleanup());
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, ...args], { env: { ...creds, ...env } });

  it("pushes every daily full once, confirms it, lists and verifies it, and says it is not immutable", async () => {
    await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    const inc = await cli([
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    const f2 = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    const push = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const r = push.json.data[0];
    expect(r.pushed.map((c: any) => c.id)).toHaveLength(2);
    expect(r.pushed.map((c: any) => c.id)).not.toContain(inc.json.data[0].id);
    for (const c of r.pushed) expect(c).toMatchObject({ confirmedBy: "reread", immutable: false });
    expect(r.pushed.find((c: any) => c.id === f2.id).sha256).toBe(f2.sha256);
    const again = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(again.json.data[0].pushed).toEqual([]);
    expect(again.json.data[0].alreadyThere).toHaveLength(2);
    // the object really is there, with our sha256 metadata, under <prefix>/roots/<backup root id>/<context>/
    const obj = await client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${f2.id}.tar.gz`,
      }),
    );
    expect(obj.Metadata?.sha256).toBe(f2.sha256);
    const list = await cli(["--json", "offsite", "list", "--context", CTX, ...s3]);
    expect(list.json.data[0].entries.map((e: any) => [e.id, e.confirmed, e.immutable])).toEqual(
      r.pushed.map((c: any) => [c.id, true, false]).sort(),
    );
    const verify = await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.json.data[0].warnings[0]).toMatch(/not immutable/);
    const strict = await cli(["--json", "offsite", "verify", "--context", CTX, "--require-immutable", ...s3]);
    expect(strict.code).toBe(4);
  });

  it("sends Object Lock headers to a bucket with Object Lock: RGW holds the copy and refuses to delete it", async () => {
    await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    const locked = await server.createBucket({ prefix: "locked", objectLock: true });
    seenHeaders.length = 0;
    const push = await cli([
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `s3://${locked}/si-paas`,
      "--endpoint",
      proxyEndpoint,
      "--path-style",
      "--lock-mode",
      "COMPLIANCE",
      "--lock-days",
      "30",
      "--require-immutable",
      "--allow-plaintext",
    ]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const puts = seenHeaders.filter((h) => h.method === "PUT" && String(h.url).includes(".tar.gz"));
    expect(puts.length).toBeGreaterThan(0);
    for (const h of puts) {
      expect(h["x-amz-object-lock-mode"]).toBe("COMPLIANCE");
      const until = Date.parse(String(h["x-amz-object-lock-retain-until-date"]));
      expect(until - Date.now()).toBeGreaterThan(29 * 86_400_000);
      expect(h["x-amz-meta-sha256"]).toMatch(/^[0-9a-f]{64}$/);
      expect(h["x-amz-checksum-sha256"]).toBeTruthy();
    }
    const r = push.json.data[0];
    expect(r.immutability.enabled).toBe(true);
    expect(r.pushed[0].immutable).toBe(true);
    // the server itself keeps it: the locked version cannot be deleted, even by its owner
    const key = `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${r.pushed[0].id}.tar.gz`;
    const head = await client.send(new HeadObjectCommand({ Bucket: locked, Key: key }));
    expect(head.ObjectLockMode).toBe("COMPLIANCE");
    const refused = await client
      .send(new DeleteObjectCommand({ Bucket: locked, Key: key, VersionId: head.VersionId }))
      .catch((e: any) => e);
    expect(refused.$metadata?.httpStatusCode).toBe(403);
    const list = await cli([
      "--json",
      "offsite",
      "list",
      "--context",
      CTX,
      "--to",
      `s3://${locked}/si-paas`,
      "--endpoint",
      endpoint,
      "--path-style",
    ]);
    expect(list.json.data[0].entries.map((e: any) => e.immutable)).toEqual([true]);
  });

  it("sends no lock headers to a bucket without Object Lock, says so, and refuses to call the copy immutable", async () => {
    await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    seenHeaders.length = 0;
    const push = await cli([
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `s3://${bucket}/locked`,
      "--endpoint",
      proxyEndpoint,
      "--path-style",
      "--lock-mode",
      "COMPLIANCE",
      "--lock-days",
      "30",
      "--require-immutable",
      "--allow-plaintext",
    ]);
    // S3 and RGW refuse retention headers on such a bucket (400): the copy goes up without them
    const puts = seenHeaders.filter((h) => h.method === "PUT" && String(h.url).includes(".tar.gz"));
    expect(puts.length).toBeGreaterThan(0);
    for (const h of puts) expect(h["x-amz-object-lock-mode"]).toBeUndefined();
    expect(seenHeaders.some((h) => String(h.url).includes("object-lock"))).toBe(true);
    expect(push.code, push.stdout + push.stderr).toBe(4);
    expect(push.json.data[0].immutability.enabled).toBe(false);
    expect(push.json.data[0].pushed[0].immutable).toBe(false);
    expect(push.json.warnings.join(" ")).toMatch(/copies are uploaded without retention/);
  });

  it("detects an object changed, truncated or removed behind our back", async () => {
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    await cli(["offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    const key = `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz`;
    const original = readFileSync(s.artifact);
    const flipped = Buffer.from(original);
    flipped[100] ^= 0xff;
    // same size, same metadata: only reading the bytes shows it
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: flipped, Metadata: { sha256: s.sha256 } }),
    );
    const shallow = await cli(["--json", "offsite", "verify", "--context", CTX, ...s3]);
    expect(shallow.code).toBe(0);
    const deep = await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3]);
    expect(deep.code).toBe(3);
    expect(deep.json.data[0].results[0].problems.join(" ")).toMatch(/changed behind our back/);
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: original.subarray(0, 50),
        Metadata: { sha256: s.sha256 },
      }),
    );
    const truncated = await cli(["--json", "offsite", "verify", "--context", CTX, ...s3]);
    expect(truncated.code).toBe(3);
    expect(truncated.json.data[0].results[0].problems.join(" ")).toMatch(/truncated/);
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    const removed = await cli(["--json", "offsite", "verify", "--context", CTX, ...s3]);
    expect(removed.code).toBe(3);
    expect(removed.json.data[0].results[0].problems.join(" ")).toMatch(/removed/);
  });

  it("streams a large artifact as a multipart upload, resumes an interrupted push, and restores from offsite", async () => {
    const ctx = sb.state.contextDir(CTX);
    writeFileSync(join(ctx, "releases", "r-40", "bundle.bin"), randomBytes(12 * 1024 * 1024));
    const fulls = [];
    for (let i = 0; i < 3; i++)
      fulls.push(
        (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext", "--include", "releases"]))
          .json.data[0],
      );
    expect(fulls[0].bytes).toBeGreaterThan(12 * 1024 * 1024);
    const env = { ...creds, PAAS_BACKUP_S3_PART_SIZE: String(5 * 1024 * 1024) };
    // Interrupt the push as soon as the first copy is recorded.
    const child = spawn(
      process.execPath,
      [CLI, ...sb.flags, "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
        stdio: "ignore",
      },
    );
    const exited = new Promise((r) => child.on("close", r));
    const record = join(
      sb.backupRoot,
      CTX,
      "offsite",
      `s3___${bucket}_si-paas.json`.replace(/[^A-Za-z0-9._-]/g, "_"),
    );
    const recordDir = join(sb.backupRoot, CTX, "offsite");
    const t0 = Date.now();
    while (
      Date.now() - t0 < 60_000 &&
      !(existsSync(recordDir) && readdirSync(recordDir).some((f) => f.endsWith(".json")))
    )
      await new Promise((r) => setTimeout(r, 10));
    child.kill("SIGKILL");
    await exited;
    const recorded = Object.keys(
      JSON.parse(
        readFileSync(
          join(
            recordDir,
            readdirSync(recordDir).find((f) => f.endsWith(".json"))!,
          ),
          "utf8",
        ),
      ).copies,
    );
    expect(recorded.length).toBeGreaterThanOrEqual(1);
    void record;
    const resumed = await runCli(
      [...sb.flags, "--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"],
      {
        env,
      },
    );
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const r = resumed.json.data[0];
    expect(r.alreadyThere.sort()).toEqual(recorded.sort());
    expect([...r.alreadyThere, ...r.pushed.map((c: any) => c.id)].sort()).toEqual(
      fulls.map((f) => f.id).sort(),
    );
    for (const c of r.pushed) expect(c.multipart).toBe(true);
    const deep = await runCli(
      [...sb.flags, "--json", "offsite", "verify", "--context", CTX, "--deep", ...s3],
      { env },
    );
    expect(deep.code, deep.stdout).toBe(0);

    // The local copy is lost: restore fetches it from the target, checks it, restores as usual.
    const wanted = treeHashes(ctx, (rel) =>
      /^(vault|cache|addons)|telegram|\.secret$|\.env$|audit\.jsonl$/.test(rel),
    );
    const newest = fulls[2];
    rmSync(newest.artifact);
    writeFileSync(join(ctx, "targets.json"), "{}\n");
    const restore = await cli([
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-OFF",
      "--yes",
      "--from-offsite",
      `s3://${bucket}/si-paas`,
      "--endpoint",
      endpoint,
      "--path-style",
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.data[0].snapshot.id).toBe(newest.id);
    expect(readFileSync(newest.artifact).length).toBe(newest.bytes);
    expect(
      treeHashes(ctx, (rel) => /^(vault|cache|addons)|telegram|\.secret$|\.env$|audit\.jsonl$/.test(rel)),
    ).toEqual(wanted);
  });

  it("says which target failed and what to do when the server does not answer", async () => {
    await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    const r = await cli([
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `s3://${bucket}/si-paas`,
      "--endpoint",
      "http://127.0.0.1:9",
      "--path-style",
    ]);
    // an unreachable server is the environment, not a bug in paas-backup: exit 10, never 1
    expect(r.code).toBe(10);
    expect(r.json.error.code).toBe("PAAS_BACKUP_STORAGE_FAILED");
    expect(r.json.error.message).toContain(`s3://${bucket}/si-paas`);
    expect(r.json.error.remediation).toContain("--endpoint");
    expect(r.stdout + r.stderr).not.toContain(server.secretAccessKey);
  });

  it("lists a target page by page (ListObjectsV2 pagination)", async () => {
    const storage = new S3Storage({
      bucket,
      prefix: "p",
      url: `s3://${bucket}/p`,
      endpoint,
      pathStyle: true,
      client,
      pageSize: 2,
    });
    const { Readable } = await import("node:stream");
    for (let i = 0; i < 5; i++)
      await storage.put(`c/obj-${i}`, Readable.from([Buffer.from(`x${i}`)]), {
        sha256: "0".repeat(64),
        size: 2,
      });
    const keys: string[] = [];
    for await (const o of storage.list("c/")) keys.push(o.key);
    expect(keys).toEqual(["c/obj-0", "c/obj-1", "c/obj-2", "c/obj-3", "c/obj-4"]);
  });
});

describe("a directory as the offsite target", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 50_000 }]);
  });
  afterEach(() => {
    const walk = (d: string) => {
      if (!existsSync(d)) return;
      chmodSync(d, 0o700);
      for (const n of readdirSync(d)) if (statSync(join(d, n)).isDirectory()) walk(join(d, n));
    };
    walk(join(sb.dir, "offsite"));
    sb.cleanup();
  });

  it("writes read-only copies atomically and detects change, truncation and removal", async () => {
    const s = (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]))
      .json.data[0];
    const target = join(sb.dir, "offsite");
    const to = ["--to", `file://${target}`];
    const push = await runCli([
      ...sb.flags,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      ...to,
      "--allow-plaintext",
    ]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const dir = join(target, "roots", rootOf(sb.backupRoot), CTX);
    const copy = join(dir, `${s.id}.tar.gz`);
    expect(statSync(copy).mode & 0o777).toBe(0o400);
    expect(statSync(dir).mode & 0o777).toBe(0o500);
    expect(readFileSync(copy).equals(readFileSync(s.artifact))).toBe(true);
    expect(readdirSync(dir).filter((n) => n.endsWith(".partial"))).toEqual([]);
    expect((await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to])).code).toBe(
      0,
    );
    chmodSync(dir, 0o700);
    chmodSync(copy, 0o600);
    const bytes = readFileSync(copy);
    bytes[bytes.length - 30] ^= 1;
    writeFileSync(copy, bytes);
    const changed = await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to]);
    expect(changed.code).toBe(3);
    expect(changed.json.data[0].results[0].problems.join(" ")).toMatch(/changed behind our back/);
    writeFileSync(copy, bytes.subarray(0, 10));
    expect(
      (
        await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to])
      ).json.data[0].results[0].problems.join(" "),
    ).toMatch(/truncated/);
    rmSync(copy);
    expect(
      (
        await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to])
      ).json.data[0].results[0].problems.join(" "),
    ).toMatch(/removed/);
  });
});

describe("tick with configured offsite targets", () => {
  it("copies the day's full to every configured target after pruning", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    try {
      const config = join(sb.dir, "config.json");
      const disk = join(sb.dir, "nfs");
      writeFileSync(
        config,
        JSON.stringify({
          offsite: { targets: [{ name: "nfs", url: `file://${disk}`, allowPlaintext: true }] },
        }),
      );
      const r = await runCli([
        ...sb.flags,
        "--config",
        config,
        "--json",
        "tick",
        "--context",
        CTX,
        "--insecure-plaintext",
      ]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const o = r.json.data[0];
      expect(o.action).toBe("full");
      expect(o.offsite[0]).toMatchObject({
        target: `file://${disk}`,
        pushed: [{ id: o.snapshot.id, sha256: o.snapshot.sha256 }],
      });
      const dir = join(disk, "roots", rootOf(sb.backupRoot), CTX);
      expect(readFileSync(join(dir, `${o.snapshot.id}.tar.gz`)).length).toBe(o.snapshot.bytes);
      chmodSync(dir, 0o700);
    } finally {
      sb.cleanup();
    }
  });
});

describe("offsite retention", () => {
  it("never deletes a copy whose Object Lock retention has not expired, and prunes the rest by its own policy", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 5_000 }]);
    try {
      const storage = new MemoryStorage("memory://locked", true);
      const locked = {
        name: "locked",
        storage,
        objectLock: { mode: "COMPLIANCE" as const, days: 30 },
        allowPlaintext: true,
      };
      const days = [
        "2026-06-01",
        "2026-06-02",
        "2026-06-03",
        "2026-06-04",
        "2026-06-05",
        "2026-06-06",
        "2026-06-07",
        "2026-06-08",
        "2026-06-09",
        "2026-06-10",
      ];
      for (const d of days) {
        await createSnapshot({
          fs: nodeFs,
          stateRoot: sb.stateRoot,
          backupRoot: sb.backupRoot,
          context: CTX,
          clock: () => new Date(`${d}T01:00:00Z`),
          insecurePlaintext: true,
        });
        await pushOffsite({
          fs: nodeFs,
          backupRoot: sb.backupRoot,
          context: CTX,
          target: locked,
          clock: () => new Date(`${d}T01:00:00Z`),
        });
      }
      // 2026-06-20: every copy is still locked (30 days): nothing may go, though the policy would drop some
      const held = await pruneOffsite({
        fs: nodeFs,
        backupRoot: sb.backupRoot,
        context: CTX,
        target: locked,
        clock: () => new Date("2026-06-20T00:00:00Z"),
      });
      expect(held.remove).toEqual([]);
      expect(held.heldByLock.length).toBeGreaterThan(0);
      // once locks expire the policy (7 daily + 4 weekly + 3 monthly over fulls) applies; real time is past the locks here
      const unlocked = {
        name: "plain",
        storage: new MemoryStorage("memory://plain", false),
        allowPlaintext: true,
      };
      for (const d of days)
        await pushOffsite({
          fs: nodeFs,
          backupRoot: sb.backupRoot,
          context: CTX,
          target: unlocked,
          clock: () => new Date(`${d}T01:00:00Z`),
        });
      const pruned = await pruneOffsite({
        fs: nodeFs,
        backupRoot: sb.backupRoot,
        context: CTX,
        target: unlocked,
        clock: () => new Date("2026-08-01T00:00:00Z"),
      });
      expect(pruned.remove.length).toBe(days.length - pruned.keep.length);
      expect(pruned.keep.map((k) => k.reasons.join(",")).join(" ")).toMatch(/daily 2026-06-10/);
      expect(pruned.remove.length).toBeGreaterThan(0);
      const left = [...unlocked.storage.objects.keys()].filter((k) => k.endsWith(".tar.gz"));
      expect(left).toHaveLength(pruned.keep.length);
    } finally {
      sb.cleanup();
    }
  });
});
