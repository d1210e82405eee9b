import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { SECRET_SAMPLES, BENIGN_SAMPLES, composeWith } from "@paas-backup/testing";
import { makeSandbox, runCli, sh, sha256File, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
// A fake token of GitHub's format, as si writes it when a git clone fails (issue 10 §4).
const TOKEN = "ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123";
const failedClone = (i: number) =>
  `${JSON.stringify({ timestamp: `2026-11-21T09:00:0${i}.000000Z`, context: CTX, source: "si paas", command: "deploy", status: "failed", app: "web", error_code: "PAAS_GIT_CLONE", error_message: `git clone https://${TOKEN}@github.com/acme/web.git: exit 128` })}\n`;

function extract(sb: Sandbox, artifact: string, name: string): string {
  const dir = join(sb.dir, name);
  mkdirSync(dir, { recursive: true });
  sh("tar", ["-xzf", artifact, "-C", dir]);
  return dir;
}

function lineOf(path: string, needle: string): number {
  return (
    readFileSync(path, "utf8")
      .split("\n")
      .findIndex((l) => l.includes(needle)) + 1
  );
}

describe("a leaked token never stops backups (issue 10 §4)", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 100_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  it("snapshots with the value redacted (exit 9), proves the log's source bytes in the next incremental, and restores what it stored", async () => {
    const ctx = sb.state.contextDir(CTX);
    const log = join(ctx, "events", "deployments.jsonl");
    appendFileSync(log, failedClone(1));
    const tokenLine = lineOf(log, TOKEN);
    const sourceSha = sha256File(log);
    // a JSON state file too: the value is replaced inside its string, the file stays JSON
    const deployments = JSON.parse(readFileSync(join(ctx, "deployments.json"), "utf8"));
    deployments.last_error = `clone failed with ${TOKEN}`;
    writeFileSync(join(ctx, "deployments.json"), `${JSON.stringify(deployments, null, 2)}\n`);

    const full = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(full.code, full.stdout + full.stderr).toBe(9);
    expect(full.stdout + full.stderr).not.toContain(TOKEN);
    const snap = full.json.data[0];
    expect(snap.redactions).toContainEqual({
      path: "events/deployments.jsonl",
      line: tokenLine,
      rule: "github-token",
      acknowledged: false,
    });
    expect(snap.redactions.map((r: any) => r.path)).toContain("deployments.json");

    // What GNU tar extracts holds the marker, not the token; every other byte is the source's.
    const out = extract(sb, snap.artifact, "x1");
    const stored = readFileSync(join(out, "events", "deployments.jsonl"), "utf8");
    expect(stored).not.toContain(TOKEN);
    expect(stored).toBe(readFileSync(log, "utf8").replaceAll(TOKEN, "<redacted>"));
    expect(JSON.parse(readFileSync(join(out, "deployments.json"), "utf8")).last_error).toBe(
      "clone failed with <redacted>",
    );
    // The manifest records both hashes and the redaction, never the value.
    const manifestText = readFileSync(snap.manifestFile, "utf8");
    expect(manifestText).not.toContain(TOKEN);
    const entry = JSON.parse(manifestText).files.find((f: any) => f.path === "events/deployments.jsonl");
    expect(entry).toMatchObject({
      sourceSha256: sourceSha,
      sha256: sha256File(join(out, "events", "deployments.jsonl")),
      redactions: [{ line: tokenLine, rule: "github-token" }],
    });
    expect(JSON.parse(manifestText).scannerRules).toBeGreaterThanOrEqual(2);

    // The log grows (si keeps appending, the token stays): the incremental stores only new lines.
    const extra = Array.from(
      { length: 50 },
      (_, i) =>
        `${JSON.stringify({ timestamp: `2026-11-21T10:00:${String(i).padStart(2, "0")}.000000Z`, context: CTX, source: "si paas", command: "deploy", status: "succeeded", app: "web", release: `r-${100 + i}` })}\n`,
    ).join("");
    appendFileSync(log, extra + failedClone(2));
    const inc = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    expect(inc.code, inc.stdout + inc.stderr).toBe(9);
    const incSnap = inc.json.data[0];
    expect(incSnap.kind).toBe("incremental");
    const incEntry = JSON.parse(readFileSync(incSnap.manifestFile, "utf8")).files.find(
      (f: any) => f.path === "events/deployments.jsonl",
    );
    expect(incEntry).toMatchObject({
      stored: "append",
      appendOffset: entry.size,
      prefixSha256: entry.sha256,
      sourceSha256: sha256File(log),
    });
    expect(incEntry.redactions).toEqual([
      { line: tokenLine, rule: "github-token" },
      { line: tokenLine + 51, rule: "github-token" },
    ]);
    const incOut = extract(sb, incSnap.artifact, "x2");
    const appended = readFileSync(join(incOut, "events", "deployments.jsonl"), "utf8");
    expect(appended).toBe((extra + failedClone(2)).replaceAll(TOKEN, "<redacted>"));

    // verify --deep replays the chain against the stored hashes; restore writes the stored copy and checks it.
    const verify = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--deep"]);
    expect(verify.code, verify.stdout).toBe(0);
    writeFileSync(join(ctx, "targets.json"), "{ broken");
    const restore = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-9",
      "--yes",
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.stdout + restore.stderr).not.toContain(TOKEN);
    const restoredLog = readFileSync(log, "utf8");
    expect(restoredLog).not.toContain(TOKEN);
    expect(restoredLog).toBe(stored + appended);
    expect(sha256File(log)).toBe(incEntry.sha256);
    for (const f of readdirSync(join(sb.backupRoot, CTX, "incidents")))
      expect(readFileSync(join(sb.backupRoot, CTX, "incidents", f), "utf8")).not.toContain(TOKEN);
  });

  it("a log too large to scan inline (24 MiB, scanned beside the archiver): a token near its end is redacted, never archived, and a clean log restores byte-identical", async () => {
    const ctx = sb.state.contextDir(CTX);
    const log = join(ctx, "events", "deployments.jsonl");
    const filler = readFileSync(log, "utf8");
    const copies = Math.ceil((24 * 1048576) / filler.length);
    writeFileSync(log, filler.repeat(copies));
    const cleanSha = sha256File(log);
    const clean = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    expect(clean.json.data[0].redactions).toEqual([]);
    const cleanOut = extract(sb, clean.json.data[0].artifact, "big-clean");
    expect(sha256File(join(cleanOut, "events", "deployments.jsonl"))).toBe(cleanSha);

    appendFileSync(log, failedClone(3) + filler);
    const tokenLine = lineOf(log, TOKEN);
    const leaked = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(leaked.code, leaked.stdout + leaked.stderr).toBe(9);
    expect(leaked.json.data[0].redactions).toContainEqual({
      path: "events/deployments.jsonl",
      line: tokenLine,
      rule: "github-token",
      acknowledged: false,
    });
    // No byte of the token in the artifact as stored, nor in the tar it inflates to.
    const artifact = leaked.json.data[0].artifact;
    const tar = execFileSync("gzip", ["-dc", artifact], { maxBuffer: 256 * 1048576 });
    expect(tar.includes(TOKEN)).toBe(false);
    const out = extract(sb, artifact, "big-leak");
    expect(readFileSync(join(out, "events", "deployments.jsonl"), "utf8")).toBe(
      readFileSync(log, "utf8").replaceAll(TOKEN, "<redacted>"),
    );
    expect(
      readdirSync(join(sb.backupRoot, CTX)).filter((f) => f.includes(".tmp") || f.includes("staged")),
    ).toEqual([]);
  });

  it("an acknowledged finding exits 0 and is still redacted; tick keeps going with exit 9 until then", async () => {
    const ctx = sb.state.contextDir(CTX);
    const log = join(ctx, "events", "deployments.jsonl");
    appendFileSync(log, failedClone(1));
    const line = lineOf(log, TOKEN);

    const tick = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"]);
    expect(tick.code, tick.stdout + tick.stderr).toBe(9);
    expect(tick.json.data[0]).toMatchObject({
      ok: true,
      action: "full",
      redactions: [{ path: "events/deployments.jsonl", line, rule: "github-token", acknowledged: false }],
    });
    expect(tick.stdout + tick.stderr).not.toContain(TOKEN);

    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        secretAcknowledged: [{ path: "events/deployments.jsonl", line, rule: "github-token" }],
      }),
    );
    const acked = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(acked.code, acked.stdout + acked.stderr).toBe(0);
    expect(acked.json.data[0].redactions).toEqual([
      { path: "events/deployments.jsonl", line, rule: "github-token", acknowledged: true },
    ]);
    const out = extract(sb, acked.json.data[0].artifact, "x");
    expect(readFileSync(join(out, "events", "deployments.jsonl"), "utf8")).not.toContain(TOKEN);

    // A second leak on another line is not covered by that acknowledgement.
    appendFileSync(log, failedClone(2));
    const again = await runCli([
      ...sb.flags,
      "--config",
      config,
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(again.code).toBe(9);
    expect(again.stderr).toMatch(
      /snapshot taken with redactions: rotate the leaked credential \(events\/deployments\.jsonl:\d+ \(github-token\)\)/,
    );
    expect(again.stdout + again.stderr).not.toContain(TOKEN);
  });

  it("an acknowledged finding does not block restore --path, and unblock with the acknowledgement clears a block it caused (issue 21 §4)", async () => {
    const ctx = sb.state.contextDir(CTX);
    const log = join(ctx, "events", "deployments.jsonl");
    appendFileSync(log, failedClone(1));
    const line = lineOf(log, TOKEN);
    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        secretAcknowledged: [{ path: "events/deployments.jsonl", line, rule: "github-token" }],
      }),
    );
    const withAck = [...sb.flags, "--config", config, "--json"];
    const snap = await runCli([...withAck, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    // The live log keeps the (rotated) token: restoring another file runs the doctor over it.
    const restore = (flags: string[], ticket: string) =>
      runCli([
        ...flags,
        "restore",
        "--context",
        CTX,
        "--ticket",
        ticket,
        "--path",
        "deployments.json",
        "--yes",
      ]);
    const unacked = await restore([...sb.flags, "--json"], "INC-A1");
    expect(unacked.code, unacked.stdout + unacked.stderr).toBe(5);
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(true);
    expect(unacked.stdout + unacked.stderr).not.toContain(TOKEN);
    // unblock with the acknowledgement: the doctor no longer fails on it
    const unblock = await runCli([...withAck, "unblock", "--context", CTX, "--ticket", "INC-A1"]);
    expect(unblock.code, unblock.stdout + unblock.stderr).toBe(0);
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(false);
    // and restore --path with it ends unblocked, the doctor naming the acknowledged finding
    const acked = await restore(withAck, "INC-A2");
    expect(acked.code, acked.stdout + acked.stderr).toBe(0);
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(false);
    expect(JSON.stringify(acked.json)).toContain("1 acknowledged finding");
    expect(acked.stdout + acked.stderr).not.toContain(TOKEN);
    // the acknowledgement holds no value, and the live file still holds what si wrote
    expect(readFileSync(config, "utf8")).not.toContain(TOKEN);
    expect(readFileSync(log, "utf8")).toContain(TOKEN);
  });

  it("a file whose name holds a token is left out, named redacted everywhere, reported (exit 9) and acknowledgeable (issue 21 §3)", async () => {
    const ctx = sb.state.contextDir(CTX);
    const release = readdirSync(join(ctx, "releases"))[0]!;
    writeFileSync(join(ctx, "releases", release, `notes-${TOKEN}.txt`), "rollout notes\n", { mode: 0o600 });
    writeFileSync(join(ctx, `dump-${TOKEN}.sql`), "-- not a protected file\n", { mode: 0o600 });
    const redacted = `releases/${release}/notes-<redacted>.txt`;
    const dry = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--include",
      "releases",
      "--dry-run",
    ]);
    expect(dry.stdout + dry.stderr).not.toContain(TOKEN);
    const snap = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--include",
      "releases",
      "--insecure-plaintext",
    ]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(9);
    expect(snap.json.data[0].redactions).toEqual(
      expect.arrayContaining([
        { path: redacted, line: 0, rule: "secret-in-name", acknowledged: false },
        { path: "dump-<redacted>.sql", line: 0, rule: "secret-in-name", acknowledged: false },
      ]),
    );
    expect(snap.stdout + snap.stderr).not.toContain(TOKEN);
    // not in the archive (GNU tar's listing), nor in any file under the backup root (manifests, sidecars)
    const artifact = snap.json.data[0].artifact as string;
    const listing = execFileSync("tar", ["-tzf", artifact], { encoding: "utf8" });
    expect(listing).not.toContain(TOKEN);
    expect(listing).not.toContain("notes-");
    const everything = sh("sh", ["-c", `find '${sb.backupRoot}' -type f ! -name '*.tar.gz' -exec cat {} +`]);
    expect(everything).not.toContain(TOKEN);
    expect(everything).toContain("notes-<redacted>.txt");
    // acknowledged by its redacted path: exit 0, still left out
    const config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        secretAcknowledged: [
          { path: redacted, rule: "secret-in-name" },
          { path: "dump-<redacted>.sql", rule: "secret-in-name" },
        ],
      }),
    );
    const acked = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--include",
      "releases",
      "--insecure-plaintext",
    ]);
    expect(acked.code, acked.stdout + acked.stderr).toBe(0);
    expect(acked.json.data[0].redactions).toContainEqual({
      path: redacted,
      line: 0,
      rule: "secret-in-name",
      acknowledged: true,
    });
  });

  it("every corpus format in an included release file is redacted, and no benign look-alike is (issue 15)", async () => {
    const ctx = sb.state.contextDir(CTX);
    const secrets = composeWith(SECRET_SAMPLES);
    const benign = composeWith(BENIGN_SAMPLES);
    mkdirSync(join(ctx, "releases", "r-41"), { recursive: true, mode: 0o700 });
    mkdirSync(join(ctx, "releases", "r-42"), { recursive: true, mode: 0o700 });
    writeFileSync(join(ctx, "releases", "r-41", "compose.yaml"), secrets.text, { mode: 0o600 });
    writeFileSync(join(ctx, "releases", "r-42", "compose.yaml"), benign.text, { mode: 0o600 });
    const r = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--include",
      "releases",
      "--insecure-plaintext",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(9);
    const redactions: { path: string; line: number; rule: string }[] = r.json.data[0].redactions;
    // the line a finding names: where the value is, or a private key's header
    const lineOfSample = (i: number) =>
      secrets.lines[i]! +
      SECRET_SAMPLES[i]!.text.split("\n").findIndex((l) =>
        SECRET_SAMPLES[i]!.rule === "private-key-block"
          ? l.includes("-----BEGIN")
          : l.includes(SECRET_SAMPLES[i]!.value),
      );
    const found = SECRET_SAMPLES.filter((s, i) =>
      redactions.some(
        (x) => x.path === "releases/r-41/compose.yaml" && x.line === lineOfSample(i) && x.rule === s.rule,
      ),
    );
    expect(SECRET_SAMPLES.filter((s) => !found.includes(s)).map((s) => s.rule)).toEqual([]);
    expect(redactions.filter((x) => x.path === "releases/r-42/compose.yaml")).toEqual([]);
    const out = extract(sb, r.json.data[0].artifact, "x");
    const stored = readFileSync(join(out, "releases", "r-41", "compose.yaml"), "utf8");
    for (const s of SECRET_SAMPLES) expect(stored, s.rule).not.toContain(s.value);
    expect(readFileSync(join(out, "releases", "r-42", "compose.yaml"), "utf8")).toBe(benign.text);
    for (const s of SECRET_SAMPLES) expect(r.stdout + r.stderr).not.toContain(s.value);
    console.log(
      `CLI corpus: ${found.length}/${SECRET_SAMPLES.length} secrets redacted, ${redactions.filter((x) => x.path === "releases/r-42/compose.yaml").length}/${BENIGN_SAMPLES.length} benign flagged`,
    );
  });
});

