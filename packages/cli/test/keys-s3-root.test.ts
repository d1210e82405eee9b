import { describe, it, expect, beforeAll, afterAll } from "vitest";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { createStateRoot, startRgw, type Rgw } from "@paas-backup/testing";
import { nodeFs } from "@paas-backup/core/node";
import { CLI, runCli, type CliResult } from "./helpers.js";

const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");
const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
/** the report's period around today (these tests run on the real clock: RGW's Object Lock and leases need it) */
const period = () => ["--from", day(-1), "--to", day(1)];

/**
 * keys audit with an s3:// backup root (issue 24 §3 on issue 22's shared bucket), on Ceph RGW
 * through the built CLI: it reads the age header of every committed snapshot in the bucket, as it
 * does in a folder; keys rotate re-encrypts the bucket's snapshots without overwriting anything:
 * each rotated snapshot's objects under new keys, committed by a relocation entry in the context's
 * fenced log that every reader follows, the old objects swept after the delete delay.
 */
const CTX = "alpha";
let rgw: Rgw;
let work: string;
let root: string;
let stateRoot: string;
let env: Record<string, string>;
const keys: Record<string, { file: string; recipient: string }> = {};

function on(args: string[]): Promise<CliResult> {
  return runCli(
    [
      "--state-root",
      stateRoot,
      "--backup-root",
      root,
      "--root-endpoint",
      rgw.endpoint,
      "--root-path-style",
      "--json",
      ...args,
    ],
    { env },
  );
}

