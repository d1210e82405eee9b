import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { existsSync, readFileSync, writeFileSync, readdirSync, mkdirSync, statSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { gunzipSync } from "node:zlib";
import { hostileCorpus } from "@paas-backup/testing";
import {
  makeSandbox,
  runCli,
  sh,
  treeHashes,
  expectedBackedUp,
  modeOf,
  type Sandbox,
  type CliResult,
} from "./helpers.js";

const CTX = "internal-dogfood";

async function keygen(sb: Sandbox, name = "identity.txt"): Promise<{ identity: string; recipient: string }> {
  const identity = join(sb.dir, "keys", name);
  const r = await runCli([...sb.flags, "--json", "keygen", "--out", identity]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return { identity, recipient: r.json.data[0].recipient };
}

describe("encryption at rest", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 100_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("refuses to write a plaintext snapshot unless asked, and records and shows that choice", async () => {
    const refused = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX]);
    expect(refused.code).toBe(4);
    expect(refused.json.error.code).toBe("PAAS_BACKUP_NO_RECIPIENT");
    expect(refused.json.error.remediation).toContain("paas-backup keygen");
    expect(
      existsSync(join(sb.backupRoot, CTX))
        ? readdirSync(join(sb.backupRoot, CTX)).filter((f) => f.includes(".tar.gz"))
        : [],
    ).toEqual([]);
    const plain = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(JSON.parse(readFileSync(plain.json.data[0].manifestFile, "utf8")).encryption).toEqual({
      type: "none",
    });
    const list = await runCli([...sb.flags, "list", "--context", CTX]);
    expect(list.stdout).toMatch(/PLAINTEXT/);
  });

  it("keygen writes a 0600 identity and refuses the backup root, git work trees and overwrites", async () => {
    const { identity, recipient } = await keygen(sb);
    expect(modeOf(identity)).toBe(0o600);
    expect(recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(sh("age-keygen", ["-y", identity]).trim()).toBe(recipient);
    expect((await runCli([...sb.flags, "keygen", "--out", identity])).code).toBe(2);
    const inBackups = await runCli([
      ...sb.flags,
      "--json",
      "keygen",
      "--out",
      join(sb.backupRoot, "key.txt"),
    ]);
    expect(inBackups.code).toBe(4);
    const repo = join(sb.dir, "repo");
    mkdirSync(join(repo, ".git"), { recursive: true });
    const inRepo = await runCli([...sb.flags, "--json", "keygen", "--out", join(repo, "secrets", "key.txt")]);
    expect(inRepo.code).toBe(4);
    expect(inRepo.json.error.message).toContain(repo);
    expect(existsSync(join(repo, "secrets", "key.txt"))).toBe(false);
    // an identity that sits in a work tree is refused at use too
    mkdirSync(join(repo, "keys"));
    writeFileSync(join(repo, "keys", "id.txt"), readFileSync(identity));
    const use = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--identity",
      join(repo, "keys", "id.txt"),
    ]);
    expect(use.code).toBe(4);
    expect(use.json.error.message).toContain(repo);
  });

  it("writes <id>.tar.gz.age whose checksum anyone can confirm and which the age CLI decrypts", async () => {
    const { identity, recipient } = await keygen(sb);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--recipient",
      recipient,
      "--include",
      "releases",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = r.json.data[0];
    expect(s.artifact).toBe(join(sb.backupRoot, CTX, `${s.id}.tar.gz.age`));
    expect(s.encrypted).toBe(true);
    expect(readFileSync(s.artifact).subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    expect(sh("sha256sum", ["-c", `${s.id}.tar.gz.age.sha256`], join(sb.backupRoot, CTX))).toContain(": OK");
    const out = join(sb.dir, "age-extract");
    mkdirSync(out);
    sh("bash", ["-c", `age -d -i "${identity}" "${s.artifact}" | tar -C "${out}" -xz`]);
    expect(treeHashes(out)).toEqual(expectedBackedUp(sb.state.contextDir(CTX), ["releases"]));
    const manifest = JSON.parse(readFileSync(s.manifestFile, "utf8"));
    expect(manifest.encryption).toEqual({ type: "age", recipients: [recipient] });
    const deep = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--deep",
      "--identity",
      identity,
    ]);
    expect(deep.code, deep.stdout).toBe(0);
  });

  it("restores an artifact that the age CLI encrypted from a plain snapshot tarball", async () => {
    const { identity, recipient } = await keygen(sb);
    const plain = (
      await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"])
    ).json.data[0];
    const other = join(sb.dir, "other-backups", CTX);
    mkdirSync(other, { recursive: true, mode: 0o700 });
    const enc = join(other, `${plain.id}.tar.gz.age`);
    sh("age", ["-r", recipient, "-o", enc, plain.artifact]);
    sh("chmod", ["600", enc]);
    sh("bash", [
      "-c",
      `cd "${other}" && sha256sum "${plain.id}.tar.gz.age" > "${plain.id}.tar.gz.age.sha256"`,
    ]);
    writeFileSync(join(sb.state.contextDir(CTX), "targets.json"), "{}\n");
    const flags = ["--state-root", sb.stateRoot, "--backup-root", join(sb.dir, "other-backups")];
    const r = await runCli([
      ...flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-AGE",
      "--yes",
      "--identity",
      identity,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(
      JSON.parse(readFileSync(join(sb.state.contextDir(CTX), "targets.json"), "utf8")).targets,
    ).toHaveLength(3);
  });

  it("a missing or wrong identity is a clear error before anything is touched", async () => {
    const { recipient } = await keygen(sb);
    const wrong = await keygen(sb, "wrong.txt");
    await runCli([...sb.flags, "snapshot", "--context", CTX, "--recipient", recipient]);
    const before = treeHashes(sb.stateRoot);
    const none = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-K",
      "--yes",
    ]);
    expect(none.code).toBe(4);
    expect(none.json.error.code).toBe("PAAS_BACKUP_IDENTITY_REQUIRED");
    expect(none.json.error.remediation).toContain("--identity");
    const bad = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-K",
      "--yes",
      "--identity",
      wrong.identity,
    ]);
    expect(bad.code).toBe(4);
    expect(bad.json.error.code).toBe("PAAS_BACKUP_WRONG_IDENTITY");
    expect(bad.json.error.message).toContain(wrong.identity);
    expect(treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"))).toEqual(before);
    expect(readdirSync(join(sb.stateRoot, ".paas-backup", "staging"))).toEqual([]);
  });
});

