import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CLI, makeSandbox, openUp, runCli, type Sandbox } from "./helpers.js";

/**
 * Issue 24 §3, keys rotate through the built CLI: every snapshot re-encrypted to the new set, at
 * home and at the offsite target; the age CLI opens a rotated artifact with the new key and not
 * with the removed one; `keys audit` of the removed key is 0; signatures (ssh-keygen -Y verify)
 * and chains hold; and a rotation killed after any of its renames resumes on the next run.
 */
const CTX = "internal-dogfood";
const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("keys rotate", () => {
  let sb: Sandbox;
  let config: string;
  let allowed: string;
  let home: string;
  let nfs: string;
  let template: string;
  const keys: Record<string, { file: string; recipient: string }> = {};
  const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env: env(extra) });
  const rotateArgs = () => [
    "keys",
    "rotate",
    "--context",
    CTX,
    "--add-recipient",
    keys.new!.recipient,
    "--remove-recipient",
    keys.old!.recipient,
    "--identity",
    keys.old!.file,
  ];
  const artifacts = () =>
    readdirSync(join(sb.backupRoot, CTX))
      .filter((n) => n.endsWith(".tar.gz.age"))
      .sort();
  const ageDecrypt = (identity: string, file: string) =>
    spawnSync("age", ["-d", "-i", identity, file], { maxBuffer: 1 << 30 });
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

  /** put the backup root and the target back as they were before any rotation */
  const reset = () => {
    openUp(nfs);
    rmSync(sb.backupRoot, { recursive: true, force: true });
    rmSync(nfs, { recursive: true, force: true });
    cpSync(join(template, "backups"), sb.backupRoot, { recursive: true, preserveTimestamps: true });
    cpSync(join(template, "nfs"), nfs, { recursive: true, preserveTimestamps: true });
  };

  /** what must hold after a rotation finished, killed on the way or not */
  const expectRotated = async () => {
    const audit = await cli(["--json", "keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(audit.json.count).toBe(0);
    expect(audit.json.checked).toBe(artifacts().length + 1); // and the full's copy offsite
    const verify = await cli(["--json", "verify", "--context", CTX, "--all"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.json.data.map((v: any) => [v.checksum, v.chainOk, v.signature.state])).toEqual(
      artifacts().map(() => ["verified", true, "signed"]),
    );
  };

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    home = join(sb.dir, "home");
    nfs = join(sb.dir, "nfs");
    config = join(sb.dir, "config.json");
    allowed = join(sb.dir, "allowed_signers");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        allowedSigners: allowed,
        offsite: { targets: [{ name: "nfs", url: `file://${nfs}` }] },
      }),
    );
    const signing = await cli(["keygen", "--signing", "--principal", "host-a"]);
    expect(signing.code, signing.stderr).toBe(0);
    writeFileSync(allowed, signing.stdout);
    for (const name of ["old", "keep", "new"]) {
      const file = join(sb.dir, "keys", `${name}.txt`);
      const r = await cli(["--json", "keygen", "--out", file]);
      expect(r.code, r.stderr).toBe(0);
      keys[name] = { file, recipient: r.json.data[0].recipient };
    }
    // a daily full (pushed offsite by tick) and an incremental on it, to the old key and one kept
    const recipients = ["--recipient", keys.old!.recipient, "--recipient", keys.keep!.recipient];
    const full = await cli(["--json", "tick", "--context", CTX, ...recipients], at("2026-11-01T01:00:00Z"));
    expect(full.code, full.stdout + full.stderr).toBe(0);
    const inc = await cli(
      ["--json", "snapshot", "--context", CTX, "--kind", "incremental", ...recipients],
      at("2026-11-01T02:00:00Z"),
    );
    expect(inc.code, inc.stdout + inc.stderr).toBe(0);
    expect(inc.json.data[0].kind).toBe("incremental");
    template = join(sb.dir, "template");
    cpSync(sb.backupRoot, join(template, "backups"), { recursive: true, preserveTimestamps: true });
    cpSync(nfs, join(template, "nfs"), { recursive: true, preserveTimestamps: true });
  }, 120_000);
  afterAll(() => {
    openUp(nfs);
    openUp(join(template, "nfs"));
    sb.cleanup();
  });

  it("re-encrypts to the new set: age opens the rotated artifact with the new key, not the removed one; audit is 0", async () => {
    reset();
    const before = new Map(artifacts().map((n) => [n, sha256(readFileSync(join(sb.backupRoot, CTX, n)))]));
    const payloads = new Map(
      artifacts().map((n) => [n, sha256(ageDecrypt(keys.old!.file, join(sb.backupRoot, CTX, n)).stdout)]),
    );
    // --all-contexts: every context with a folder in the backup root (here the one)
    const r = await cli(
      [
        "--json",
        ...rotateArgs()
          .map((a) => (a === "--context" ? "--all-contexts" : a))
          .filter((a) => a !== CTX),
      ],
      at("2026-11-01T03:00:00Z"),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0]).toMatchObject({ context: CTX, resumed: null, skipped: [] });
    expect(r.json.data[0].rotated).toHaveLength(2);
    expect(r.json.data[0].offsite).toEqual([expect.objectContaining({ target: "nfs", action: "replaced" })]);
    for (const name of artifacts()) {
      const file = join(sb.backupRoot, CTX, name);
      // a fresh file key: every byte of the artifact differs, the plaintext inside does not
      expect(sha256(readFileSync(file))).not.toBe(before.get(name));
      const opened = ageDecrypt(keys.new!.file, file);
      expect(opened.status, opened.stderr.toString()).toBe(0);
      expect(sha256(opened.stdout)).toBe(payloads.get(name));
      const refused = ageDecrypt(keys.old!.file, file);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr.toString()).toMatch(/no identity matched/);
      // the sidecar manifest carries the current set and the payload's hash; sha256sum agrees with .sha256
      const id = name.replace(/\.tar\.gz\.age$/, "");
      const manifest = JSON.parse(readFileSync(join(sb.backupRoot, CTX, `${id}.manifest.json`), "utf8"));
      expect(manifest.encryption.recipients.sort()).toEqual(
        [keys.keep!.recipient, keys.new!.recipient].sort(),
      );
      expect(manifest.payloadSha256).toBe(payloads.get(name));
      const sum = spawnSync("sha256sum", ["-c", `${name}.sha256`], { cwd: join(sb.backupRoot, CTX) });
      expect(sum.status, sum.stdout.toString()).toBe(0);
      // the rewritten manifest is signed again, and OpenSSH agrees
      const ssh = spawnSync(
        "ssh-keygen",
        [
          "-Y",
          "verify",
          "-f",
          allowed,
          "-I",
          "host-a",
          "-n",
          "paas-backup",
          "-s",
          join(sb.backupRoot, CTX, `${id}.manifest.json.sig`),
        ],
        { input: readFileSync(join(sb.backupRoot, CTX, `${id}.manifest.json`)), encoding: "utf8" },
      );
      expect(ssh.status, ssh.stderr).toBe(0);
    }
    await expectRotated();
    // the rotation record names what it did, and restore opens the rotated chain with the new key
    const record = JSON.parse(readFileSync(r.json.data[0].record, "utf8"));
    expect(record).toMatchObject({
      schema: "paas-backup/rotation@1",
      add: [keys.new!.recipient],
      remove: [keys.old!.recipient],
    });
    expect(record.finishedAt).not.toBeNull();
    const restore = await cli([
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-ROT",
      "--yes",
      "--identity",
      keys.new!.file,
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    // the governance report names the rotation under keys
    const out = join(sb.dir, "report.json");
    const report = await cli(
      ["--json", "report", "--context", CTX, "--period", "2026-Q4", "--format", "json", "--out", out],
      at("2026-11-02T00:00:00Z"),
    );
    expect(report.code, report.stdout + report.stderr).toBe(0);
    const keysSection = JSON.parse(readFileSync(out, "utf8")).contexts[0].keys;
    expect(keysSection.recipients).toEqual([keys.keep!.recipient, keys.new!.recipient].sort());
    expect(keysSection.rotations).toEqual([
      expect.objectContaining({
        id: record.id,
        added: [keys.new!.recipient],
        removed: [keys.old!.recipient],
        rotated: 2,
        skipped: [],
        offsiteLocked: [],
      }),
    ]);
  }, 120_000);

  it("killed after each step of its journal, and in the middle of each, the next run resumes and finishes", async () => {
    reset();
    const listed = spawnSync(
      process.execPath,
      ["--import", PRELOAD, CLI, ...sb.flags, "--config", config, ...rotateArgs()],
      {
        env: { PATH: process.env.PATH ?? "", HOME: home, PB_LIST_RENAMES: "1" },
        cwd: tmpdir(),
        encoding: "utf8",
      },
    );
    expect(listed.status, listed.stderr).toBe(0);
    const renames = [...listed.stderr.matchAll(/^rename (\d+): (.*)$/gm)].map((m) => ({
      n: Number(m[1]),
      to: m[2]!,
    }));
    // every save of the rotation record is a step; the rename after it is a kill inside the step
    // (the staged copy landing, the artifact replaced before its .sha256, a copy offsite replaced)
    const steps = renames.filter((r) => /\/rotations\/[^/]+\.json$/.test(r.to)).map((r) => r.n);
    const killPoints = [...new Set(steps.flatMap((n) => [n, n + 1]))].filter((n) => n < renames.length);
    expect(steps.length).toBeGreaterThanOrEqual(8); // start, 3 per snapshot, offsite, finish
    expect(killPoints.length).toBeGreaterThan(12);
    for (const n of killPoints) {
      reset();
      const killed = await new Promise<NodeJS.Signals | null>((done) => {
        const child = spawn(
          process.execPath,
          ["--import", PRELOAD, CLI, ...sb.flags, "--config", config, ...rotateArgs()],
          {
            env: { PATH: process.env.PATH ?? "", HOME: home, PB_KILL_AFTER_RENAME: String(n) },
            cwd: tmpdir(),
            stdio: "ignore",
          },
        );
        child.on("close", (_code, signal) => done(signal));
      });
      expect(killed, `rename ${n}`).toBe("SIGKILL");
      const again = await cli(["--json", ...rotateArgs()]);
      expect(again.code, `after rename ${n}: ${again.stdout}${again.stderr}`).toBe(0);
      await expectRotated();
      // one rotation record, finished; no staged copy left behind
      const rotations = join(sb.backupRoot, CTX, "rotations");
      const records = readdirSync(rotations).filter((f) => f.endsWith(".json") && !f.startsWith("."));
      expect(records, `after rename ${n}`).toHaveLength(1);
      expect(JSON.parse(readFileSync(join(rotations, records[0]!), "utf8")).finishedAt).not.toBeNull();
      expect(
        readdirSync(rotations).filter((f) => !f.endsWith(".json") && !f.startsWith(".")),
        `after rename ${n}`,
      ).toEqual([]);
      expect(existsSync(join(sb.backupRoot, CTX))).toBe(true);
    }
  }, 600_000);
});
