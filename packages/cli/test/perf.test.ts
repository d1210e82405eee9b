import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { SCANNER_RULES_VERSION } from "@paas-backup/core/redact";
import { makeSandbox, modeOf, runCli, sh, sha256File, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
const secretCheck = (r: any) =>
  r.json.data[0].doctor.checks.find((c: any) => c.name === "repo_plaintext_secret_exposure");

describe("the post-restore doctor does not scan twice what the snapshot proved", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 60_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("skips restored files whose sha256 the snapshot's scanner (same rules) recorded, and records the rules version", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(snap.json.data[0].manifestFile, "utf8"));
    expect(manifest.scannerRules).toBe(SCANNER_RULES_VERSION);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-1",
      "--yes",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(secretCheck(r)).toMatchObject({
      ok: true,
      detail: expect.stringContaining(
        `(${manifest.files.length} restored files matched their manifest sha256`,
      ),
    });
  });

  it("scans again a file whose finding was excused at snapshot time by an allowance the restore does not have", async () => {
    const ctx = sb.state.contextDir(CTX);
    writeFileSync(
      join(ctx, "events", "alerts.jsonl"),
      `${readFileSync(join(ctx, "events", "alerts.jsonl"), "utf8")}{"timestamp":"x","message":"key AKIAIOSFODNN7PLANTED"}\n`,
    );
    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({ secretAllow: [{ path: "events/alerts.jsonl", rule: "aws-access-key-id" }] }),
    );
    const snap = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    expect(JSON.parse(readFileSync(snap.json.data[0].manifestFile, "utf8")).scannerAllow).toEqual([
      { path: "events/alerts.jsonl", rule: "aws-access-key-id" },
    ]);
    const excused = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-2",
      "--yes",
    ]);
    expect(excused.code, excused.stdout + excused.stderr).toBe(0);
    const strict = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-3",
      "--yes",
    ]);
    expect(strict.code).toBe(5);
    expect(
      strict.json.details.result.doctor.checks.find((c: any) => c.name === "repo_plaintext_secret_exposure"),
    ).toMatchObject({
      ok: false,
      detail: expect.stringContaining("events/alerts.jsonl"),
    });
  });

  it("scans a hand-made (reference flow) archive in full", async () => {
    const ctx = sb.state.contextDir(CTX);
    const ts = "20261101T020304Z";
    const out = join(sb.backupRoot, CTX, ts);
    mkdirSync(out, { recursive: true });
    writeFileSync(
      join(ctx, "events", "alerts.jsonl"),
      `${readFileSync(join(ctx, "events", "alerts.jsonl"), "utf8")}{"timestamp":"x","message":"key AKIAIOSFODNN7PLANTED"}\n`,
    );
    sh("bash", [
      "-c",
      `set -e; umask 077; SRC="${ctx}"; OUT="${out}"; rsync -a --delete --exclude 'vault/secrets.env' --exclude '*.secret' "$SRC/" "$OUT/"; tar -C "$OUT" -czf "$OUT.tar.gz" .; sha256sum "$OUT.tar.gz" > "$OUT.tar.gz.sha256"`,
    ]);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      ts,
      "--ticket",
      "INC-4",
      "--yes",
    ]);
    expect(r.code).toBe(5);
    const check = r.json.details.result.doctor.checks.find(
      (c: any) => c.name === "repo_plaintext_secret_exposure",
    );
    expect(check).toMatchObject({ ok: false, detail: expect.stringContaining("events/alerts.jsonl") });
    expect(check.detail).not.toContain("scanned at snapshot time");
  });
});

