import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, sh, type Sandbox } from "./helpers.js";

// Issue 25 §3: one exit table. Damaged bytes are exit 3 whichever layer finds them (age, gzip),
// and restore names the older snapshot that verifies; a manifest that disagrees with intact bytes
// is 4; a file that is no identity is 2, a valid identity that opens nothing is 4.

const CTX = "internal-dogfood";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

/** Write `bytes` over the artifact and a checksum file that matches them, as someone "repairing" it would. */
function replaceWithMatchingChecksum(artifact: string, bytes: Buffer): void {
  chmodSync(artifact, 0o600);
  chmodSync(`${artifact}.sha256`, 0o600);
  writeFileSync(artifact, bytes);
  const dir = join(artifact, "..");
  const name = artifact.slice(dir.length + 1);
  writeFileSync(`${artifact}.sha256`, sh("sha256sum", [name], dir));
}

describe("one exit table: damaged bytes are 3, a disagreeing manifest 4, identities 2 or 4", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 1_500_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("a corrupt gzip member under a regenerated checksum is exit 3 in verify, restore and dump, naming the older snapshot", async () => {
    const older = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      {
        env: at("2026-11-24T09:00:00Z"),
      },
    );
    const newer = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      {
        env: at("2026-11-24T10:00:00Z"),
      },
    );
    expect(newer.code, newer.stderr).toBe(0);
    const artifact: string = newer.json.data[0].artifact;
    const bytes = readFileSync(artifact);
    bytes.fill(0xff, 4000, 4008); // inside the first member's deflate data
    replaceWithMatchingChecksum(artifact, bytes);

    const verify = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(verify.code, verify.stdout).toBe(3);
    expect(verify.json.error.code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
    expect(verify.json.error.remediation).toContain(`--snapshot ${older.json.data[0].id}`);

    const restore = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-3",
      "--yes",
    ]);
    expect(restore.code, restore.stdout).toBe(3);
    expect(restore.json.error).toMatchObject({
      code: "PAAS_BACKUP_ARCHIVE_CORRUPT",
      message: expect.stringContaining("corrupt"),
      remediation: expect.stringContaining(`--snapshot ${older.json.data[0].id}`),
    });
    const human = await runCli([...sb.flags, "restore", "--context", CTX, "--ticket", "INC-3", "--yes"]);
    expect(human.code).toBe(3);
    expect(human.stderr).toContain(`The newest older snapshot that verifies is ${older.json.data[0].id}`);

    const fallback = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-3",
      "--yes",
      "--fallback",
    ]);
    expect(fallback.code, fallback.stdout).toBe(0);
    expect(fallback.json.data[0].snapshot.id).toBe(older.json.data[0].id);

    const dump = await runCli([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"]);
    expect(dump.code, dump.stderr).toBe(3);
    expect(dump.stderr).toContain("PAAS_BACKUP_ARCHIVE_CORRUPT");
  });

  it("a member index that does not fit intact bytes stays exit 4 (the manifest disagrees)", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    const manifestFile: string = snap.json.data[0].manifestFile;
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8"));
    expect(manifest.gzipMembers.compressed.length).toBeGreaterThan(1);
    manifest.gzipMembers.compressed[0] -= 5;
    manifest.gzipMembers.compressed[1] += 5;
    chmodSync(manifestFile, 0o600);
    writeFileSync(manifestFile, JSON.stringify(manifest));
    const verify = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(verify.code, verify.stdout).toBe(4);
    expect(verify.json.data[0].deep.error.code).toBe("PAAS_BACKUP_MANIFEST_DISAGREES");
  });

  it("identities: no identity at all is 2, a valid one that opens nothing 4, an .age file that is not age 3", async () => {
    const keys = join(sb.dir, "keys");
    const right = await runCli([...sb.flags, "--json", "keygen", "--out", join(keys, "right.txt")]);
    const wrong = await runCli([...sb.flags, "--json", "keygen", "--out", join(keys, "wrong.txt")]);
    const recipient: string = right.json.data[0].recipient;
    await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--recipient", recipient], {
      env: at("2026-11-24T09:00:00Z"),
    });
    const newer = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--recipient", recipient],
      {
        env: at("2026-11-24T10:00:00Z"),
      },
    );
    expect(newer.code, newer.stderr).toBe(0);

    writeFileSync(join(keys, "garbage.txt"), "not a key at all\n", { mode: 0o600 });
    writeFileSync(join(keys, "damaged.txt"), `AGE-SECRET-KEY-1${"Q".repeat(58)}\n`, { mode: 0o600 });
    for (const file of ["garbage.txt", "damaged.txt"]) {
      const r = await runCli([
        ...sb.flags,
        "--json",
        "verify",
        "--context",
        CTX,
        "--deep",
        "--identity",
        join(keys, file),
      ]);
      expect(r.code, `${file}: ${r.stdout}`).toBe(2);
      expect(r.json.error.code).toBe("PAAS_BACKUP_BAD_IDENTITY");
      expect(r.stdout).not.toContain("QQQQQQQQ");
    }
    const other = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--deep",
      "--identity",
      join(keys, "wrong.txt"),
    ]);
    expect(other.code, other.stdout).toBe(4);
    expect(other.json.data[0].deep.error.code).toBe("PAAS_BACKUP_WRONG_IDENTITY");
    expect(wrong.code).toBe(0);

    // A plaintext gzip put where the .age artifact was, with a checksum to match: corrupt, not a key problem.
    const artifact: string = newer.json.data[0].artifact;
    const gz = sh("bash", ["-c", "head -c 20000 /dev/urandom | gzip | base64 -w0"]);
    replaceWithMatchingChecksum(artifact, Buffer.from(gz, "base64"));
    const restore = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-4",
      "--yes",
      "--identity",
      join(keys, "right.txt"),
    ]);
    expect(restore.code, restore.stdout).toBe(3);
    expect(restore.json.error.code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
    expect(restore.json.error.remediation).toMatch(/--snapshot 20261124T090000Z/);
    const verify = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--deep",
      "--identity",
      join(keys, "right.txt"),
    ]);
    expect(verify.code).toBe(3);
  });

  it("flag > environment > config file: PAAS_BACKUP_IDENTITY beats identityFile, --identity beats both", async () => {
    const keys = join(sb.dir, "keys");
    const right = await runCli([...sb.flags, "--json", "keygen", "--out", join(keys, "right.txt")]);
    await runCli([...sb.flags, "--json", "keygen", "--out", join(keys, "wrong.txt")]);
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ identityFile: join(keys, "wrong.txt") }));
    const snap = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--recipient",
      right.json.data[0].recipient,
    ]);
    expect(snap.code, snap.stderr).toBe(0);
    const verify = (env: Record<string, string>, extra: string[] = []) =>
      runCli([...sb.flags, "--config", config, "--json", "verify", "--context", CTX, "--deep", ...extra], {
        env,
      });
    expect((await verify({})).code).toBe(4); // the config file's (wrong) identity
    expect((await verify({ PAAS_BACKUP_IDENTITY: join(keys, "right.txt") })).code).toBe(0);
    expect(
      (
        await verify({ PAAS_BACKUP_IDENTITY: join(keys, "wrong.txt") }, [
          "--identity",
          join(keys, "right.txt"),
        ])
      ).code,
    ).toBe(0);
    const help = await runCli(["verify", "--help"]);
    expect(help.stdout.replace(/\s+/g, " ")).toContain(
      "(default: $PAAS_BACKUP_IDENTITY, else the config file's identityFile)",
    );
  });

  it("a bad recipient in the config file is named by its key and file, not as --recipient", async () => {
    const config = join(sb.dir, "config.json");
    const good = (await runCli([...sb.flags, "--json", "keygen", "--out", join(sb.dir, "k.txt")])).json
      .data[0].recipient;
    writeFileSync(config, JSON.stringify({ recipients: [good, "age1notarecipient"] }));
    const r = await runCli([...sb.flags, "--config", config, "snapshot", "--context", CTX]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`config file ${config}: recipients[1]`);
    expect(r.stderr).not.toContain("--recipient");
  });
});