beforeAll(async () => {
  rgw = await startRgw();
  work = mkdtempSync(join(tmpdir(), "pb-keys-s3-"));
  root = `s3://${await rgw.createBucket({ prefix: "keys" })}/repo`;
  const home = join(work, "home");
  mkdirSync(home, { recursive: true });
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(work, "state"),
    contexts: [{ name: CTX, eventBytes: 20_000 }],
    plantSecrets: false,
  });
  stateRoot = state.stateRoot;
  env = { HOME: home, XDG_CACHE_HOME: join(work, "cache"), PAAS_BACKUP_HOST: "host-a", ...rgw.env };
  for (const name of ["old", "keep", "never"]) {
    const file = join(work, "keys", `${name}.txt`);
    const r = await runCli(["--json", "keygen", "--out", file], { env });
    expect(r.code, r.stderr).toBe(0);
    keys[name] = { file, recipient: r.json.data[0].recipient };
  }
}, 120_000);
afterAll(async () => {
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("keys with an s3:// backup root (RGW, through the built CLI)", () => {
  it("keys audit lists the committed snapshots a key opens in the bucket", async () => {
    const recipients = ["--recipient", keys.old!.recipient, "--recipient", keys.keep!.recipient];
    const full = await on(["tick", "--context", CTX, ...recipients]);
    expect(full.code, full.stdout + full.stderr).toBe(0);
    const inc = await on(["snapshot", "--context", CTX, "--kind", "incremental", ...recipients]);
    expect(inc.code, inc.stdout + inc.stderr).toBe(0);
    const ids = [full.json.data[0].snapshot.id, inc.json.data[0].id].sort();

    const audit = await on(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(audit.json).toMatchObject({ count: 2, checked: 2, plaintext: 0 });
    expect(audit.json.data.map((o: any) => o.id).sort()).toEqual(ids);
    for (const o of audit.json.data) {
      expect(o).toMatchObject({ context: CTX, where: "local", root: null, lockedUntil: null });
      expect(o.artifact).toMatch(new RegExp(`^${root}/${CTX}/.*\\.tar\\.gz\\.age$`));
    }
    // --all-contexts: the contexts the hosts report in the bucket
    const all = await on(["keys", "audit", "--all-contexts", "--identity", keys.keep!.file]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    expect(all.json.count).toBe(2);
    // a key that was never a recipient opens nothing: exit 0, count 0
    const never = await on(["keys", "audit", "--context", CTX, "--identity", keys.never!.file]);
    expect(never.code, never.stdout + never.stderr).toBe(0);
    expect(never.json).toMatchObject({ count: 0, checked: 2 });
  }, 180_000);
});

describe("keys rotate of copies encrypted on push to S3 targets (RGW, through the built CLI)", () => {
  it("replaces the copy in a plain bucket (audit of the removed key: 0); under COMPLIANCE lock it stays, with its window", async () => {
    const dir = mkdtempSync(join(work, "enc-"));
    const backupRoot = join(dir, "backups");
    const config = join(dir, "config.json");
    const plain = await rgw.createBucket({ prefix: "rot" });
    const locked = await rgw.createBucket({ prefix: "rotlock", objectLock: true });
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        recipients: [keys.old!.recipient, keys.keep!.recipient],
        offsite: {
          targets: [
            { name: "plain", url: `s3://${plain}/si`, endpoint: rgw.endpoint, pathStyle: true },
            {
              name: "locked",
              url: `s3://${locked}/si`,
              endpoint: rgw.endpoint,
              pathStyle: true,
              objectLock: { mode: "COMPLIANCE", days: 1 },
            },
          ],
        },
      }),
    );
    const cli = (args: string[]) =>
      runCli(
        ["--state-root", stateRoot, "--backup-root", backupRoot, "--config", config, "--json", ...args],
        {
          // the real clock: Object Lock's retain-until must lie ahead on the server's
          env,
        },
      );
    const snap = await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const id: string = snap.json.data[0].id;
    const push = await cli(["offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data.map((d: any) => d.pushed[0]?.encryptedOnPush)).toEqual([true, true]);
    const before = await cli(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(before.json.data.map((o: any) => o.where).sort()).toEqual(["locked", "plain"]);

    const rotate = await cli([
      "keys",
      "rotate",
      "--context",
      CTX,
      "--add-recipient",
      keys.never!.recipient,
      "--remove-recipient",
      keys.old!.recipient,
      "--identity",
      keys.keep!.file,
    ]);
    expect(rotate.code, rotate.stdout + rotate.stderr).toBe(0);
    const offsite = rotate.json.data[0].offsite;
    expect(offsite).toContainEqual(
      expect.objectContaining({ target: "plain", id, action: "replaced", encryptedOnPush: true }),
    );
    expect(offsite).toContainEqual(
      expect.objectContaining({ target: "locked", id, action: "locked", lockedUntil: expect.any(String) }),
    );
    const after = await cli(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    // the plain bucket's copy is the new one; the locked copy is the exposure window, until its lock ends
    expect(after.json.data).toEqual([
      expect.objectContaining({ where: "locked", id, lockedUntil: expect.any(String) }),
    ]);
    expect(after.json.exposedUntil).toBe(after.json.data[0].expires);
    const byNew = await cli(["keys", "audit", "--context", CTX, "--identity", keys.never!.file]);
    expect(byNew.json.data.map((o: any) => o.where)).toEqual(["plain"]);
  }, 180_000);
});

describe("keys audit of old versions on versioned S3 targets (RGW, through the built CLI)", () => {
  it("after a rotation, lists each older version the removed key still opens, with its version id and retain-until", async () => {
    const CTX_V = "delta";
    const dir = mkdtempSync(join(work, "versions-"));
    const backupRoot = join(dir, "backups");
    const config = join(dir, "config.json");
    const versioned = await rgw.createBucket({ prefix: "ver", versioning: true });
    const locked = await rgw.createBucket({ prefix: "verlock", objectLock: true });
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        offsite: {
          targets: [
            { name: "versioned", url: `s3://${versioned}/si`, endpoint: rgw.endpoint, pathStyle: true },
            {
              name: "locked",
              url: `s3://${locked}/si`,
              endpoint: rgw.endpoint,
              pathStyle: true,
              objectLock: { mode: "GOVERNANCE", days: 1 },
            },
          ],
        },
      }),
    );
    await createStateRoot({
      fs: nodeFs,
      root: join(work, "state"),
      contexts: [{ name: CTX_V, eventBytes: 5_000 }],
      plantSecrets: false,
    });
    const cli = (args: string[]) =>
      runCli(
        ["--state-root", stateRoot, "--backup-root", backupRoot, "--config", config, "--json", ...args],
        {
          env,
        },
      );
    const snap = await cli([
      "snapshot",
      "--context",
      CTX_V,
      "--recipient",
      keys.old!.recipient,
      "--recipient",
      keys.keep!.recipient,
    ]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const id: string = snap.json.data[0].id;
    const push = await cli(["offsite", "push", "--context", CTX_V]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const audit = async (who: string) => {
      const r = await cli(["keys", "audit", "--context", CTX_V, "--identity", keys[who]!.file]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return r.json;
    };
    // before: home and the two current copies, each once
    const before = await audit("old");
    expect(before.data.map((o: any) => [o.where, o.versionId]).sort()).toEqual([
      ["local", null],
      ["locked", null],
      ["versioned", null],
    ]);

    const rotate = await cli([
      "keys",
      "rotate",
      "--context",
      CTX_V,
      "--add-recipient",
      keys.never!.recipient,
      "--remove-recipient",
      keys.old!.recipient,
      "--identity",
      keys.keep!.file,
    ]);
    expect(rotate.code, rotate.stdout + rotate.stderr).toBe(0);
    expect(rotate.json.data[0].offsite.map((o: any) => [o.target, o.action]).sort()).toEqual([
      ["locked", "replaced"],
      ["versioned", "replaced"],
    ]);
    // the current versions are the new ones; the replaced versions stay, and the removed key opens them
    const after = await audit("old");
    expect(after.data.map((o: any) => o.where).sort()).toEqual(["locked", "versioned"]);
    for (const o of after.data) {
      expect(o).toMatchObject({ id, context: CTX_V, versionId: expect.any(String) });
      expect(o.artifact).toContain(`?versionId=${encodeURIComponent(o.versionId)}`);
    }
    const lockedOld = after.data.find((o: any) => o.where === "locked");
    const plainOld = after.data.find((o: any) => o.where === "versioned");
    // GOVERNANCE-locked for a day: retain-until ahead, and the exposure lasts at least until then
    expect(Date.parse(lockedOld.retainUntil)).toBeGreaterThan(Date.now());
    expect(Date.parse(lockedOld.expires)).toBeGreaterThanOrEqual(Date.parse(lockedOld.retainUntil));
    expect(plainOld.retainUntil).toBeNull();
    expect(after.exposedUntil).toBe(after.data.at(-1).expires);
    // the new key opens the current versions (and home), not the old ones
    const byNew = await audit("never");
    expect(byNew.data.map((o: any) => [o.where, o.versionId]).sort()).toEqual([
      ["local", null],
      ["locked", null],
      ["versioned", null],
    ]);
  }, 180_000);
});

describe("keys rotate with an s3:// backup root (RGW, through the built CLI)", () => {
  it("re-encrypts the bucket's chain without overwriting: killed half-way and resumed, audit of the removed key 0, age -d gives the payload, a fresh host restores; the old objects go after the delay", async () => {
    const BETA = "beta";
    const dir = mkdtempSync(join(work, "rot-s3-"));
    const config = join(dir, "config.json");
    const allowed = join(dir, "allowed_signers");
    const signingKey = join(dir, "signing_key");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        allowedSigners: allowed,
        // every maintenance compacts the commit log: relocation entries are carried, and a relocated
        // snapshot whose original objects are gone stays committed
        sharedRoot: { deleteAfterSeconds: 2, leaseSeconds: 10, logCheckpointEvery: 1 },
      }),
    );
    const signing = await runCli(["keygen", "--signing", "--principal", "host-a", "--out", signingKey], {
      env,
    });
    expect(signing.code, signing.stderr).toBe(0);
    writeFileSync(allowed, signing.stdout);
    const hostEnv = { ...env, PAAS_BACKUP_SIGNING_KEY: signingKey };
    const base = [
      "--state-root",
      stateRoot,
      "--backup-root",
      root,
      "--root-endpoint",
      rgw.endpoint,
      "--root-path-style",
      "--config",
      config,
    ];
    const cli = (args: string[], extra: Record<string, string> = {}) =>
      runCli([...base, "--json", ...args], { env: { ...hostEnv, ...extra } });
    await createStateRoot({
      fs: nodeFs,
      root: join(work, "state"),
      contexts: [{ name: BETA, eventBytes: 20_000 }],
      plantSecrets: false,
    });
    // a chain in the bucket: a full and two incrementals, signed, to the old key and one kept
    const recipients = ["--recipient", keys.old!.recipient, "--recipient", keys.keep!.recipient];
    const full = await cli(["snapshot", "--context", BETA, ...recipients]);
    expect(full.code, full.stdout + full.stderr).toBe(0);
    for (let i = 0; i < 2; i++) {
      const inc = await cli(["snapshot", "--context", BETA, "--kind", "incremental", ...recipients]);
      expect(inc.code, inc.stdout + inc.stderr).toBe(0);
    }
    const before = await cli(["list", "--context", BETA]);
    expect(before.json.data.map((s: any) => s.kind)).toEqual(["full", "incremental", "incremental"]);
    const ids: string[] = before.json.data.map((s: any) => s.id);
    const bucket = root.slice("s3://".length).split("/")[0]!;
    const objects = async (prefix: string) => {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const page = await rgw.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: `repo/${prefix}`, ContinuationToken: token }),
        );
        out.push(...(page.Contents ?? []).map((o) => o.Key!.slice("repo/".length)));
        token = page.NextContinuationToken;
      } while (token);
      return out.sort();
    };
    const getObject = async (key: string) => {
      const r = await rgw.client.send(new GetObjectCommand({ Bucket: bucket, Key: `repo/${key}` }));
      return Buffer.from(await r.Body!.transformToByteArray());
    };
    const originals = (await objects(`${BETA}/`)).filter((k) =>
      ids.some((id) => k.startsWith(`${BETA}/${id}.`)),
    );
    const originalBytes = new Map(
      await Promise.all(originals.map(async (k) => [k, await getObject(k)] as const)),
    );

    const rotateArgs = [
      ...base,
      "keys",
      "rotate",
      "--context",
      BETA,
      "--add-recipient",
      keys.never!.recipient,
      "--remove-recipient",
      keys.old!.recipient,
      "--identity",
      keys.keep!.file,
    ];
    // every save of the rotation record (in the host's cache) is a step: start, then staged,
    // committing and done per snapshot; killed after the second snapshot's "committing" (its
    // relocation not yet committed), then the rerun killed after the third's
    const killedAt = (nth: number) =>
      new Promise<string>((done) => {
        const child = spawn(process.execPath, ["--import", PRELOAD, CLI, ...rotateArgs], {
          env: {
            ...process.env,
            ...hostEnv,
            PB_KILL_AFTER_CALL: `rename:/${BETA}/rotations/[^/]+\\.json$`,
            PB_KILL_AFTER_CALL_NTH: String(nth),
          },
          cwd: tmpdir(),
          stdio: ["ignore", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code, signal) => done(signal ?? `exit ${code}: ${stderr}`));
      });
    expect(await killedAt(6)).toBe("SIGKILL");
    const [cacheId] = readdirSync(join(work, "cache", "paas-backup")).filter((n) => /^[0-9a-f]{16}$/.test(n));
    const journalDir = join(work, "cache", "paas-backup", cacheId!, BETA, "rotations");
    const [journal] = readdirSync(journalDir).filter((n) => n.endsWith(".json"));
    const staleJournal = join(dir, "stale-journal.json");
    copyFileSync(join(journalDir, journal!), staleJournal);
    // half-way: nothing a reader sees has changed yet for the second snapshot; the first is rotated
    const mid = await cli(["keys", "audit", "--context", BETA, "--identity", keys.old!.file]);
    expect(mid.code, mid.stdout + mid.stderr).toBe(0);
    expect(mid.json.data.map((o: any) => o.id)).toEqual(ids.slice(1));
    const midVerify = await cli(["verify", "--context", BETA, "--all"]);
    expect(midVerify.code, midVerify.stdout + midVerify.stderr).toBe(0);
    // the resumed run killed after the third snapshot's "committing" (the second's relocation landed)
    expect(await killedAt(3)).toBe("SIGKILL");
    // and its journal set back to the first kill's: the second snapshot's relocation is in the log,
    // its record says "committing", the third says "pending" though its copy is staged
    copyFileSync(staleJournal, join(journalDir, journal!));
    const rotate = await cli(rotateArgs.slice(base.length));
    expect(rotate.code, rotate.stdout + rotate.stderr).toBe(0);
    expect(rotate.json.data[0]).toMatchObject({ context: BETA, skipped: [] });
    expect(rotate.json.data[0].record).toMatch(new RegExp(`^${root}/rotation-records/${BETA}/[^/]+\\.json$`));
    const record = JSON.parse(
      (await getObject(rotate.json.data[0].record.slice(`${root}/`.length))).toString(),
    );
    expect(record.finishedAt).not.toBeNull();
    expect(record.snapshots.map((s: any) => [s.id, s.phase])).toEqual(ids.map((id) => [id, "done"]));
    // one relocation committed per snapshot, none twice
    const log = await objects(`log/context/${BETA}/`);
    const entries = await Promise.all(log.map(async (k) => JSON.parse((await getObject(k)).toString())));
    expect(entries.filter((e) => e.data.relocation).map((e) => e.data.relocation.snapshot)).toEqual(ids);

    // nothing was overwritten: the old objects are still there, byte for byte, until the delay passes
    for (const [k, bytes] of originalBytes) expect((await getObject(k)).equals(bytes), k).toBe(true);
    const audit = await cli(["keys", "audit", "--context", BETA, "--identity", keys.old!.file]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(audit.json).toMatchObject({ count: 0, checked: 3 });
    const byNew = await cli(["keys", "audit", "--context", BETA, "--identity", keys.never!.file]);
    expect(byNew.json.data.map((o: any) => o.id)).toEqual(ids);
    const list = await cli(["list", "--context", BETA]);
    expect(list.code, list.stdout + list.stderr).toBe(0);
    expect(list.json.data.map((s: any) => [s.id, s.checksum])).toEqual(ids.map((id) => [id, "verified"]));
    const verify = await cli([
      "verify",
      "--context",
      BETA,
      "--all",
      "--deep",
      "--identity",
      keys.never!.file,
    ]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.json.data.map((v: any) => [v.checksum, v.chainOk, v.signature.state])).toEqual(
      ids.map(() => ["verified", true, "signed"]),
    );
    // age opens each relocated artifact with the new key, to the payload the manifest names
    const ageDecrypt = (identity: string, bytes: Buffer) =>
      spawnSync("age", ["-d", "-i", identity], { input: bytes, maxBuffer: 1 << 30 });
    for (const s of list.json.data) {
      const key = s.artifact.slice(`${root}/`.length);
      expect(key).toBe(`${BETA}/rotations/${record.id}/${s.id}/${s.id}.tar.gz.age`);
      const manifest = JSON.parse(
        (await getObject(key.replace(/\.tar\.gz\.age$/, ".manifest.json"))).toString(),
      );
      expect(manifest.encryption.recipients.sort()).toEqual(
        [keys.keep!.recipient, keys.never!.recipient].sort(),
      );
      const plain = ageDecrypt(keys.never!.file, await getObject(key));
      expect(plain.status, plain.stderr.toString()).toBe(0);
      expect(createHash("sha256").update(plain.stdout).digest("hex")).toBe(manifest.payloadSha256);
      expect(ageDecrypt(keys.old!.file, await getObject(key)).status).not.toBe(0);
    }

    // maintenance removes what the relocations replaced, once they are older than the delay
    await new Promise((r) => setTimeout(r, 3_000));
    const prune = await cli(["prune", "--context", BETA]);
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    expect(prune.json.data[0]).toMatchObject({ marked: [], removed: [] });
    for (const k of originals) expect(prune.json.data[0].swept).toContain(k.slice(BETA.length + 1));
    const left = await objects(`${BETA}/`);
    expect(left.filter((k) => originals.includes(k))).toEqual([]);
    const after = await cli(["keys", "audit", "--context", BETA, "--identity", keys.old!.file]);
    expect(after.json).toMatchObject({ count: 0, checked: 3 });
    // the log compacted again after the originals went (and its entries removed after the delay):
    // the three snapshots stay committed, under their relocated keys
    await new Promise((r) => setTimeout(r, 2_500));
    const compacted = await cli(["prune", "--context", BETA]);
    expect(compacted.code, compacted.stdout + compacted.stderr).toBe(0);
    expect(compacted.json.data[0].log.removed).toBeGreaterThan(0);
    const relisted = await cli(["list", "--context", BETA]);
    expect(relisted.json.data.map((s: { id: string }) => s.id)).toEqual(ids);

    // a fresh host (its own cache, state root and home) restores the newest of the chain with the new key
    const fresh = join(dir, "fresh");
    const freshState = await createStateRoot({
      fs: nodeFs,
      root: join(fresh, "state"),
      contexts: [{ name: BETA, eventBytes: 1_000 }],
      plantSecrets: false,
    });
    mkdirSync(join(fresh, "home"), { recursive: true });
    const freshEnv = {
      ...rgw.env,
      HOME: join(fresh, "home"),
      XDG_CACHE_HOME: join(fresh, "cache"),
      PAAS_BACKUP_HOST: "host-fresh",
    };
    const restore = await runCli(
      [
        "--state-root",
        freshState.stateRoot,
        ...base.slice(2),
        "--json",
        "restore",
        "--context",
        BETA,
        "--ticket",
        "INC-ROTATED",
        "--identity",
        keys.never!.file,
        "--yes",
      ],
      { env: freshEnv },
    );
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.data[0]).toMatchObject({ outcome: "restored", snapshot: { id: ids[2] } });

    // the governance report reads the rotation record from the bucket: the fresh host's cache never saw it
    const out = join(dir, "report.json");
    const report = await runCli(
      [
        ...base.slice(2),
        "--json",
        "report",
        "--context",
        BETA,
        ...period(),
        "--format",
        "json",
        "--out",
        out,
      ],
      { env: freshEnv },
    );
    expect(report.code, report.stdout + report.stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, "utf8")).contexts[0].keys.rotations).toEqual([
      expect.objectContaining({
        id: record.id,
        added: [keys.never!.recipient],
        removed: [keys.old!.recipient],
        rotated: 3,
        skipped: [],
      }),
    ]);
  }, 300_000);
});

