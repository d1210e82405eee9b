import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from "vitest";
import {
  existsSync,
  readFileSync,
  writeFileSync,
  readdirSync,
  rmSync,
  mkdtempSync,
  statSync,
  chmodSync,
  appendFileSync,
  mkdirSync,
} from "node:fs";
import { createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  S3Client,
  PutObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  CopyObjectCommand,
  HeadObjectCommand,
} from "@aws-sdk/client-s3";
import { startRgw, type Rgw } from "@paas-backup/testing";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

// Offsite copies that heal themselves, many backup roots in one bucket, lock extension and
// rotating data subsets: against a real S3 server (Ceph RGW) on 127.0.0.1 and a directory target.

const CTX = "internal-dogfood";
let creds: Record<string, string>;

let server: Rgw;
let endpoint: string;
let s3port: number;
let client: S3Client;

/** A proxy in front of RGW that records every request (the lock headers and retention bodies sent). */
let lockProxy: Server;
let lockEndpoint: string;
const lockRequests: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];

beforeAll(async () => {
  server = await startRgw();
  creds = server.env;
  const addr = { port: Number(new URL(server.endpoint).port) };
  s3port = addr.port;
  endpoint = `http://127.0.0.1:${addr.port}`;
  lockProxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      lockRequests.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: body.toString("utf8"),
      });
      const up = request(
        { host: "127.0.0.1", port: s3port, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 500, r.headers);
          r.pipe(res);
        },
      );
      up.end(body);
    });
  });
  await new Promise<void>((r) => lockProxy.listen(0, "127.0.0.1", () => r()));
  lockEndpoint = `http://127.0.0.1:${(lockProxy.address() as { port: number }).port}`;
  client = server.client;
});

afterAll(async () => {
  await new Promise((r) => lockProxy.close(r));
  await server.stop();
});

async function newBucket(): Promise<string> {
  return server.createBucket({ prefix: "heal" });
}

function rootOf(backupRoot: string): string {
  return JSON.parse(readFileSync(join(backupRoot, "paas-backup.repository.json"), "utf8")).id;
}

async function bytesOf(bucket: string, key: string): Promise<Buffer> {
  const o = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await o.Body!.transformToByteArray());
}

/** Open up a read-only directory target so the test can tamper with it and clean it up. */
function openUp(dir: string): void {
  if (!existsSync(dir)) return;
  chmodSync(dir, 0o700);
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) openUp(p);
    else chmodSync(p, 0o600);
  }
}

