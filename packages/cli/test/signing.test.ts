import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { readFileSync, writeFileSync, existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

/**
 * Issue 24 §2: snapshots signed in a format a standard tool verifies. OpenSSH's own
 * `ssh-keygen -Y verify` checks what paas-backup signed; verify and restore name the signer,
 * refuse a key outside the allowed signers and an unsigned snapshot dated after the repository
 * began signing (exit 4), and keep older unsigned snapshots usable.
 */
const CTX = "internal-dogfood";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("signed snapshots", () => {
  let sb: Sandbox;
  let config: string;
  let allowed: string;
  let home: string;
  const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env: env(extra) });
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    home = join(sb.dir, "home");
    config = join(sb.dir, "config.json");
    allowed = join(sb.dir, "allowed_signers");
    writeFileSync(config, JSON.stringify({ mandatoryDrillContexts: [], allowedSigners: allowed }));
    writeFileSync(allowed, "");
    // before this host signs: an ordinary unsigned snapshot
    const old = await cli(
      ["--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      at("2026-10-01T00:00:00Z"),
    );
    expect(old.code, old.stderr).toBe(0);
    ids.old = old.json.data[0].id;
  }, 60_000);
  afterAll(() => sb.cleanup());

  it("keygen --signing writes an OpenSSH key ssh-keygen reads, and prints its allowed_signers line", async () => {
    const r = await cli(["keygen", "--signing", "--principal", "host-a"]);
    expect(r.code, r.stderr).toBe(0);
    const key = join(home, ".config", "paas-backup", "signing_key");
    expect(statMode(key)).toBe(0o600);
    const line = r.stdout.trim();
    expect(line).toMatch(/^host-a ssh-ed25519 AAAA[0-9A-Za-z+/=]+ host-a$/);
    const pub = spawnSync("ssh-keygen", ["-y", "-f", key], { encoding: "utf8" });
    expect(pub.status, pub.stderr).toBe(0);
    expect(line).toContain(pub.stdout.trim().split(" ").slice(0, 2).join(" "));
    writeFileSync(allowed, `${line}\n`);
    expect(r.stderr).toMatch(/fingerprint: +SHA256:/);
    const again = await cli(["keygen", "--signing"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/--force/);
  });

  it("snapshot signs the manifest and the checksum file, and ssh-keygen -Y verify accepts both", async () => {
    const r = await cli(
      ["--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      at("2026-10-02T00:00:00Z"),
    );
    expect(r.code, r.stderr).toBe(0);
    ids.signed = r.json.data[0].id;
    const dir = join(sb.backupRoot, CTX);
    for (const file of [`${ids.signed}.manifest.json`, `${ids.signed}.tar.gz.sha256`]) {
      expect(existsSync(join(dir, `${file}.sig`))).toBe(true);
      const v = spawnSync(
        "ssh-keygen",
        ["-Y", "verify", "-f", allowed, "-I", "host-a", "-n", "paas-backup", "-s", join(dir, `${file}.sig`)],
        { input: readFileSync(join(dir, file)), encoding: "utf8" },
      );
      expect(v.status, v.stderr).toBe(0);
      expect(v.stdout).toMatch(/Good "paas-backup" signature for host-a with ED25519 key SHA256:/);
    }
    // the repository records when signing began
    expect(JSON.parse(readFileSync(join(sb.backupRoot, "paas-backup.signing.json"), "utf8")).since).toMatch(
      /^2026-10-02T00:00:0/,
    );
    const v = await cli(["--json", "verify", "--context", CTX, "--all"], at("2026-10-02T01:00:00Z"));
    expect(v.code, v.stdout).toBe(0);
    const byId = new Map(v.json.data.map((x: any) => [x.id, x.signature]));
    expect(byId.get(ids.signed)).toMatchObject({ state: "signed", principal: "host-a", refusal: null });
    // made before signing began: usable, and marked unsigned
    expect(byId.get(ids.old)).toMatchObject({ state: "unsigned", refusal: null });
  });

  it("refuses a snapshot signed by a key outside the allowed signers (exit 4), verify and restore alike", async () => {
    const evil = join(sb.dir, "evil_key");
    expect((await cli(["keygen", "--signing", "--out", evil, "--principal", "mallory"])).code).toBe(0);
    const r = await cli(["--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
      ...at("2026-10-03T00:00:00Z"),
      PAAS_BACKUP_SIGNING_KEY: evil,
    });
    expect(r.code, r.stderr).toBe(0);
    ids.evil = r.json.data[0].id;
    const v = await cli(
      ["--json", "verify", "--context", CTX, "--snapshot", ids.evil],
      at("2026-10-03T01:00:00Z"),
    );
    expect(v.code).toBe(4);
    expect(v.json.error.code).toBe("PAAS_BACKUP_UNTRUSTED_SIGNER");
    const before = treeHashes(sb.state.contextDir(CTX));
    const restore = await cli(
      ["--json", "restore", "--context", CTX, "--snapshot", ids.evil, "--ticket", "INC-SIG", "--yes"],
      at("2026-10-03T02:00:00Z"),
    );
    expect(restore.code).toBe(4);
    expect(restore.json.error.code).toBe("PAAS_BACKUP_UNTRUSTED_SIGNER");
    expect(restore.json.error.message).toMatch(/SHA256:/);
    expect(treeHashes(sb.state.contextDir(CTX))).toEqual(before);
  });

  it("refuses an unsigned snapshot dated after signing began unless --allow-unsigned, which the record names", async () => {
    const key = join(home, ".config", "paas-backup", "signing_key");
    const saved = readFileSync(key);
    rmSync(key);
    const r = await cli(
      ["--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      at("2026-10-04T00:00:00Z"),
    );
    writeFileSync(key, saved, { mode: 0o600 });
    expect(r.code, r.stderr).toBe(0);
    ids.unsigned = r.json.data[0].id;
    const refused = await cli(
      ["--json", "restore", "--context", CTX, "--snapshot", ids.unsigned, "--ticket", "INC-U", "--yes"],
      at("2026-10-04T01:00:00Z"),
    );
    expect(refused.code).toBe(4);
    expect(refused.json.error.code).toBe("PAAS_BACKUP_UNSIGNED");
    expect(refused.json.error.remediation).toMatch(/--allow-unsigned/);
    const allowedRun = await cli(
      [
        "--json",
        "restore",
        "--context",
        CTX,
        "--snapshot",
        ids.unsigned,
        "--ticket",
        "INC-U2",
        "--yes",
        "--allow-unsigned",
      ],
      at("2026-10-04T02:00:00Z"),
    );
    expect(allowedRun.code, allowedRun.stdout).toBe(0);
    const incidents = join(sb.backupRoot, CTX, "incidents");
    const rec = readdirSync(incidents)
      .filter((n) => n.includes("INC-U2") && n.endsWith(".json"))
      .map((n) => JSON.parse(readFileSync(join(incidents, n), "utf8")))[0];
    expect(rec).toMatchObject({ allowUnsigned: true, signatures: [{ id: ids.unsigned, state: "unsigned" }] });
    // a snapshot from before signing restores without it, and the record names its state
    const old = await cli(
      ["--json", "restore", "--context", CTX, "--snapshot", ids.old, "--ticket", "INC-OLD", "--yes"],
      at("2026-10-04T03:00:00Z"),
    );
    expect(old.code, old.stdout).toBe(0);
    const signed = await cli(
      ["--json", "restore", "--context", CTX, "--snapshot", ids.signed, "--ticket", "INC-SIGNED", "--yes"],
      at("2026-10-04T04:00:00Z"),
    );
    expect(signed.code, signed.stdout).toBe(0);
    const signedRec = readdirSync(incidents)
      .filter((n) => n.includes("INC-SIGNED") && n.endsWith(".json"))
      .map((n) => JSON.parse(readFileSync(join(incidents, n), "utf8")))[0];
    expect(signedRec.signatures).toEqual([
      expect.objectContaining({ id: ids.signed, state: "signed", principal: "host-a" }),
    ]);
  });

  it("a manifest changed after signing is refused (exit 4), and ssh-keygen agrees", async () => {
    const dir = join(sb.backupRoot, CTX);
    const manifest = join(dir, `${ids.signed}.manifest.json`);
    const text = readFileSync(manifest, "utf8");
    writeFileSync(manifest, text.replace('"include": [', '"include": [ '));
    const v = await cli(
      ["--json", "verify", "--context", CTX, "--snapshot", ids.signed],
      at("2026-10-05T00:00:00Z"),
    );
    expect(v.code).toBe(4);
    expect(v.json.error.code).toBe("PAAS_BACKUP_BAD_SIGNATURE");
    const ssh = spawnSync(
      "ssh-keygen",
      ["-Y", "verify", "-f", allowed, "-I", "host-a", "-n", "paas-backup", "-s", `${manifest}.sig`],
      { input: readFileSync(manifest), encoding: "utf8" },
    );
    expect(ssh.status).not.toBe(0);
    writeFileSync(manifest, text);
  });

  it("incident and drill records are signed (ssh-keygen -Y verify), and the chain head and signing record go offsite", async () => {
    const sshVerify = (file: string, data: Buffer = readFileSync(file)) =>
      spawnSync(
        "ssh-keygen",
        ["-Y", "verify", "-f", allowed, "-I", "host-a", "-n", "paas-backup", "-s", `${file}.sig`],
        { input: data, encoding: "utf8" },
      );
    const incidents = join(sb.backupRoot, CTX, "incidents");
    const incident = join(
      incidents,
      readdirSync(incidents).find((n) => n.includes("INC-SIGNED") && n.endsWith(".json"))!,
    );
    const good = sshVerify(incident);
    expect(good.status, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/Good "paas-backup" signature for host-a with ED25519 key SHA256:/);
    // one changed byte in the record and OpenSSH refuses it
    const edited = Buffer.from(readFileSync(incident, "utf8").replace("INC-SIGNED", "INC-SIGNEX"));
    expect(sshVerify(incident, edited).status).not.toBe(0);

    // a drill's record is signed the same way, whatever the drill found
    const drill = await cli(["--json", "drill", "--context", CTX], at("2026-10-06T00:00:00Z"));
    expect([0, 4, 5]).toContain(drill.code);
    const drills = join(sb.backupRoot, CTX, "drills");
    const drillRecord = join(
      drills,
      readdirSync(drills).find((n) => n.endsWith(".json"))!,
    );
    expect(drill.json.data[0].recordFile).toBe(drillRecord);
    const drillCheck = sshVerify(drillRecord);
    expect(drillCheck.status, drillCheck.stderr).toBe(0);

    // the push carries the newest record's name and hash, and when this root began signing
    const nfs = join(sb.dir, "nfs");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        allowedSigners: allowed,
        offsite: { targets: [{ name: "nfs", url: `file://${nfs}`, allowPlaintext: true }] },
      }),
    );
    const push = await cli(["--json", "offsite", "push", "--context", CTX], at("2026-10-06T01:00:00Z"));
    expect(push.code, push.stdout + push.stderr).toBe(0);
    const root = readdirSync(join(nfs, "roots")).find((n) => !n.endsWith(".json"))!;
    expect(readFileSync(join(nfs, "roots", root, "paas-backup.signing.json"), "utf8")).toBe(
      readFileSync(join(sb.backupRoot, "paas-backup.signing.json"), "utf8"),
    );
    const head = JSON.parse(readFileSync(join(nfs, "roots", root, CTX, "records-head.json"), "utf8"));
    expect(head.head.file).toBe(`drills/${drillRecord.split("/").pop()}`);

    // the newest record deleted at home (no tick has run to remember it): the offsite head shows it
    rmSync(drillRecord);
    rmSync(`${drillRecord}.sig`);
    const out = join(sb.dir, "report.json");
    const report = await cli(
      ["--json", "report", "--context", CTX, "--period", "2026-Q4", "--format", "json", "--out", out],
      at("2026-10-06T02:00:00Z"),
    );
    expect(report.code, report.stdout + report.stderr).toBe(0);
    const exceptions = JSON.parse(readFileSync(out, "utf8")).contexts[0].exceptions;
    expect(exceptions).toContainEqual(
      expect.objectContaining({
        kind: "record-chain",
        detail: expect.stringMatching(/^drills\/.*, the newest record as copied to nfs, is gone$/),
      }),
    );
  });

  it("report lists what is unsigned since signing began under Exceptions: snapshots and records, in json, csv and html", async () => {
    // a restore on a host that lost its signing key: it goes on, and its record is unsigned
    const key = join(home, ".config", "paas-backup", "signing_key");
    const saved = readFileSync(key);
    rmSync(key);
    const restore = await cli(
      ["--json", "restore", "--context", CTX, "--snapshot", ids.old, "--ticket", "INC-NOKEY", "--yes"],
      at("2026-10-07T00:00:00Z"),
    );
    writeFileSync(key, saved, { mode: 0o600 });
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    const incidents = join(sb.backupRoot, CTX, "incidents");
    const unsignedRecord = readdirSync(incidents).find(
      (n) => n.includes("INC-NOKEY") && n.endsWith(".json"),
    )!;
    expect(readdirSync(incidents)).not.toContain(`${unsignedRecord}.sig`);

    const report = (format: string) => {
      const out = join(sb.dir, `unsigned.${format}`);
      return cli(
        ["--json", "report", "--context", CTX, "--period", "2026-Q4", "--format", format, "--out", out],
        at("2026-10-08T00:00:00Z"),
      ).then((r) => {
        expect(r.code, r.stdout + r.stderr).toBe(0);
        return readFileSync(out, "utf8");
      });
    };
    const since = JSON.parse(readFileSync(join(sb.backupRoot, "paas-backup.signing.json"), "utf8")).since;
    const unsigned = JSON.parse(await report("json")).contexts[0].exceptions.filter(
      (e: any) => e.kind === "unsigned",
    );
    // the snapshot taken without the key and the record written without it; not the snapshot from
    // before signing began, nor anything signed
    expect(unsigned).toEqual([
      expect.objectContaining({
        at: expect.stringMatching(/^2026-10-04T00:00/),
        detail: expect.stringContaining(`snapshot ${ids.unsigned} has no signature`),
        resolvedAt: null,
      }),
      expect.objectContaining({
        at: expect.stringMatching(/^2026-10-07T00:00/),
        detail: expect.stringContaining(`${unsignedRecord} has no signature`),
      }),
    ]);
    expect(unsigned[0].detail).toContain(since);
    expect(JSON.stringify(unsigned)).not.toContain(ids.old);
    expect(JSON.stringify(unsigned)).not.toContain(ids.signed);
    const csv = (await report("csv")).split("\r\n").filter((l) => l.includes(",exception,unsigned,"));
    expect(csv).toHaveLength(2);
    expect(csv[0]).toContain(`snapshot ${ids.unsigned} has no signature`);
    const html = await report("html");
    expect(html).toContain(`snapshot ${ids.unsigned} has no signature`);
    expect(html).toContain(`${unsignedRecord} has no signature`);
  });
});

function statMode(path: string): number {
  return statSync(path).mode & 0o777;
}
