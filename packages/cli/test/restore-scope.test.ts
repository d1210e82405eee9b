import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { existsSync, readFileSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { readBlock } from "@paas-backup/core";
import { nodeFs } from "@paas-backup/core/node";
import { makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";

/** Issue 10 §1 and §3 through the built CLI: a restore changes only what the snapshot covers; the external doctor decides. */
describe("restore changes only what the snapshot covers", () => {
  let sb: Sandbox;
  let ctx: string;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 2 }]);
    ctx = sb.state.contextDir(CTX);
  });
  afterEach(() => sb.cleanup());
  const snap = async (...extra: string[]) =>
    (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext", ...extra]))
      .json.data[0];

  it("keeps alerts/telegram.json, *.secret, releases/ and cache/ (not included) and any other file; the prompt data says so", async () => {
    await snap();
    writeFileSync(join(ctx, "deployments.json"), "{ corrupt");
    writeFileSync(join(ctx, "releases", "r-41", "hotfix.txt"), "deployed after the snapshot\n", {
      mode: 0o600,
    });
    const keptBefore = treeHashes(
      ctx,
      (rel) =>
        !(
          rel.startsWith("alerts/telegram.json") ||
          rel.endsWith(".secret") ||
          rel.startsWith("releases/") ||
          rel.startsWith("cache/") ||
          rel.startsWith("vault/")
        ),
    );
    const vaultIno = statSync(join(ctx, "vault", "secrets.env")).ino;

    const dry = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S1",
      "--dry-run",
    ]);
    expect(dry.code, dry.stdout).toBe(0);
    const plan = dry.json.data[0];
    expect(plan.scope).toEqual({ mode: "snapshot", paths: [] });
    expect(plan.changes.changed).toEqual(["deployments.json"]);
    expect(plan.changes.removed).toEqual([]);
    expect(plan.changes.kept).toEqual(
      expect.arrayContaining(["alerts/telegram.json", "deploy.secret", "releases", "cache", "vault"]),
    );

    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S1",
      "--yes",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(ctx, "deployments.json"), "utf8")).apps).toBeDefined();
    const keptAfter = treeHashes(
      ctx,
      (rel) =>
        !(
          rel.startsWith("alerts/telegram.json") ||
          rel.endsWith(".secret") ||
          rel.startsWith("releases/") ||
          rel.startsWith("cache/") ||
          rel.startsWith("vault/")
        ),
    );
    expect(keptAfter).toEqual(keptBefore);
    expect(readFileSync(join(ctx, "releases", "r-41", "hotfix.txt"), "utf8")).toBe(
      "deployed after the snapshot\n",
    );
    expect(statSync(join(ctx, "vault", "secrets.env")).ino).toBe(vaultIno);
    // the moved-aside copy holds only what was replaced
    const aside = r.json.data[0].movedAsideTo;
    expect(readFileSync(join(aside, "deployments.json"), "utf8")).toBe("{ corrupt");
    expect(existsSync(join(aside, "alerts", "telegram.json"))).toBe(false);
    // and the incident record lists what changed and what stayed
    const incident = JSON.parse(readFileSync(r.json.data[0].incidentFile, "utf8"));
    expect(incident.scope).toMatchObject({ mode: "snapshot", changed: ["deployments.json"], movedAside: [] });
    expect(incident.scope.kept).toEqual(
      expect.arrayContaining(["alerts/telegram.json", "releases", "vault"]),
    );
  });

  it("an included optional folder is replaced as the snapshot has it; a protected file the snapshot records absent is moved aside", async () => {
    const bluegreen = readFileSync(join(ctx, "bluegreen.json"));
    const { rmSync } = await import("node:fs");
    rmSync(join(ctx, "bluegreen.json"));
    await snap("--include", "releases");
    writeFileSync(join(ctx, "bluegreen.json"), bluegreen, { mode: 0o600 });
    writeFileSync(join(ctx, "releases", "r-41", "stray.txt"), "not in the snapshot\n", { mode: 0o600 });
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S2",
      "--yes",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const res = r.json.data[0];
    expect(res.changes.removed.sort()).toEqual(["bluegreen.json", "releases/r-41/stray.txt"]);
    expect(existsSync(join(ctx, "bluegreen.json"))).toBe(false);
    expect(existsSync(join(ctx, "releases", "r-41", "stray.txt"))).toBe(false);
    expect(readFileSync(join(res.movedAsideTo, "releases", "r-41", "stray.txt"), "utf8")).toBe(
      "not in the snapshot\n",
    );
    // the .env inside releases/ is policy-excluded: it stays
    expect(existsSync(join(ctx, "releases", "r-40", ".env"))).toBe(true);
    expect(existsSync(join(ctx, "cache", "targets.probe.json"))).toBe(true);
  });

  it("--exact replaces the whole context as before (only vault/ stays)", async () => {
    await snap();
    writeFileSync(join(ctx, "extra.json"), "{}\n", { mode: 0o600 });
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S3",
      "--yes",
      "--exact",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const res = r.json.data[0];
    expect(res.scope.mode).toBe("exact");
    expect(res.changes.kept).toEqual(["vault"]);
    expect(res.changes.removed).toEqual(
      expect.arrayContaining(["extra.json", "alerts/telegram.json", "deploy.secret"]),
    );
    for (const p of ["extra.json", "alerts/telegram.json", "deploy.secret", "releases"]) {
      expect(existsSync(join(ctx, p)), p).toBe(false);
      expect(existsSync(join(res.movedAsideTo, p)), p).toBe(true);
    }
    expect(existsSync(join(ctx, "vault", "secrets.env"))).toBe(true);
  });

  it("--path restores only the files named and touches nothing else", async () => {
    await snap();
    writeFileSync(join(ctx, "deployments.json"), "{ corrupt");
    writeFileSync(
      join(ctx, "targets.json"),
      `${JSON.stringify({ current_target: "edge-9", targets: [] }, null, 2)}\n`,
    );
    const before = treeHashes(ctx);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S4",
      "--yes",
      "--path",
      "deployments.json",
    ]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.json.data[0].scope).toEqual({ mode: "paths", paths: ["deployments.json"] });
    expect(r.json.data[0].changes.changed).toEqual(["deployments.json"]);
    const after = treeHashes(ctx);
    const differs = [...new Set([...before.keys(), ...after.keys()])].filter(
      (k) => before.get(k) !== after.get(k),
    );
    // deployments.json, and the audit event the restore appends
    expect(differs.sort()).toEqual(["deployments.json", "events/audit.jsonl"]);
    expect(JSON.parse(readFileSync(join(ctx, "targets.json"), "utf8")).current_target).toBe("edge-9");
    // a path the snapshot does not hold is a usage error, nothing changes
    const bad = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-S5",
      "--yes",
      "--path",
      "alerts/telegram.json",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.json.error.code).toBe("PAAS_BACKUP_PATH_NOT_IN_SNAPSHOT");
    expect(treeHashes(ctx)).toEqual(after);
  });
});