describe("push puts back what is missing or damaged (RGW)", () => {
  let sb: Sandbox;
  let bucket: string;
  let s3: string[];
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 50_000 }]);
    bucket = await newBucket();
    s3 = ["--to", `s3://${bucket}/si-paas`, "--endpoint", endpoint, "--path-style"];
  });
  afterEach(() => sb.cleanup());
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, ...args], { env: { ...creds, ...env } });

  it("re-uploads an object the bucket lost, and its checksum file, on the next push", async () => {
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    expect((await cli(["offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"])).code).toBe(0);
    const key = `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz`;
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${key}.sha256` }));
    expect((await cli(["--json", "offsite", "verify", "--context", CTX, ...s3])).code).toBe(3);
    const push = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const r = push.json.data[0];
    expect(r.alreadyThere).toEqual([]);
    expect(r.pushed.map((c: any) => c.id)).toEqual([s.id]);
    expect(r.repaired).toEqual([{ id: s.id, reason: expect.stringMatching(/removed from the target/) }]);
    expect((await bytesOf(bucket, key)).equals(readFileSync(s.artifact))).toBe(true);
    expect((await bytesOf(bucket, `${key}.sha256`)).toString()).toContain(s.sha256);
    const verify = await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3]);
    expect(verify.code, verify.stdout).toBe(0);
    // and once healthy again, the next push uploads nothing
    const again = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(again.json.data[0]).toMatchObject({ pushed: [], alreadyThere: [s.id], repaired: [] });
  });

  it("replaces a copy that verify --deep found damaged, and a truncated one found by HEAD", async () => {
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    await cli(["offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    const key = `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz`;
    const flipped = Buffer.from(readFileSync(s.artifact));
    flipped[200] ^= 0xff;
    // same size, same metadata: only reading the bytes shows it
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: flipped, Metadata: { sha256: s.sha256 } }),
    );
    expect(
      (await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"])).json.data[0]
        .alreadyThere,
    ).toEqual([s.id]);
    const deep = await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3]);
    expect(deep.code).toBe(3);
    const push = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(push.code, push.stdout).toBe(0);
    expect(push.json.data[0].repaired[0]).toMatchObject({
      id: s.id,
      reason: expect.stringMatching(/changed behind our back/),
    });
    expect((await bytesOf(bucket, key)).equals(readFileSync(s.artifact))).toBe(true);
    expect((await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3])).code).toBe(0);
    // truncated with our metadata kept: the cheap check (HEAD size) sees it without a deep verify
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: readFileSync(s.artifact).subarray(0, 100),
        Metadata: { sha256: s.sha256 },
      }),
    );
    const healed = await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    expect(healed.json.data[0].repaired[0]).toMatchObject({
      id: s.id,
      reason: expect.stringMatching(/100 bytes/),
    });
    expect((await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3])).code).toBe(0);
  });

  it("treats --to URL and the configured target with that URL as one target; --require-immutable judges every copy", async () => {
    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        offsite: {
          targets: [
            {
              name: "bucket",
              url: `s3://${bucket}/si-paas`,
              endpoint,
              pathStyle: true,
              allowPlaintext: true,
            },
          ],
        },
      }),
    );
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    const byUrl = await cli([
      "--config",
      config,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `s3://${bucket}/si-paas/`,
      "--allow-plaintext",
    ]);
    expect(byUrl.code, byUrl.stdout + byUrl.stderr).toBe(0);
    const list = await cli([
      "--config",
      config,
      "--json",
      "offsite",
      "list",
      "--context",
      CTX,
      "--target",
      "bucket",
    ]);
    expect(list.json.data[0].entries.map((e: any) => [e.id, e.confirmed])).toEqual([[s.id, true]]);
    const byName = await cli(["--config", config, "--json", "offsite", "push", "--context", CTX]);
    expect(byName.json.data[0]).toMatchObject({ pushed: [], alreadyThere: [s.id] });
    // nothing new to push, but the copy there is not immutable: exit 4, not 0
    const strict = await cli([
      "--config",
      config,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--require-immutable",
    ]);
    expect(strict.code).toBe(4);
    expect(strict.json.data[0].copies).toEqual([
      { id: s.id, ok: true, immutable: false, immutableUntil: null },
    ]);
  });

  it("extends the Object Lock of copies retention still keeps, and warns that the lock is shorter than retention", async () => {
    // A real Object Lock bucket: every simulated date is after the real clock, as RGW refuses a
    // retention date in the past.
    const base = Math.ceil(Date.now() / 3_600_000) * 3_600_000;
    const at = (days: number, hours: number) => new Date(base + days * 86_400_000 + hours * 3_600_000);
    const env = (when: Date) => ({ PAAS_BACKUP_NOW: when.toISOString() });
    const locked = await server.createBucket({ prefix: "locked", objectLock: true });
    const lockS3 = [
      "--to",
      `s3://${locked}/locked`,
      "--endpoint",
      lockEndpoint,
      "--path-style",
      "--lock-mode",
      "GOVERNANCE",
      "--lock-days",
      "10",
    ];
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"], env(at(0, 1))))
      .json.data[0];
    lockRequests.length = 0;
    const push = await cli(
      ["--json", "offsite", "push", "--context", CTX, ...lockS3, "--allow-plaintext"],
      env(at(0, 2)),
    );
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.warnings.join(" ")).toMatch(
      /holds copies 10 days, but offsite retention keeps them up to 93 days/,
    );
    expect(push.json.data[0].immutability.enabled).toBe(true);
    expect(push.json.data[0].extended).toEqual([]);
    expect(lockRequests.filter((r) => r.url.includes("retention"))).toEqual([]);
    // six days on, less than half of the 10 days is left: push extends to now + 10 days, and RGW takes it
    lockRequests.length = 0;
    const later = await cli(
      ["--json", "offsite", "push", "--context", CTX, ...lockS3, "--allow-plaintext"],
      env(at(6, 2)),
    );
    expect(later.code, later.stdout).toBe(0);
    const ext = later.json.data[0].extended;
    expect(ext.map((e: any) => e.id)).toEqual([s.id]);
    // (the simulated clock runs on from PAAS_BACKUP_NOW while the command works)
    expect(Date.parse(ext[0].retainUntil) - at(16, 2).getTime()).toBeGreaterThanOrEqual(0);
    expect(Date.parse(ext[0].retainUntil) - at(16, 2).getTime()).toBeLessThan(60_000);
    const sent = lockRequests.filter((r) => r.method === "PUT" && r.url.includes("retention"));
    const keys = sent.map((r) => decodeURIComponent(new URL(r.url, "http://x").pathname));
    expect(keys).toEqual(
      expect.arrayContaining([
        `/${locked}/locked/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz`,
        `/${locked}/locked/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz.sha256`,
      ]),
    );
    // the server holds the copy to the new date
    const held = await client.send(
      new HeadObjectCommand({
        Bucket: locked,
        Key: `locked/roots/${rootOf(sb.backupRoot)}/${CTX}/${s.id}.tar.gz`,
      }),
    );
    expect(held.ObjectLockMode).toBe("GOVERNANCE");
    expect(Math.floor(held.ObjectLockRetainUntilDate!.getTime() / 1000)).toBe(
      Math.floor(Date.parse(ext[0].retainUntil) / 1000),
    );
    for (const r of sent) {
      expect(r.body).toContain("<Mode>GOVERNANCE</Mode>");
      expect(Date.parse(/<RetainUntilDate>([^<]+)</.exec(r.body)![1]!)).toBe(Date.parse(ext[0].retainUntil));
    }
    // the explicit command: nothing due again right after
    const cmd = await cli(["--json", "offsite", "extend-locks", "--context", CTX, ...lockS3], env(at(6, 3)));
    expect(cmd.code).toBe(0);
    expect(cmd.json.data[0].extended).toEqual([]);
    // and again once less than half is left
    const far = await cli(["--json", "offsite", "extend-locks", "--context", CTX, ...lockS3], env(at(14, 3)));
    expect(far.json.data[0].extended.map((e: any) => e.id)).toEqual([s.id]);
  });

  it("--read-data-subset reads a rotating share of the copies so a cycle covers every copy, and finds damage in its turn", async () => {
    const ids: string[] = [];
    for (const day of ["01", "02", "03"])
      ids.push(
        (
          await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
            PAAS_BACKUP_NOW: `2026-06-${day}T01:00:00Z`,
          })
        ).json.data[0].id,
      );
    expect((await cli(["offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"])).code).toBe(0);
    const read: string[][] = [];
    for (let run = 0; run < 3; run++) {
      const v = await cli([
        "--json",
        "offsite",
        "verify",
        "--context",
        CTX,
        "--read-data-subset",
        "33%",
        ...s3,
      ]);
      expect(v.code, v.stdout).toBe(0);
      read.push(v.json.data[0].results.filter((r: any) => r.readData).map((r: any) => r.id));
      expect(v.json.data[0].subset.cycle).toBe(1);
    }
    expect(read.map((r) => r.length)).toEqual([1, 1, 1]);
    expect([...new Set(read.flat())].sort()).toEqual(ids);
    // the rotation lives in the backup root
    const recordDir = join(sb.backupRoot, CTX, "offsite");
    const record = JSON.parse(
      readFileSync(
        join(
          recordDir,
          readdirSync(recordDir).find((f) => f.endsWith(".json"))!,
        ),
        "utf8",
      ),
    );
    expect(record.dataSubset.read.sort()).toEqual(ids);
    // a damaged copy is found by the run whose turn it is (a new cycle starts with the oldest)
    const key = `si-paas/roots/${rootOf(sb.backupRoot)}/${CTX}/${ids[0]}.tar.gz`;
    const flipped = await bytesOf(bucket, key);
    flipped[150] ^= 1;
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: flipped,
        Metadata: { sha256: record.copies[ids[0]!].sha256 },
      }),
    );
    const next = await cli([
      "--json",
      "offsite",
      "verify",
      "--context",
      CTX,
      "--read-data-subset",
      "1",
      ...s3,
    ]);
    expect(next.json.data[0].subset).toMatchObject({ cycle: 2, readThisRun: [ids[0]] });
    expect(next.code).toBe(3);
    expect(next.json.data[0].results.find((r: any) => r.id === ids[0]).problems.join(" ")).toMatch(
      /changed behind our back/,
    );
    const bad = await cli([
      "--json",
      "offsite",
      "verify",
      "--context",
      CTX,
      "--read-data-subset",
      "abc",
      ...s3,
    ]);
    expect(bad.code).toBe(2);
  });

  it("still lists, verifies and restores copies in the layout before backup roots had identities", async () => {
    const s = (await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"])).json.data[0];
    await cli(["offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"]);
    const root = rootOf(sb.backupRoot);
    // Rewrite bucket and record as the previous version left them: <prefix>/<context>/<id>…
    for (const name of [`${s.id}.tar.gz`, `${s.id}.tar.gz.sha256`, `${s.id}.manifest.json`]) {
      await client.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: `si-paas/${CTX}/${name}`,
          CopySource: `/${bucket}/si-paas/roots/${root}/${CTX}/${name}`,
          MetadataDirective: "COPY",
        }),
      );
      await client.send(
        new DeleteObjectCommand({ Bucket: bucket, Key: `si-paas/roots/${root}/${CTX}/${name}` }),
      );
    }
    const recordDir = join(sb.backupRoot, CTX, "offsite");
    const file = join(
      recordDir,
      readdirSync(recordDir).find((f) => f.endsWith(".json"))!,
    );
    const record = JSON.parse(readFileSync(file, "utf8"));
    record.copies[s.id].artifact = `${CTX}/${s.id}.tar.gz`;
    writeFileSync(file, JSON.stringify(record));
    const list = await cli(["--json", "offsite", "list", "--context", CTX, ...s3]);
    expect(list.json.data[0].entries.map((e: any) => [e.id, e.root, e.confirmed])).toEqual([
      [s.id, null, true],
    ]);
    expect((await cli(["--json", "offsite", "verify", "--context", CTX, "--deep", ...s3])).code).toBe(0);
    expect(
      (await cli(["--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"])).json.data[0],
    ).toMatchObject({
      pushed: [],
      alreadyThere: [s.id],
    });
    rmSync(s.artifact);
    const restore = await cli([
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-LEGACY",
      "--yes",
      "--from-offsite",
      `s3://${bucket}/si-paas`,
      "--endpoint",
      endpoint,
      "--path-style",
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.offsite).toMatchObject({ chosen: s.id, fetched: [s.id] });
  });
});