describe("no secret is ever printed (issue 10 §6)", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 50_000, releases: 0 }]);
  });
  afterEach(() => sb.cleanup());

  it("doctor --json flags the leaked token by file, line and rule and never prints it in its events listing", async () => {
    const log = join(sb.state.contextDir(CTX), "events", "deployments.jsonl");
    appendFileSync(log, failedClone(9));
    const line = lineOf(log, TOKEN);
    const r = await runCli([...sb.flags, "--json", "doctor", "--context", CTX]);
    expect(r.code).toBe(5);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
    expect(r.json.checks.find((c: any) => c.name === "repo_plaintext_secret_exposure").detail).toContain(
      `events/deployments.jsonl:${line} (github-token)`,
    );
    const listed = r.json.data[0].events.find((e: any) => e.error_code === "PAAS_GIT_CLONE");
    expect(listed.error_message).toBe("git clone https://<redacted>@github.com/acme/web.git: exit 128");
    const human = await runCli([...sb.flags, "doctor", "--context", CTX]);
    expect(human.stdout + human.stderr).not.toContain(TOKEN);
  });

  it("a config file with a JSON syntax error is reported by line and column, never by its bytes", async () => {
    const config = join(sb.dir, "config.json");
    const accessKey = "AKIAZXCVBNMASDFGHJKL";
    writeFileSync(
      config,
      `{\n  "backupRoot": "/srv/backups",\n  "offsite": { "targets": [ { "name": "s3", "url": "s3://b/p", "accessKeyId": ${accessKey} } ] }\n}\n`,
    );
    for (const json of [true, false]) {
      const r = await runCli([
        ...sb.flags,
        "--config",
        config,
        ...(json ? ["--json"] : []),
        "list",
        "--context",
        CTX,
      ]);
      expect(r.code).toBe(2);
      expect(r.stdout + r.stderr).not.toContain(accessKey);
      expect(r.stdout + r.stderr).not.toContain("AKIA");
      expect(r.stdout + r.stderr).toMatch(
        /config file .*config\.json is not valid JSON: line 3, column 79 \(InvalidSymbol\)/,
      );
    }
  });
});