describe("parallel gzip members", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 6 * 1024 * 1024, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("writes one .tar.gz of gzip members that GNU tar, gzip and sha256sum read, and indexes the members in the manifest", async () => {
    const ctx = sb.state.contextDir(CTX);
    const deep = join(ctx, "releases", "r-1", "a".repeat(60), "b".repeat(60));
    mkdirSync(deep, { recursive: true });
    const longName = join(deep, `${"c".repeat(40)}-é.txt`);
    writeFileSync(longName, "a long, non-ASCII name\n");
    const snap = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--include",
      "releases",
    ]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const { artifact, checksumFile, manifestFile } = snap.json.data[0];
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8"));
    const members = manifest.gzipMembers;
    expect(members.plain.length).toBeGreaterThan(4);
    const bytes = readFileSync(artifact);
    let at = 0;
    members.compressed.forEach((length: number, i: number) => {
      const member = bytes.subarray(at, at + length);
      expect([member[0], member[1]]).toEqual([0x1f, 0x8b]);
      expect(gunzipSync(member).length).toBe(members.plain[i]);
      at += length;
    });
    expect(at).toBeLessThan(bytes.length); // the manifest's entry follows, unindexed
    sh("gzip", ["-t", artifact]);
    sh("sha256sum", ["-c", checksumFile], join(checksumFile, ".."));
    const listed = sh("tar", ["-tzf", artifact]).split("\n");
    expect(listed).toContain(
      `./releases/r-1/${"a".repeat(60)}/${"b".repeat(60)}/${"c".repeat(40)}-é.txt`.replace(/^\.\//, ""),
    );
    const out = join(sb.dir, "gnu");
    mkdirSync(out);
    sh("tar", ["-C", out, "-xzf", artifact]);
    expect(
      readFileSync(
        join(out, "releases", "r-1", "a".repeat(60), "b".repeat(60), `${"c".repeat(40)}-é.txt`),
        "utf8",
      ),
    ).toBe("a long, non-ASCII name\n");
    expect(sha256File(join(out, "events", "audit.jsonl"))).toBe(
      sha256File(join(ctx, "events", "audit.jsonl")),
    );
    // node-tar reads the same headers: verify --deep inflates the members in parallel and checks every file.
    const verified = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.json.data[0].deep).toMatchObject({ ok: true, files: manifest.files.length });
  });
});

describe("the gzip member index is checked, not trusted", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 4 * 1024 * 1024, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("refuses a manifest whose member index does not fit the artifact, or declares a bomb, and verifies the genuine one", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const { manifestFile } = snap.json.data[0];
    const genuine = readFileSync(manifestFile, "utf8");
    const ok = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.json.data[0].deep).toMatchObject({ ok: true, files: JSON.parse(genuine).files.length });

    const shifted = JSON.parse(genuine);
    shifted.gzipMembers.compressed[0] += 7;
    shifted.gzipMembers.compressed[1] -= 7;
    writeFileSync(manifestFile, JSON.stringify(shifted));
    const bad = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(bad.code).toBe(4);
    expect(bad.json.data[0].deep.error).toMatchObject({
      code: "PAAS_BACKUP_MANIFEST_DISAGREES",
      message: expect.stringContaining("gzip member index"),
    });

    const before = sha256File(join(sb.state.contextDir(CTX), "events", "audit.jsonl"));
    const bomb = JSON.parse(genuine);
    bomb.gzipMembers.plain[0] = 64 * 1024 * 1024 * 1024;
    writeFileSync(manifestFile, JSON.stringify(bomb));
    const refused = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-B",
      "--yes",
    ]);
    expect(refused.code).toBe(4);
    expect(refused.json.error).toMatchObject({
      code: "PAAS_BACKUP_ARCHIVE_TOO_LARGE",
      message: expect.stringMatching(/decompression bomb/),
    });
    expect(sha256File(join(sb.state.contextDir(CTX), "events", "audit.jsonl"))).toBe(before);
  });
});

describe("start-up loads only what the command needs (issue 14)", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 0 }]);
  });
  afterEach(() => sb.cleanup());

  /** The packages a CLI run loads, seen by a module resolve hook (node --import). */
  async function packagesLoaded(args: string[], env: Record<string, string> = {}) {
    const log = join(sb.dir, `modules-${Math.random().toString(36).slice(2)}.log`);
    const hook = join(sb.dir, "hook.mjs");
    writeFileSync(
      join(sb.dir, "hook-resolve.mjs"),
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + "\\n");
  return r;
}`,
    );
    writeFileSync(
      hook,
      `import { register } from "node:module"; import { pathToFileURL } from "node:url";