describe("many backup roots, one bucket", () => {
  it("two backup roots, same context, same second, one target: both keep their copy and both verify; a new host restores another's", async () => {
    const a = await makeSandbox([{ name: CTX, eventBytes: 30_000 }]);
    const b = await makeSandbox([{ name: CTX, eventBytes: 30_000 }]);
    const c = await makeSandbox([{ name: CTX, eventBytes: 1_000 }]);
    try {
      const bucket = await newBucket();
      const s3 = ["--to", `s3://${bucket}/shared`, "--endpoint", endpoint, "--path-style"];
      appendFileSync(
        join(b.state.contextDir(CTX), "events", "audit.jsonl"),
        '{"timestamp":"2026-06-01T00:59:00Z","status":"succeeded","note":"host b"}\n',
      );
      const at = { ...creds, PAAS_BACKUP_NOW: "2026-06-01T01:00:00Z" };
      const [sa, sb2] = await Promise.all(
        [a, b].map(
          async (x) =>
            (
              await runCli([...x.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
                env: at,
              })
            ).json.data[0],
        ),
      );
      expect(sa.id).toBe(sb2.id);
      expect(sa.sha256).not.toBe(sb2.sha256);
      const pushes = await Promise.all(
        [a, b].map((x) =>
          runCli([...x.flags, "--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"], {
            env: at,
          }),
        ),
      );
      for (const p of pushes) expect(p.code, p.stdout + p.stderr).toBe(0);
      expect(rootOf(a.backupRoot)).not.toBe(rootOf(b.backupRoot));
      for (const x of [a, b]) {
        const v = await runCli(
          [...x.flags, "--json", "offsite", "verify", "--context", CTX, "--deep", ...s3],
          { env: creds },
        );
        expect(v.code, v.stdout).toBe(0);
        expect(v.json.data[0].results.map((r: any) => [r.id, r.ok])).toEqual([[sa.id, true]]);
      }
      // a third, empty backup root sees both with --all-roots and restores b's state
      const plain = await runCli([...c.flags, "--json", "offsite", "list", "--context", CTX, ...s3], {
        env: creds,
      });
      expect(plain.json.data[0].entries).toEqual([]);
      const all = await runCli(
        [...c.flags, "--json", "offsite", "list", "--context", CTX, "--all-roots", ...s3],
        { env: creds },
      );
      expect(all.json.data[0].entries.map((e: any) => [e.id, e.root, e.own]).sort()).toEqual(
        [
          [sa.id, rootOf(a.backupRoot), false],
          [sa.id, rootOf(b.backupRoot), false],
        ].sort(),
      );
      expect(all.json.data[0].roots.map((r: any) => r.id).sort()).toEqual(
        [rootOf(a.backupRoot), rootOf(b.backupRoot)].sort(),
      );
      const r = await runCli(
        [
          ...c.flags,
          "--json",
          "restore",
          "--context",
          CTX,
          "--ticket",
          "INC-NEWHOST",
          "--yes",
          "--from-offsite",
          `s3://${bucket}/shared`,
          "--endpoint",
          endpoint,
          "--path-style",
          "--offsite-root",
          rootOf(b.backupRoot),
        ],
        { env: creds },
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(readFileSync(join(c.state.contextDir(CTX), "events", "audit.jsonl"), "utf8")).toContain(
        "host b",
      );
      // a copied backup root (same identity) never replaces the other host's differing object
      const clone = mkdtempSync(join(tmpdir(), "pb-clone-"));
      try {
        mkdirSync(join(clone, "backups"), { recursive: true });
        writeFileSync(
          join(clone, "backups", "paas-backup.repository.json"),
          readFileSync(join(a.backupRoot, "paas-backup.repository.json")),
        );
        const flags = ["--state-root", b.stateRoot, "--backup-root", join(clone, "backups")];
        await runCli([...flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], { env: at });
        const refused = await runCli(
          [...flags, "--json", "offsite", "push", "--context", CTX, ...s3, "--allow-plaintext"],
          {
            env: at,
          },
        );
        expect(refused.code).toBe(3);
        expect(refused.json.data[0].problems[0].problem).toMatch(/a different object is at .*not replaced/);
        expect(
          (
            await runCli([...a.flags, "--json", "offsite", "verify", "--context", CTX, "--deep", ...s3], {
              env: creds,
            })
          ).code,
        ).toBe(0);
      } finally {
        rmSync(clone, { recursive: true, force: true });
      }
    } finally {
      for (const x of [a, b, c]) x.cleanup();
    }
  });
});

describe("a directory target heals too", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
  });
  afterEach(() => {
    openUp(join(sb.dir, "offsite"));
    sb.cleanup();
  });

  it("puts back a removed copy (stat) and a damaged one (found by verify) on the next push", async () => {
    const s = (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]))
      .json.data[0];
    const to = ["--to", `file://${join(sb.dir, "offsite")}`];
    expect(
      (await runCli([...sb.flags, "offsite", "push", "--context", CTX, ...to, "--allow-plaintext"])).code,
    ).toBe(0);
    const dir = join(sb.dir, "offsite", "roots", rootOf(sb.backupRoot), CTX);
    const copy = join(dir, `${s.id}.tar.gz`);
    openUp(dir);
    rmSync(copy);
    const healed = await runCli([
      ...sb.flags,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      ...to,
      "--allow-plaintext",
    ]);
    expect(healed.code, healed.stdout).toBe(0);
    expect(healed.json.data[0].repaired[0]).toMatchObject({
      id: s.id,
      reason: expect.stringMatching(/missing/),
    });
    expect(readFileSync(copy).equals(readFileSync(s.artifact))).toBe(true);
    expect(statSync(copy).mode & 0o777).toBe(0o400);
    openUp(dir);
    const bytes = readFileSync(copy);
    bytes[bytes.length - 20] ^= 1;
    writeFileSync(copy, bytes);
    expect((await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to])).code).toBe(
      3,
    );
    const again = await runCli([
      ...sb.flags,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      ...to,
      "--allow-plaintext",
    ]);
    expect(again.json.data[0].repaired.map((r: any) => r.id)).toEqual([s.id]);
    expect(readFileSync(copy).equals(readFileSync(s.artifact))).toBe(true);
    expect((await runCli([...sb.flags, "--json", "offsite", "verify", "--context", CTX, ...to])).code).toBe(
      0,
    );
  });
});