describe("no secret enters a backup", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 60_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("redacts a plaintext secret in a protected file (exit 9), naming file, line and rule but never the value", async () => {
    // Until issue 10 §4 this refused the snapshot (exit 4); now the stored copy holds <redacted>.
    const ctx = sb.state.contextDir(CTX);
    const cfg = JSON.parse(readFileSync(join(ctx, "addons.json"), "utf8"));
    cfg.apps.web[0].vars.POSTGRES_PASSWORD = "PLANTED-ADDON-VALUE-77";
    writeFileSync(join(ctx, "addons.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    writeFileSync(
      join(ctx, "events", "alerts.jsonl"),
      `${readFileSync(join(ctx, "events", "alerts.jsonl"), "utf8")}{"timestamp":"x","message":"key AKIAIOSFODNN7PLANTED"}\n`,
    );
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(r.code).toBe(9);
    const rules = r.json.data[0].redactions.map((x: any) => `${x.path} ${x.rule}`);
    expect(rules).toContain("addons.json secret-json-field");
    expect(rules).toContain("events/alerts.jsonl aws-access-key-id");
    expect(r.stdout + r.stderr).not.toContain("PLANTED-ADDON-VALUE-77");
    const tarText = gunzipSync(readFileSync(r.json.data[0].artifact)).toString("latin1");
    expect(tarText).not.toContain("PLANTED-ADDON-VALUE-77");
    expect(tarText).not.toContain("AKIAIOSFODNN7PLANTED");
    // A known false positive is allowed by naming the file and the rule in the config file: not redacted, not reported.
    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({ secretAllow: [{ path: "addons.json", rule: "secret-json-field" }] }),
    );
    const still = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(still.code).toBe(9);
    expect(still.json.data[0].redactions.map((x: any) => `${x.path} ${x.rule}`)).toEqual([
      "events/alerts.jsonl aws-access-key-id",
    ]);
    writeFileSync(
      config,
      JSON.stringify({
        secretAllow: [
          { path: "addons.json", rule: "secret-json-field" },
          { path: "events/alerts.jsonl", rule: "aws-access-key-id" },
        ],
      }),
    );
    const allowed = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(allowed.code, allowed.stdout).toBe(0);
    expect(allowed.json.data[0].redactions).toEqual([]);
    // post-restore doctor runs the same scan: without the allowance it reports contamination
    const doc = await runCli([...sb.flags, "--json", "doctor", "--context", CTX]);
    expect(doc.code).toBe(5);
    expect(doc.json.checks.find((c: any) => c.name === "repo_plaintext_secret_exposure")).toMatchObject({
      ok: false,
    });
    expect(doc.stdout).not.toContain("PLANTED-ADDON-VALUE-77");
  });

  it("no planted marker appears in any byte the tool writes or prints, decrypted archives included", async () => {
    const { identity, recipient } = await keygen(sb);
    const outputs: CliResult[] = [];
    const run = async (args: string[]) => {
      const r = await runCli([...sb.flags, ...args]);
      outputs.push(r);
      return r;
    };
    await run([
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--recipient",
      recipient,
      "--include",
      "releases,cache",
    ]);
    await run(["snapshot", "--context", CTX, "--insecure-plaintext", "--include", "releases"]);
    await run([
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--recipient",
      recipient,
      "--include",
      "releases",
    ]);
    await run(["--json", "tick", "--all-contexts", "--recipient", recipient]);
    await run(["list", "--context", CTX]);
    await run(["--json", "verify", "--context", CTX, "--all", "--deep", "--identity", identity]);
    await run([
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-M",
      "--yes",
      "--identity",
      identity,
      "--snapshot",
      "latest",
    ]);
    await run([
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-M2",
      "--yes",
      "--identity",
      identity,
      "--dry-run",
    ]);
    await run(["--json", "doctor", "--context", CTX]);
    await run(["doctor", "--context", CTX]);
    await run(["--json", "drill", "--context", CTX, "--identity", identity]);
    await run(["--json", "prune", "--context", CTX, "--dry-run"]);
    const markers = sb.state.planted.map((p) => p.marker);
    expect(markers.length).toBeGreaterThanOrEqual(6);
    const haystacks: { where: string; text: string }[] = outputs.map((o, i) => ({
      where: `output ${i}`,
      text: o.stdout + o.stderr,
    }));
    // every file in the backup root, with artifacts decrypted and decompressed
    const walk = (dir: string): string[] =>
      readdirSync(dir).flatMap((n) =>
        statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)],
      );
    for (const file of walk(sb.backupRoot)) {
      let bytes = readFileSync(file);
      if (file.endsWith(".age")) bytes = execFileSync("age", ["-d", "-i", identity, file]);
      if (file.endsWith(".tar.gz") || file.endsWith(".age")) bytes = gunzipSync(bytes);
      haystacks.push({ where: file, text: bytes.toString("latin1") });
    }
    // what restore wrote into the context, apart from the live vault it carried over untouched
    for (const file of walk(sb.stateRoot).filter(
      (f) => !f.includes("/vault/") && !f.includes("/.paas-backup/moved-aside/"),
    )) {
      if (
        /telegram\.json$|\.secret$|\.env$|tls\.key$|secrets-export/.test(file) &&
        !file.includes(".paas-backup")
      )
        continue; // live planted files themselves
      haystacks.push({ where: file, text: readFileSync(file).toString("latin1") });
    }
    for (const m of markers)
      for (const h of haystacks) expect(h.text.includes(m), `${m} found in ${h.where}`).toBe(false);
  });
});