register(pathToFileURL(${JSON.stringify(join(sb.dir, "hook-resolve.mjs"))}));`,
    );
    const r = await runCli(args, { env: { ...env, NODE_OPTIONS: `--import=${hook}` } });
    const urls = readFileSync(log, "utf8").split("\n");
    // every module the run loaded, Node's builtins aside (the scanner's worker may or may not have
    // started resolving its one module before the run ends, so a count is good to one)
    const modules = new Set(urls.filter((u) => u && !u.startsWith("node:")));
    const pkgs = new Set(
      urls
        .map((u) => /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(u)?.[1])
        .filter(Boolean),
    );
    return { r, pkgs, modules };
  }

  it("a snapshot loads the snapshot entry's modules, not the whole core (issue 19 §5: about 80, where the root entry alone is 180)", async () => {
    const snap = await packagesLoaded([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(snap.r.code, snap.r.stdout + snap.r.stderr).toBe(0);
    const core = [...snap.modules].filter((u) => u.includes("/core/dist/"));
    // the hook saw the run: the snapshot's own modules are there
    expect(core.some((u) => u.endsWith("/core/dist/snapshot/create.js"))).toBe(true);
    // what a snapshot must not load: the restorer, the doctor, offsite, drills, tar, zod, the S3 SDK
    for (const folder of [
      "restore/",
      "validate/",
      "offsite/",
      "governance/",
      "retention/",
      "archive/reader.js",
    ])
      expect(
        core.filter((u) => u.includes(`/core/dist/${folder}`)),
        folder,
      ).toEqual([]);
    for (const p of ["zod", "tar", "@aws-sdk/client-s3"]) expect(snap.pkgs.has(p), p).toBe(false);
    expect(snap.modules.size, [...snap.modules].join("\n")).toBeLessThanOrEqual(90);
  });

  it("a restore from the backup root loads no offsite module (only --from-offsite needs them)", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const restore = await packagesLoaded([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      snap.json.data[0].id,
      "--ticket",
      "PERF-1",
      "--yes",
    ]);
    expect(restore.r.code, restore.r.stdout + restore.r.stderr).toBe(0);
    const core = [...restore.modules].filter((u) => u.includes("/core/dist/"));
    expect(core.some((u) => u.endsWith("/core/dist/restore/restore.js"))).toBe(true);
    expect(core.filter((u) => u.includes("/core/dist/offsite/"))).toEqual([]);
    expect([...restore.modules].filter((u) => u.endsWith("/cli/dist/ops/offsite.js"))).toEqual([]);
  });

  it("list and --version load neither zod nor tar or the S3 SDK; a config file brings in zod for its schema", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const heavy = ["zod", "tar", "@aws-sdk/client-s3", "jsonc-parser"];
    const version = await packagesLoaded(["--version"]);
    expect(version.r.code).toBe(0);
    const list = await packagesLoaded([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.r.code, list.r.stdout + list.r.stderr).toBe(0);
    expect(list.r.json.data.map((s: any) => s.id)).toEqual([snap.json.data[0].id]);
    for (const { pkgs } of [version, list]) {
      expect(pkgs.has("commander")).toBe(true); // the hook sees packages at all
      for (const p of heavy) expect(pkgs.has(p), p).toBe(false);
    }
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ retention: { daily: 9 } }));
    const withConfig = await packagesLoaded([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "list",
      "--context",
      CTX,
    ]);
    expect(withConfig.r.code).toBe(0);
    expect(withConfig.pkgs.has("zod")).toBe(true);
  });
});

describe("a daily full costs what the day added (issue 23: the member cache)", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 5_000_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("an encrypted full after the logs grew copies the last full's members with only the recipient, and GNU tar extracts the live logs byte for byte", async () => {
    const key = join(sb.dir, "identity.txt");
    const kg = await runCli([...sb.flags, "--json", "keygen", "--out", key]);
    expect(kg.code, kg.stderr).toBe(0);
    const recipient = kg.json.data[0].recipient;
    const first = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--recipient",
      recipient,
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json.data[0].reusedBytes).toBe(0);
    // the cache sits beside the contexts, private, and nowhere in the backup root
    const cache = join(sb.stateRoot, ".paas-backup", "member-cache", CTX);
    const cached = readdirSync(cache);
    expect(cached).toContain("index.json");
    for (const f of cached) expect(modeOf(join(cache, f)), f).toBe(0o600);
    expect(sh("find", [sb.backupRoot, "-name", "*.members"])).toBe("");

    const audit = join(sb.state.contextDir(CTX), "events", "audit.jsonl");
    const more = readFileSync(audit, "utf8").split("\n").slice(0, 400).join("\n");
    writeFileSync(audit, `${readFileSync(audit, "utf8")}${more}\n`);
    // no identity anywhere in reach of the snapshot: only the recipient
    const second = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--recipient",
      recipient,
    ]);
    expect(second.code, second.stderr).toBe(0);
    const s = second.json.data[0];
    expect(s.kind).toBe("full");
    expect(s.reusedBytes).toBeGreaterThanOrEqual(1024 * 1024);

    const out = join(sb.dir, "extracted");
    mkdirSync(out);
    sh("bash", ["-c", `age -d -i "${key}" "${s.artifact}" | tar -C "${out}" -xzf -`]);
    for (const log of ["audit.jsonl", "deployments.jsonl", "alerts.jsonl"])
      expect(sha256File(join(out, "events", log)), log).toBe(
        sha256File(join(sb.state.contextDir(CTX), "events", log)),
      );
    const verify = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--snapshot",
      s.id,
      "--deep",
      "--identity",
      key,
    ]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});