describe("tick heals the configured target every hour", () => {
  it("a copy lost at the target is back after the next hourly tick", async () => {
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
      const first = await runCli(
        [...sb.flags, "--config", config, "--json", "tick", "--context", CTX, "--insecure-plaintext"],
        { env: { PAAS_BACKUP_NOW: "2026-06-01T01:00:00Z" } },
      );
      expect(first.code, first.stdout + first.stderr).toBe(0);
      const full = first.json.data[0].snapshot;
      const copy = join(disk, "roots", rootOf(sb.backupRoot), CTX, `${full.id}.tar.gz`);
      openUp(disk);
      rmSync(copy);
      const next = await runCli(
        [...sb.flags, "--config", config, "--json", "tick", "--context", CTX, "--insecure-plaintext"],
        { env: { PAAS_BACKUP_NOW: "2026-06-01T02:00:00Z" } },
      );
      expect(next.code, next.stdout + next.stderr).toBe(0);
      expect(next.json.data[0].action).toBe("incremental");
      expect(next.json.data[0].offsite[0].repaired.map((r: any) => r.id)).toEqual([full.id]);
      expect(readFileSync(copy).equals(readFileSync(full.artifact))).toBe(true);
      expect(
        (await runCli([...sb.flags, "--config", config, "--json", "offsite", "verify", "--context", CTX]))
          .code,
      ).toBe(0);
    } finally {
      openUp(join(sb.dir, "nfs"));
      sb.cleanup();
    }
  });
});