describe("where backups may live", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("refuses a backup root inside a git work tree, and a state root inside one unless si's override is set", async () => {
    const repo = join(sb.dir, "work");
    mkdirSync(repo);
    writeFileSync(join(repo, ".git"), "gitdir: /elsewhere\n"); // a worktree's .git is a file
    const r = await runCli([
      "--state-root",
      sb.stateRoot,
      "--backup-root",
      join(repo, "backups"),
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(r.code).toBe(4);
    expect(r.json.error.code).toBe("PAAS_BACKUP_UNSAFE_LOCATION");
    expect(r.json.error.message).toContain(repo);
    expect(existsSync(join(repo, "backups"))).toBe(false);
    mkdirSync(join(sb.stateRoot, ".git"));
    const inRepo = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(inRepo.code).toBe(4);
    expect(inRepo.json.error.remediation).toContain("SI_PAAS_ALLOW_REPO_STATE");
    const allowed = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      { env: { SI_PAAS_ALLOW_REPO_STATE: "1" } },
    );
    expect(allowed.code, allowed.stdout).toBe(0);
  });

  it("writes 0700 folders and 0600 files whatever the umask, and verify reports loose artifacts", async () => {
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    const s = r.json.data[0];
    for (const p of [sb.backupRoot, join(sb.backupRoot, CTX)]) expect(modeOf(p)).toBe(0o700);
    for (const p of [s.artifact, s.checksumFile, s.manifestFile]) expect(modeOf(p)).toBe(0o600);
    sh("chmod", ["644", s.artifact]);
    const v = await runCli([...sb.flags, "--json", "verify", "--context", CTX]);
    expect(v.code).toBe(4);
    expect(v.json.data[0].access).toEqual(["artifact mode 644 lets others read it (want 600)"]);
  });
});

