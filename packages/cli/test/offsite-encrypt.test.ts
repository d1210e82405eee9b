import { describe, it, expect, beforeEach, afterEach, beforeAll, afterAll } from "vitest";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { startRgw, type Rgw } from "@paas-backup/testing";
import { spawn, execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { CLI, makeSandbox, openUp, runCli, sh, type Sandbox } from "./helpers.js";

/**
 * Issue 21 §5: nothing plaintext leaves the host unannounced. A snapshot that is plaintext at home
 * (the policy's shell flow, --insecure-plaintext) goes offsite encrypted to the configured
 * recipients, checked by the tools an operator has (sha256sum, age, GNU tar), or not at all.
 */
const CTX = "internal-dogfood";
const REF_ID = "20261101T020304Z";
const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");
const CODE = "PAAS_BACKUP_OFFSITE_NO_RECIPIENT";

/** Every file under a folder. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => statSync(join(dir, p)).isFile())
    .sort();
}

/** What anyone holding the target's files can read: each file's bytes, and gunzipped where it is gzip. */
function readableAt(dir: string): Buffer[] {
  return filesUnder(dir).flatMap((p) => {
    const bytes = readFileSync(join(dir, p));
    try {
      return [bytes, gunzipSync(bytes)];
    } catch {
      return [bytes];
    }
  });
}

describe("offsite push of plaintext snapshots (issue 21 §5)", () => {
  let sb: Sandbox;
  let ctx: string;
  let key: string;
  let recipient: string;
  let token: string;
  let target: string;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 1 }]);
    ctx = sb.state.contextDir(CTX);
    key = join(sb.dir, "keys", "identity.txt");
    recipient = (await runCli([...sb.flags, "--json", "keygen", "--out", key])).json.data[0].recipient;
    token = JSON.parse(readFileSync(join(ctx, "alerts", "telegram.json"), "utf8")).bot_token;
    target = join(sb.dir, "nfs");
  });
  afterEach(() => {
    openUp(target);
    sb.cleanup();
  });

  /** Policy §5, verbatim but for the variables: the bot token is inside. */
  const referenceFlowSnapshot = () => {
    const out = join(sb.backupRoot, CTX, REF_ID);
    mkdirSync(out, { recursive: true });
    sh("bash", [
      "-c",
      `set -e; SRC="${ctx}"; OUT="${out}"; rsync -a --delete --exclude 'vault/secrets.env' --exclude '*.secret' "$SRC/" "$OUT/"; tar -C "$OUT" -czf "$OUT.tar.gz" .; sha256sum "$OUT.tar.gz" > "$OUT.tar.gz.sha256"; chmod 600 "$OUT.tar.gz"`,
    ]);
    // the rsync copy is the flow's working folder, not part of the snapshot
    sh("rm", ["-rf", out]);
  };
  const config = (body: Record<string, unknown>) => {
    const path = join(sb.dir, "config.json");
    writeFileSync(path, JSON.stringify(body));
    return ["--config", path];
  };
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, ...args], { env: { PAAS_BACKUP_NOW: "2026-11-02T03:00:00Z", ...env } });
  const ownDir = () => {
    const root = JSON.parse(readFileSync(join(sb.backupRoot, "paas-backup.repository.json"), "utf8")).id;
    return join(target, "roots", root, CTX);
  };

  it("leaves the host encrypted: only .tar.gz.age and its checksum there, sha256sum -c, age -d and GNU tar read it, the bot token nowhere; verify finds a flipped byte, push heals it, restore --from-offsite brings it back", async () => {
    const cfg = config({
      recipients: [recipient],
      offsite: { targets: [{ name: "nfs", url: `file://${target}` }] },
    });
    referenceFlowSnapshot();
    const own = await cli([...cfg, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(own.code, own.stdout + own.stderr).toBe(0);
    const ownId: string = own.json.data[0].id;

    // at home, list and status say plaintext
    const list = await cli([...cfg, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((s: any) => [s.id, s.plaintext])).toEqual([
      [REF_ID, true],
      [ownId, true],
    ]);
    expect((await cli([...cfg, "list", "--context", CTX])).stdout).toContain("PLAINTEXT");
    const status = await cli([...cfg, "--json", "status", "--context", CTX]);
    expect(status.json.data[0].plaintext).toEqual([REF_ID, ownId]);
    expect(status.json.data[0].newestFull).toMatchObject({ id: ownId, plaintext: true });
    const statusText = await cli([...cfg, "status", "--context", CTX]);
    expect(statusText.stdout).toContain(`${ownId} (0m) PLAINTEXT`);
    expect(statusText.stdout).toMatch(/2 snapshot\(s\) PLAINTEXT at home/);

    const push = await cli([...cfg, "--json", "offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed.map((c: any) => [c.id, c.encryptedOnPush])).toEqual([
      [REF_ID, true],
      [ownId, true],
    ]);
    expect(push.json.data[0].refused).toEqual([]);

    // the target holds the age files and their checksums (and the manifest), never a .tar.gz
    const dir = ownDir();
    // the snapshots' files (the folder also holds the records' chain head, issue 24)
    const names = readdirSync(dir).filter((n) => /^\d{8}T\d{6}Z\./.test(n) && !n.endsWith(".sha256.meta"));
    expect(names.sort()).toEqual(
      [
        `${REF_ID}.tar.gz.age`,
        `${REF_ID}.tar.gz.age.sha256`,
        `${ownId}.manifest.json`,
        `${ownId}.tar.gz.age`,
        `${ownId}.tar.gz.age.sha256`,
      ].sort(),
    );
    expect(filesUnder(target).filter((p) => p.endsWith(".tar.gz"))).toEqual([]);
    for (const id of [REF_ID, ownId]) {
      expect(sh("bash", ["-c", `cd "${dir}" && sha256sum -c "${id}.tar.gz.age.sha256"`])).toContain(": OK");
      const listing = sh("bash", [
        "-c",
        `age -d -i "${key}" "${dir}/${id}.tar.gz.age" | tar -tzf - | sed 's#^\\./##' | sort`,
      ]);
      expect(listing).toMatch(/^config\.json$/m);
      if (id === REF_ID) expect(listing).toMatch(/^alerts\/telegram\.json$/m);
    }
    // the shell flow's snapshot carries the bot token; no byte at the target does, gunzipped or not
    const atHome = gunzipSync(readFileSync(join(sb.backupRoot, CTX, `${REF_ID}.tar.gz`)));
    expect(atHome.includes(token)).toBe(true);
    for (const bytes of readableAt(target)) expect(bytes.includes(token)).toBe(false);

    const offList = await cli([...cfg, "--json", "offsite", "list", "--context", CTX]);
    expect(offList.json.data[0].entries.map((e: any) => [e.id, e.confirmed, e.encryptedOnPush])).toEqual([
      [REF_ID, true, true],
      [ownId, true, true],
    ]);
    expect((await cli([...cfg, "offsite", "list", "--context", CTX])).stdout).toContain("age (on push)");
    const record = JSON.parse(readFileSync(join(sb.backupRoot, CTX, "offsite", "nfs.json"), "utf8"));
    expect(record.copies[ownId]).toMatchObject({ encryptedOnPush: true });
    expect(record.pending ?? {}).toEqual({});
    expect((await cli([...cfg, "offsite", "verify", "--context", CTX])).code).toBe(0);

    // a flipped byte in the encrypted copy: verify compares against that object's own checksum
    const age = join(dir, `${ownId}.tar.gz.age`);
    chmodSync(dir, 0o700);
    chmodSync(age, 0o600);
    const bytes = readFileSync(age);
    bytes[bytes.length - 100] ^= 0x01;
    writeFileSync(age, bytes);
    const bad = await cli([...cfg, "--json", "offsite", "verify", "--context", CTX]);
    expect(bad.code, bad.stdout).toBe(3);
    const badCopy = bad.json.data[0].results.find((r: any) => r.id === ownId);
    expect(badCopy.ok).toBe(false);
    expect(badCopy.problems.join(" ")).toMatch(/artifact bytes hash to/);
    const healed = await cli([...cfg, "--json", "offsite", "push", "--context", CTX]);
    expect(healed.code, healed.stdout + healed.stderr).toBe(0);
    expect(healed.json.data[0].repaired.map((r: any) => r.id)).toEqual([ownId]);
    expect(sh("bash", ["-c", `cd "${dir}" && sha256sum -c "${ownId}.tar.gz.age.sha256"`])).toContain(": OK");
    expect((await cli([...cfg, "offsite", "verify", "--context", CTX])).code).toBe(0);

    // the home copy is lost: restore --from-offsite fetches the age copy, checks its checksum,
    // decrypts it with --identity and restores; home holds the plaintext snapshot as it was
    const homeArtifact = join(sb.backupRoot, CTX, `${ownId}.tar.gz`);
    const homeSha = readFileSync(`${homeArtifact}.sha256`, "utf8");
    sh("rm", ["-f", homeArtifact]);
    writeFileSync(join(ctx, "config.json"), "{}\n");
    const restore = await cli([
      ...cfg,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      ownId,
      "--ticket",
      "INC-21",
      "--yes",
      "--from-offsite",
      "nfs",
      "--identity",
      key,
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.offsite).toMatchObject({ chosen: ownId, fetched: [ownId] });
    expect(readFileSync(join(ctx, "config.json"), "utf8")).not.toBe("{}\n");
    expect(readFileSync(`${homeArtifact}.sha256`, "utf8")).toBe(homeSha);
    expect(existsSync(`${homeArtifact}.age`)).toBe(false);

    // without the identity the fetched copy stays encrypted and restore says what it needs
    sh("rm", ["-f", homeArtifact]);
    const noKey = await cli([
      ...cfg,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      ownId,
      "--ticket",
      "INC-21",
      "--yes",
      "--from-offsite",
      "nfs",
    ]);
    expect(noKey.code, noKey.stdout).toBe(4);
    expect(noKey.json.error.code).toBe("PAAS_BACKUP_IDENTITY_REQUIRED");
  }, 120_000);

  it("with no recipient the push is refused, named, with the remedy (exit 4), and nothing plaintext is sent; tick reports it the same way", async () => {
    const cfg = config({ offsite: { targets: [{ name: "nfs", url: `file://${target}` }] } });
    referenceFlowSnapshot();
    const push = await cli([...cfg, "--json", "offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(4);
    expect(push.json.ok).toBe(false);
    expect(push.json.error.code).toBe(CODE);
    expect(push.json.error.message).toContain(REF_ID);
    expect(push.json.error.remediation).toMatch(/recipients/);
    expect(push.json.error.remediation).toMatch(/allowPlaintext: true/);
    expect(push.json.data[0].refused).toEqual([REF_ID]);
    expect(filesUnder(target).filter((p) => p.includes(".tar.gz"))).toEqual([]);
    const text = await cli([...cfg, "offsite", "push", "--context", CTX]);
    expect(text.code).toBe(4);
    expect(text.stderr).toContain(`code: ${CODE} (exit 4)`);
    expect(text.stderr).toContain("what to do:");

    // tick takes its --insecure-plaintext full, then refuses to send it: the context's outcome says why
    const tick = await cli([...cfg, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      PAAS_BACKUP_NOW: "2026-11-03T03:00:00Z",
    });
    expect(tick.code, tick.stdout + tick.stderr).toBe(4);
    expect(tick.json.data[0]).toMatchObject({ ok: false, action: "full", error: { code: CODE } });
    expect(tick.json.data[0].error.remediation).toMatch(/allowPlaintext: true/);
    expect(filesUnder(target).filter((p) => p.includes(".tar.gz"))).toEqual([]);
    const tickText = await cli([...cfg, "tick", "--context", CTX, "--insecure-plaintext"], {
      PAAS_BACKUP_NOW: "2026-11-03T03:30:00Z",
    });
    expect(tickText.code).toBe(4);
    expect(tickText.stdout).toContain(CODE);
  }, 120_000);

  it("a target with allowPlaintext: true takes the plaintext snapshot as it is", async () => {
    const cfg = config({
      recipients: [recipient],
      offsite: { targets: [{ name: "nfs", url: `file://${target}`, allowPlaintext: true }] },
    });
    referenceFlowSnapshot();
    const push = await cli([...cfg, "--json", "offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed[0]).toMatchObject({ id: REF_ID });
    expect(push.json.data[0].pushed[0].encryptedOnPush ?? false).toBe(false);
    expect(existsSync(join(ownDir(), `${REF_ID}.tar.gz`))).toBe(true);
    expect(existsSync(join(ownDir(), `${REF_ID}.tar.gz.age`))).toBe(false);
    // the same search that finds nothing at an encrypting target finds the token here
    expect(readableAt(target).some((b) => b.includes(token))).toBe(true);
    const list = await cli([...cfg, "--json", "offsite", "list", "--context", CTX]);
    expect(list.json.data[0].entries[0]).toMatchObject({
      id: REF_ID,
      encrypted: false,
      encryptedOnPush: false,
    });
  }, 60_000);

  it("a signed snapshot's encrypted copy is signed by this host: ssh-keygen -Y verify accepts its checksum file's signature", async () => {
    const home = join(sb.dir, "home");
    const allowed = join(sb.dir, "allowed_signers");
    const cfg = config({
      recipients: [recipient],
      allowedSigners: allowed,
      offsite: { targets: [{ name: "nfs", url: `file://${target}` }] },
    });
    const signing = await cli([...cfg, "keygen", "--signing", "--principal", "host-a"], { HOME: home });
    expect(signing.code, signing.stderr).toBe(0);
    writeFileSync(allowed, `${signing.stdout.trim()}\n`);
    const snap = await cli([...cfg, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
      HOME: home,
    });
    const id: string = snap.json.data[0].id;
    expect(existsSync(join(sb.backupRoot, CTX, `${id}.tar.gz.sha256.sig`))).toBe(true);
    const push = await cli([...cfg, "--json", "offsite", "push", "--context", CTX], { HOME: home });
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.warnings).toEqual([]);
    const dir = ownDir();
    for (const file of [`${id}.tar.gz.age.sha256`, `${id}.manifest.json`]) {
      const verified = execFileSync(
        "bash",
        [
          "-c",
          `ssh-keygen -Y verify -f "${allowed}" -I host-a -n paas-backup -s "${dir}/${file}.sig" < "${dir}/${file}"`,
        ],
        { encoding: "utf8" },
      );
      expect(verified).toContain('Good "paas-backup" signature for host-a');
    }
    // no signature of the plaintext's checksum file goes out: it would name no object there
    expect(existsSync(join(dir, `${id}.tar.gz.sha256.sig`))).toBe(false);
    // the home copy lost: the fetched copy, decrypted, checks out against the signatures at home
    sh("rm", ["-f", join(sb.backupRoot, CTX, `${id}.tar.gz`)]);
    const restore = await cli(
      [
        ...cfg,
        "--json",
        "restore",
        "--context",
        CTX,
        "--ticket",
        "INC-SIG",
        "--yes",
        "--from-offsite",
        "nfs",
        "--identity",
        key,
      ],
      { HOME: home },
    );
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.offsite).toMatchObject({ chosen: id, fetched: [id] });
  }, 120_000);

  it("a kill after the encrypted copy's commit, or before it, leaves nothing confirmed that is not whole; the next push finishes", async () => {
    const cfg = config({
      recipients: [recipient],
      offsite: { targets: [{ name: "nfs", url: `file://${target}` }] },
    });
    referenceFlowSnapshot();
    const killedAfter = (call: string) =>
      new Promise<NodeJS.Signals | null>((done) => {
        const child = spawn(
          process.execPath,
          ["--import", PRELOAD, CLI, ...sb.flags, ...cfg, "offsite", "push", "--context", CTX],
          {
            env: {
              PATH: process.env.PATH ?? "",
              HOME: process.env.HOME ?? "/root",
              PB_KILL_AFTER_CALL: call,
            },
            cwd: tmpdir(),
            stdio: "ignore",
          },
        );
        child.on("close", (_c, signal) => done(signal));
      });
    const recordFile = join(sb.backupRoot, CTX, "offsite", "nfs.json");
    // killed right after the pending record was written: no object yet, nothing confirmed
    expect(await killedAfter("rename:offsite/nfs\\.json$")).toBe("SIGKILL");
    const pending = JSON.parse(readFileSync(recordFile, "utf8"));
    expect(pending.copies).toEqual({});
    expect(Object.keys(pending.pending)).toEqual([REF_ID]);
    expect(existsSync(join(ownDir(), `${REF_ID}.tar.gz.age`))).toBe(false);
    // killed right after the commit (the rename that makes the copy appear), before it was recorded
    expect(await killedAfter(`rename:/${REF_ID}\\.tar\\.gz\\.age$`)).toBe("SIGKILL");
    expect(JSON.parse(readFileSync(recordFile, "utf8")).copies).toEqual({});
    const list = await cli([...cfg, "--json", "offsite", "list", "--context", CTX]);
    expect(list.json.data[0].entries.map((e: any) => [e.id, e.confirmed])).toEqual([[REF_ID, false]]);
    // the next push confirms what landed by re-reading it against the pending sha256; nothing is sent twice
    const again = await cli([...cfg, "--json", "offsite", "push", "--context", CTX]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.json.data[0].pushed).toMatchObject([
      { id: REF_ID, confirmedBy: "reread", encryptedOnPush: true },
    ]);
    const after = JSON.parse(readFileSync(recordFile, "utf8"));
    expect(after.pending).toEqual({});
    expect(readdirSync(join(sb.backupRoot, CTX, "offsite")).filter((n) => n.endsWith(".partial"))).toEqual(
      [],
    );
    expect(sh("bash", ["-c", `cd "${ownDir()}" && sha256sum -c "${REF_ID}.tar.gz.age.sha256"`])).toContain(
      ": OK",
    );
    expect((await cli([...cfg, "offsite", "verify", "--context", CTX])).code).toBe(0);
    expect(
      execFileSync(
        "bash",
        ["-c", `age -d -i "${key}" "${ownDir()}/${REF_ID}.tar.gz.age" | tar -tzf - | wc -l`],
        { encoding: "utf8" },
      ).trim(),
    ).not.toBe("0");
  }, 120_000);
});

describe("offsite push of plaintext snapshots to S3 (RGW)", () => {
  let rgw: Rgw;
  let sb: Sandbox;
  beforeAll(async () => {
    rgw = await startRgw();
  });
  afterAll(async () => {
    await rgw.stop();
  });
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("behaves as the directory target: the bucket holds the age file and its checksum, verify reads it, restore --from-offsite decrypts it", async () => {
    const key = join(sb.dir, "keys", "identity.txt");
    const recipient = (await runCli([...sb.flags, "--json", "keygen", "--out", key])).json.data[0].recipient;
    const bucket = await rgw.createBucket({ prefix: "enc" });
    const cfgPath = join(sb.dir, "config.json");
    writeFileSync(
      cfgPath,
      JSON.stringify({
        recipients: [recipient],
        offsite: {
          targets: [{ name: "s3", url: `s3://${bucket}/si`, endpoint: rgw.endpoint, pathStyle: true }],
        },
      }),
    );
    const cli = (args: string[]) =>
      runCli([...sb.flags, "--config", cfgPath, ...args], {
        env: { ...rgw.env, PAAS_BACKUP_NOW: "2026-11-02T03:00:00Z" },
      });
    const snap = await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    const id: string = snap.json.data[0].id;
    const push = await cli(["--json", "offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed).toMatchObject([{ id, encryptedOnPush: true }]);
    const keys = ((await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).map(
      (o) => o.Key!,
    );
    expect(keys.filter((k) => k.endsWith(".tar.gz"))).toEqual([]);
    const artifactKey = keys.find((k) => k.endsWith(`${id}.tar.gz.age`))!;
    expect(keys).toContain(`${artifactKey}.sha256`);
    // the checksum file there names the bytes there, as sha256sum -c would check them
    const body = async (k: string) =>
      Buffer.from(
        await (
          await rgw.client.send(new GetObjectCommand({ Bucket: bucket, Key: k }))
        ).Body!.transformToByteArray(),
      );
    const stored = await body(artifactKey);
    const { createHash } = await import("node:crypto");
    expect((await body(`${artifactKey}.sha256`)).toString()).toBe(
      `${createHash("sha256").update(stored).digest("hex")}  ${id}.tar.gz.age\n`,
    );
    expect(stored.subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    const verify = await cli(["--json", "offsite", "verify", "--context", CTX, "--deep"]);
    expect(verify.code, verify.stdout).toBe(0);
    const list = await cli(["--json", "offsite", "list", "--context", CTX]);
    expect(list.json.data[0].entries).toMatchObject([{ id, confirmed: true, encryptedOnPush: true }]);
    sh("rm", ["-f", join(sb.backupRoot, CTX, `${id}.tar.gz`)]);
    const restore = await cli([
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S3",
      "--yes",
      "--from-offsite",
      "s3",
      "--identity",
      key,
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.offsite).toMatchObject({ chosen: id, fetched: [id] });
    expect(existsSync(join(sb.backupRoot, CTX, `${id}.tar.gz`))).toBe(true);
  }, 180_000);
});