describe("report with an s3:// backup root (RGW, through the built CLI)", () => {
  it("lists under Exceptions (unsigned) a snapshot and an incident record written in the bucket without a signature since it began signing", async () => {
    const GAMMA = "gamma";
    const dir = mkdtempSync(join(work, "unsigned-"));
    const config = join(dir, "config.json");
    const allowed = join(dir, "allowed_signers");
    const signingKey = join(dir, "signing_key");
    writeFileSync(config, JSON.stringify({ mandatoryDrillContexts: [], allowedSigners: allowed }));
    const signing = await runCli(["keygen", "--signing", "--principal", "host-a", "--out", signingKey], {
      env,
    });
    expect(signing.code, signing.stderr).toBe(0);
    writeFileSync(allowed, signing.stdout);
    await createStateRoot({
      fs: nodeFs,
      root: join(work, "state"),
      contexts: [{ name: GAMMA, eventBytes: 5_000 }],
      plantSecrets: false,
    });
    const cli = (args: string[], extra: Record<string, string> = {}) =>
      runCli(
        [
          "--state-root",
          stateRoot,
          "--backup-root",
          root,
          "--root-endpoint",
          rgw.endpoint,
          "--root-path-style",
          "--config",
          config,
          "--json",
          ...args,
        ],
        { env: { ...env, ...extra } },
      );
    const recipients = ["--recipient", keys.keep!.recipient];
    // signed (the bucket's paas-backup.signing.json says since when, if no test before made it)
    const signed = await cli(["snapshot", "--context", GAMMA, ...recipients], {
      PAAS_BACKUP_SIGNING_KEY: signingKey,
    });
    expect(signed.code, signed.stdout + signed.stderr).toBe(0);
    // a host without its signing key: the snapshot and a restore's incident record go unsigned
    const unsigned = await cli(["snapshot", "--context", GAMMA, ...recipients]);
    expect(unsigned.code, unsigned.stdout + unsigned.stderr).toBe(0);
    const restore = await cli([
      "restore",
      "--context",
      GAMMA,
      "--snapshot",
      signed.json.data[0].id,
      "--ticket",
      "INC-NOKEY",
      "--identity",
      keys.keep!.file,
      "--yes",
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    const incident: string = restore.json.data[0].incidentFile;
    expect(incident).toMatch(new RegExp(`^${root}/records/${GAMMA}/incidents/.*INC-NOKEY.*\\.json$`));

    const report = async (format: string) => {
      const out = join(dir, `report.${format}`);
      const r = await cli(["report", "--context", GAMMA, ...period(), "--format", format, "--out", out]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return readFileSync(out, "utf8");
    };
    const exceptions = JSON.parse(await report("json")).contexts[0].exceptions.filter(
      (e: any) => e.kind === "unsigned",
    );
    expect(exceptions.map((e: any) => e.detail)).toEqual([
      expect.stringContaining(`snapshot ${unsigned.json.data[0].id} has no signature`),
      expect.stringContaining(`${incident} has no signature`),
    ]);
    expect(JSON.stringify(exceptions)).not.toContain(signed.json.data[0].id);
    const html = await report("html");
    expect(html).toContain(`snapshot ${unsigned.json.data[0].id} has no signature`);
  }, 180_000);
});