describe("hostile archives are refused before anything lands", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("refuses every case of the corpus, plain and encrypted, with the live context and the disk untouched", async () => {
    const escapeTarget = join(sb.dir, "escaped-abs.txt");
    const genuine = (
      await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"])
    ).json.data[0];
    const genuineManifest = JSON.parse(readFileSync(genuine.manifestFile, "utf8"));
    const { identity, recipient } = await keygen(sb);
    const cases = hostileCorpus({ escapeTarget });
    expect(cases.length).toBeGreaterThanOrEqual(12);
    let n = 0;
    for (const c of cases) {
      for (const encrypted of [false, true]) {
        if (encrypted && !["dot-dot traversal", "symbolic link", "decompression bomb"].includes(c.name))
          continue;
        const root = join(sb.dir, `hostile-${n++}`);
        const dir = join(root, CTX);
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const id = "20260101T000000Z";
        const name = `${id}.tar.gz${encrypted ? ".age" : ""}`;
        writeFileSync(join(dir, `${id}.tar.gz`), c.artifact, { mode: 0o600 });
        if (encrypted) {
          sh("age", ["-r", recipient, "-o", join(dir, name), join(dir, `${id}.tar.gz`)]);
          rmSync(join(dir, `${id}.tar.gz`));
          sh("chmod", ["600", join(dir, name)]);
        }
        sh("bash", ["-c", `cd "${dir}" && sha256sum "${name}" > "${name}.sha256"`]);
        if (c.manifest)
          writeFileSync(
            join(dir, `${id}.manifest.json`),
            JSON.stringify({ ...c.manifest(genuineManifest), id }),
          );
        const before = treeHashes(sb.stateRoot);
        const flags = ["--state-root", sb.stateRoot, "--backup-root", root];
        const r = await runCli([
          ...flags,
          "--json",
          "restore",
          "--context",
          CTX,
          "--ticket",
          "INC-H",
          "--yes",
          "--identity",
          identity,
        ]);
        const label = `${c.name}${encrypted ? " (encrypted)" : ""}`;
        expect(r.code, `${label}: ${r.stdout}`).toBe(c.expectCode === "PAAS_BACKUP_ARCHIVE_CORRUPT" ? 3 : 4);
        expect(r.json.error.code, label).toBe(c.expectCode);
        expect(r.json.error.message, label).toMatch(c.expectMessage);
        expect(
          treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup")),
          label,
        ).toEqual(new Map([...before].filter(([k]) => !k.startsWith(".paas-backup"))));
        expect(readdirSync(join(sb.stateRoot, ".paas-backup", "staging")), label).toEqual([]);
        expect(existsSync(escapeTarget), label).toBe(false);
        expect(
          existsSync(join(sb.stateRoot, "escaped.txt")) || existsSync(join(sb.dir, "escaped.txt")),
          label,
        ).toBe(false);
        const deep = await runCli([
          ...flags,
          "--json",
          "verify",
          "--context",
          CTX,
          "--deep",
          "--identity",
          identity,
        ]);
        expect(deep.code, label).toBe(c.expectCode === "PAAS_BACKUP_ARCHIVE_CORRUPT" ? 3 : 4);
        expect(deep.json.data[0].deep.ok, label).toBe(false);
        expect(deep.json.data[0].deep.error.code, label).toBe(c.expectCode);
        if (c.name === "decompression bomb" && !encrypted) {
          // A genuine, very compressible hand-made archive can be let through on purpose.
          const allowed = await runCli([
            ...flags,
            "--json",
            "verify",
            "--context",
            CTX,
            "--deep",
            "--max-expansion",
            "100000",
          ]);
          expect(allowed.json.data[0].deep.ok, allowed.stdout).toBe(true);
          expect(r.json.error.remediation).toContain("--max-expansion");
        }
        // the incident record says what was refused
        const incidents = readdirSync(join(root, CTX, "incidents"));
        expect(
          JSON.parse(readFileSync(join(root, CTX, "incidents", incidents[0]!), "utf8")).error.code,
          label,
        ).toBe(c.expectCode);
      }
    }
  });
});