describe("restore --from-offsite restores the newest restorable state", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
  });
  afterEach(() => {
    openUp(join(sb.dir, "offsite"));
    sb.cleanup();
  });

  it("fetches the lost full and replays the local incremental on top; an older state only with --fallback, said so", async () => {
    const to = `file://${join(sb.dir, "offsite")}`;
    const audit = join(sb.state.contextDir(CTX), "events", "audit.jsonl");
    const full = (
      await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
        env: { PAAS_BACKUP_NOW: "2026-06-01T01:00:00Z" },
      })
    ).json.data[0];
    expect(
      (await runCli([...sb.flags, "offsite", "push", "--context", CTX, "--to", to, "--allow-plaintext"]))
        .code,
    ).toBe(0);
    const lines = Array.from(
      { length: 50 },
      (_, i) =>
        `{"timestamp":"2026-06-01T01:${String(i).padStart(2, "0")}:30Z","status":"succeeded","note":"line ${i}"}\n`,
    ).join("");
    appendFileSync(audit, lines);
    const inc = (
      await runCli(
        [
          ...sb.flags,
          "--json",
          "snapshot",
          "--context",
          CTX,
          "--kind",
          "incremental",
          "--insecure-plaintext",
        ],
        { env: { PAAS_BACKUP_NOW: "2026-06-01T02:00:00Z" } },
      )
    ).json.data[0];
    const wanted = readFileSync(audit, "utf8");
    rmSync(full.artifact);
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.warnings[0]).toMatch(
      new RegExp(`incremental ${inc.id} needs ${full.id}, which is not in`),
    );
    expect(list.json.data[0]).toMatchObject({ id: inc.id, parentMissing: true });
    writeFileSync(audit, "");
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-CHAIN",
      "--yes",
      "--from-offsite",
      to,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0].snapshot.id).toBe(inc.id);
    expect(r.json.offsite).toEqual({
      asked: inc.id,
      chosen: inc.id,
      fetched: [full.id],
      local: [inc.id],
      fallback: null,
      // this backup root's own copies; latest passed over no snapshot from the future
      root: null,
      warnings: [],
    });
    // the 50 lines only the incremental has are back (the restore then appends its own audit event)
    expect(readFileSync(audit, "utf8").startsWith(wanted)).toBe(true);

    // Now the incremental's full is gone here and at the target: the newest restorable is older.
    appendFileSync(audit, '{"timestamp":"2026-06-02T01:00:00Z","status":"succeeded"}\n');
    const full2 = (
      await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
        env: { PAAS_BACKUP_NOW: "2026-06-02T01:00:00Z" },
      })
    ).json.data[0];
    const inc2 = (
      await runCli(
        [
          ...sb.flags,
          "--json",
          "snapshot",
          "--context",
          CTX,
          "--kind",
          "incremental",
          "--insecure-plaintext",
        ],
        { env: { PAAS_BACKUP_NOW: "2026-06-02T02:00:00Z" } },
      )
    ).json.data[0];
    expect(inc2.parent.id).toBe(full2.id);
    rmSync(full2.artifact);
    const refused = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-CHAIN2",
      "--yes",
      "--from-offsite",
      to,
    ]);
    expect(refused.code).toBe(3);
    expect(refused.json.error.message).toContain(full2.id);
    expect(refused.json.error.remediation).toContain(`--snapshot ${inc.id}`);
    const fb = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-CHAIN3",
      "--yes",
      "--fallback",
      "--from-offsite",
      to,
    ]);
    expect(fb.code, fb.stdout + fb.stderr).toBe(0);
    expect(fb.json.offsite).toMatchObject({ asked: inc2.id, chosen: inc.id, fallback: { from: inc2.id } });
    expect(fb.json.data[0].snapshot.id).toBe(inc.id);
  });
});