describe("the external doctor is part of the decision (issue 10 §3)", () => {
  let sb: Sandbox;
  let ctx: string;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    ctx = sb.state.contextDir(CTX);
    await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
  });
  afterEach(() => sb.cleanup());

  it("--dry-run runs it against the staged state, and a failing one makes the dry run fail (exit 5), nothing changed", async () => {
    const before = treeHashes(sb.stateRoot);
    // passes only when pointed at the staged copy, never the live state root
    const staged = `case "$SI_PAAS_STATE_ROOT" in *.paas-backup/staging/*) echo '{"ok": true}';; *) echo '{"ok": false}';; esac`;
    const ok = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-D1",
      "--dry-run",
      "--doctor-cmd",
      staged,
    ]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.json.data[0].externalDoctor).toMatchObject({ ok: true });
    const failing = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-D2",
      "--dry-run",
      "--doctor-cmd",
      "echo '{\"ok\": false}'",
    ]);
    expect(failing.code, failing.stdout).toBe(5);
    expect(failing.json.ok).toBe(false);
    expect(failing.json.data[0].externalDoctor).toMatchObject({ ok: false });
    expect(treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"))).toEqual(
      new Map([...before].filter(([k]) => !k.startsWith(".paas-backup"))),
    );
  });

  it("a doctor that cannot run is a usage error naming it, before anything changes", async () => {
    const before = treeHashes(ctx);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-D3",
      "--yes",
      "--doctor-cmd",
      "si-paas-doctor-missing --json",
    ]);
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe("PAAS_BACKUP_DOCTOR_NOT_RUNNABLE");
    expect(r.json.error.message).toContain("si-paas-doctor-missing");
    expect(treeHashes(ctx)).toEqual(before);
    expect(
      existsSync(join(sb.backupRoot, CTX, "incidents"))
        ? readdirSync(join(sb.backupRoot, CTX, "incidents"))
        : [],
    ).toEqual([]);
  });

  it("the block marker records the doctor that blocked, and unblock requires it to pass", async () => {
    const flag = join(sb.dir, "doctor-ok");
    const doctor = `test -e '${flag}' && echo '{"ok": true}' || echo '{"ok": false}'`;
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-D4",
      "--yes",
      "--doctor-cmd",
      doctor,
    ]);
    expect(r.code, r.stdout).toBe(5);
    const block = await readBlock(nodeFs, sb.stateRoot, CTX);
    expect(block!.externalDoctor).toEqual({ command: doctor });
    expect(block!.failingChecks.map((c) => c.name)).toEqual(["external_doctor"]);
    // paas-backup's own doctor passes, but the recorded external doctor still fails: stays blocked
    const refused = await runCli([...sb.flags, "--json", "unblock", "--context", CTX, "--ticket", "INC-D4"]);
    expect(refused.code, refused.stdout).toBe(5);
    expect(refused.json.error.message).toContain("external doctor");
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(true);
    // once the recorded doctor passes, unblock lifts the block
    writeFileSync(flag, "");
    const ok = await runCli([...sb.flags, "--json", "unblock", "--context", CTX, "--ticket", "INC-D4"]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.json.data[0].externalDoctor).toMatchObject({ command: doctor, ok: true });
    expect(await readBlock(nodeFs, sb.stateRoot, CTX)).toBeNull();
  });

  it("unblock runs the doctor the block recorded: another --doctor-cmd is refused (exit 2) unless --override-doctor, which the incident names (issue 21 §4)", async () => {
    const doctor = `echo '{"ok": false}'`;
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-O1",
      "--yes",
      "--doctor-cmd",
      doctor,
    ]);
    expect(r.code, r.stdout).toBe(5);
    const lenient = `echo '{"ok": true}'`;
    const unblock = (...extra: string[]) =>
      runCli([
        ...sb.flags,
        "--json",
        "unblock",
        "--context",
        CTX,
        "--ticket",
        "INC-O1",
        "--doctor-cmd",
        lenient,
        ...extra,
      ]);
    const refused = await unblock();
    expect(refused.code, refused.stdout + refused.stderr).toBe(2);
    expect(refused.json.error.code).toBe("PAAS_BACKUP_DOCTOR_MISMATCH");
    expect(refused.json.error.message).toContain(doctor);
    expect(refused.json.error.remediation).toContain("--override-doctor");
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(true);
    // the same command as recorded is no override (and here it still fails: stays blocked, exit 5)
    const same = await runCli([
      ...sb.flags,
      "--json",
      "unblock",
      "--context",
      CTX,
      "--ticket",
      "INC-O1",
      "--doctor-cmd",
      doctor,
    ]);
    expect(same.code, same.stdout).toBe(5);
    const overridden = await unblock("--override-doctor");
    expect(overridden.code, overridden.stdout + overridden.stderr).toBe(0);
    expect(await readBlock(nodeFs, sb.stateRoot, CTX)).toBeNull();
    const incident = JSON.parse(readFileSync(overridden.json.data[0].incidentFile, "utf8"));
    expect(incident).toMatchObject({
      kind: "unblock",
      ticket: "INC-O1",
      outcome: "unblocked",
      doctorOverride: { recorded: doctor, used: lenient },
    });
  });
});
