import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { existsSync, readFileSync, writeFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { readBlock } from "@paas-backup/core";
import { nodeFs } from "@paas-backup/core/node";
import { makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";

describe("restore as the policy demands", () => {
  let sb: Sandbox;
  let ctx: string;
  const snap = async (env: Record<string, string> = {}) =>
    (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], { env }))
      .json.data[0];
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 40_000 }]);
    ctx = sb.state.contextDir(CTX);
  });
  afterEach(() => sb.cleanup());

  it("needs --ticket (exit 2) and --dry-run shows the changes without touching anything", async () => {
    await snap();
    expect((await runCli([...sb.flags, "restore", "--context", CTX, "--yes"])).code).toBe(2);
    writeFileSync(join(ctx, "targets.json"), `${JSON.stringify({ targets: [] }, null, 2)}\n`);
    writeFileSync(join(ctx, "extra.json"), "{}\n");
    const before = treeHashes(sb.stateRoot);
    const dry = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-1",
      "--dry-run",
    ]);
    expect(dry.code, dry.stdout).toBe(0);
    expect(dry.json.mode).toBe("dry-run");
    const d = dry.json.data[0];
    expect(d.changes.changed).toEqual(["targets.json"]);
    // Only what the snapshot covers changes (issue 10 §1): the rest stays and the plan says so.
    expect(d.changes.removed).toEqual([]);
    expect(d.changes.kept).toEqual(expect.arrayContaining(["extra.json", "alerts/telegram.json", "vault"]));
    expect(d.stagedDoctor.ok).toBe(true);
    expect(treeHashes(sb.stateRoot)).toEqual(before);
  });

  it("--fallback restores the newest older verified snapshot and says so in the output and the incident", async () => {
    const older = await snap();
    writeFileSync(join(ctx, "deployments.json"), `${JSON.stringify({ apps: {} }, null, 2)}\n`);
    const newer = await snap();
    writeFileSync(newer.artifact, Buffer.concat([readFileSync(newer.artifact), Buffer.from("tampered")]));
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-2",
      "--yes",
      "--fallback",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const res = r.json.data[0];
    expect(res.snapshot.id).toBe(older.id);
    expect(res.fallback).toEqual({ used: true, from: newer.id, reason: "its checksum does not match" });
    const incident = JSON.parse(readFileSync(res.incidentFile, "utf8"));
    expect(incident.fallback).toEqual(res.fallback);
    expect(incident.snapshot).toEqual({ id: older.id, sha256: older.sha256, kind: "full" });
    expect(JSON.parse(readFileSync(join(ctx, "deployments.json"), "utf8")).apps.web).toBeDefined();
  });

  it("keeps vault/ byte for byte, never restores it, and reports a restored config that no longer points at it", async () => {
    const vaultBefore = treeHashes(join(ctx, "vault"));
    const cfg = JSON.parse(readFileSync(join(ctx, "config.json"), "utf8"));
    writeFileSync(
      join(ctx, "config.json"),
      `${JSON.stringify({ ...cfg, vault_file: join(ctx, "vault", "old-secrets.env") }, null, 2)}\n`,
    );
    await snap();
    writeFileSync(join(ctx, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-3",
      "--yes",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const vault = r.json.data[0].vault;
    expect(vault.present).toBe(true);
    expect(vault.files).toEqual(["secrets.env"]);
    expect(vault.keys).toEqual(["DB_PASSWORD", "PLAIN_TOKEN"]);
    expect(vault.vaultFileExists).toBe(false);
    expect(vault.findings.join(" ")).toContain("reconcile with the vault backup policy");
    expect(treeHashes(join(ctx, "vault"))).toEqual(vaultBefore);
    // names only: no vault value in the output or the incident record
    const secret = readFileSync(join(ctx, "vault", "secrets.env"), "utf8").match(
      /PLANTED-VAULT-[0-9a-f]+/,
    )![0];
    expect(r.stdout).not.toContain(secret);
    expect(readFileSync(r.json.data[0].incidentFile, "utf8")).not.toContain(secret);
  });

  it("blocks a context whose restored state fails doctor (exit 5, marker, complete incident), unblocks only once doctor passes", async () => {
    const cfg = JSON.parse(readFileSync(join(ctx, "config.json"), "utf8"));
    writeFileSync(join(ctx, "config.json"), `${JSON.stringify({ ...cfg, name: "someone-else" }, null, 2)}\n`);
    const s = await snap();
    writeFileSync(join(ctx, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-4",
      "--yes",
      "--operator",
      "oncall@example.test",
    ]);
    expect(r.code).toBe(5);
    expect(r.json.error.code).toBe("PAAS_BACKUP_VALIDATION_FAILED");
    const block = await readBlock(nodeFs, sb.stateRoot, CTX);
    expect(block).toMatchObject({
      context: CTX,
      ticket: "INC-4",
      snapshot: { id: s.id, sha256: s.sha256 },
      blocks: ["deploy", "secret-mutation"],
    });
    expect(block!.failingChecks.map((c) => c.name)).toEqual(["context_show"]);
    const incidents = readdirSync(join(sb.backupRoot, CTX, "incidents"));
    expect(incidents).toHaveLength(1);
    const incident = JSON.parse(readFileSync(join(sb.backupRoot, CTX, "incidents", incidents[0]!), "utf8"));
    expect(incident).toMatchObject({
      ticket: "INC-4",
      context: CTX,
      operator: "oncall@example.test",
      outcome: "blocked",
      snapshot: { id: s.id, sha256: s.sha256 },
    });
    expect(incident.doctor.ok).toBe(false);
    expect(incident.doctor.checks.find((c: any) => c.name === "context_show").ok).toBe(false);
    expect(incident.startedAt && incident.endedAt && incident.movedAsideTo).toBeTruthy();
    // doctor reports the block too, and unblock refuses while checks fail
    expect((await runCli([...sb.flags, "doctor", "--context", CTX])).code).toBe(5);
    const refused = await runCli([...sb.flags, "--json", "unblock", "--context", CTX, "--ticket", "INC-4"]);
    expect(refused.code).toBe(5);
    expect(existsSync(join(ctx, "paas-backup.blocked.json"))).toBe(true);
    writeFileSync(join(ctx, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    const ok = await runCli([...sb.flags, "--json", "unblock", "--context", CTX, "--ticket", "INC-4"]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(await readBlock(nodeFs, sb.stateRoot, CTX)).toBeNull();
    expect((await runCli([...sb.flags, "doctor", "--context", CTX])).code).toBe(0);
  });

  it("rollback puts back the exact previous bytes, vault included", async () => {
    await snap();
    writeFileSync(
      join(ctx, "targets.json"),
      `${JSON.stringify({ current_target: "new-edge", targets: [] }, null, 2)}\n`,
    );
    writeFileSync(
      join(ctx, "events", "alerts.jsonl"),
      '{"timestamp":"2026-11-24T09:00:00Z","status":"sent"}\n',
    );
    const before = treeHashes(ctx);
    const auditBefore = readFileSync(join(ctx, "events", "audit.jsonl"), "utf8");
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-5",
      "--yes",
    ]);
    expect(r.code).toBe(0);
    expect(treeHashes(ctx)).not.toEqual(before);
    const rb = await runCli([...sb.flags, "--json", "rollback", "--context", CTX, "--ticket", "INC-5"]);
    expect(rb.code, rb.stdout + rb.stderr).toBe(0);
    // every file is back byte for byte, but for the audit log: it is the previous log plus the one
    // line appended since the restore, the restore's own audit event, which a rollback keeps
    // (issue 20: rollback never drops event lines written since the restore it undoes)
    const audit = readFileSync(join(ctx, "events", "audit.jsonl"), "utf8");
    expect(audit.startsWith(auditBefore)).toBe(true);
    const since = audit.slice(auditBefore.length).trimEnd().split("\n");
    expect(since).toHaveLength(1);
    expect(JSON.parse(since[0]!)).toMatchObject({
      command: "backup restore",
      status: "succeeded",
      fields: { ticket: "INC-5" },
    });
    const auditKept = rb.json.data[0].eventLines.find(
      (e: { path: string }) => e.path === "events/audit.jsonl",
    );
    expect(auditKept).toMatchObject({ action: "append", lines: 1 });
    const after = treeHashes(ctx);
    after.set("events/audit.jsonl", before.get("events/audit.jsonl")!);
    expect(after).toEqual(before);
    // the restored contents were moved aside too, not deleted
    expect(existsSync(join(rb.json.data[0].movedAsideTo, "targets.json"))).toBe(true);
    expect((await runCli([...sb.flags, "rollback", "--context", CTX, "--ticket", "INC-5"])).code).toBe(2);
  });

  it("--doctor-cmd: a passing external doctor lets the restore succeed, a failing one blocks it", async () => {
    await snap();
    const pass = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-6",
      "--yes",
      "--doctor-cmd",
      'test -n "$SI_PAAS_STATE_ROOT" && echo \'{"ok": true, "command": "doctor"}\'',
    ]);
    expect(pass.code, pass.stdout).toBe(0);
    expect(pass.json.data[0].externalDoctor).toMatchObject({ ok: true, exitCode: 0 });
    const fail = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-7",
      "--yes",
      "--doctor-cmd",
      "echo '{\"ok\": false}'; exit 1",
    ]);
    expect(fail.code).toBe(5);
    const block = await readBlock(nodeFs, sb.stateRoot, CTX);
    expect(block!.failingChecks.map((c) => c.name)).toEqual(["external_doctor"]);
    const garbage = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-8",
      "--yes",
      "--doctor-cmd",
      "echo not-json",
    ]);
    expect(garbage.code).toBe(5);
    expect(garbage.json.details.result.externalDoctor.detail).toContain("not JSON");
  });

  it("drills into a scratch root, records the drill, and reports a mandatory overdue drill with exit 8", async () => {
    const s = await snap();
    const liveBefore = treeHashes(sb.stateRoot);
    const d = await runCli([...sb.flags, "--json", "drill", "--context", CTX], {
      env: { PAAS_BACKUP_NOW: "2026-11-24T10:00:00Z" },
    });
    expect(d.code, d.stdout + d.stderr).toBe(0);
    const res = d.json.data[0];
    expect(res).toMatchObject({ context: CTX, snapshot: s.id, ok: true });
    expect(res.recordFile).toContain(join(sb.backupRoot, CTX, "drills"));
    const record = JSON.parse(readFileSync(res.recordFile, "utf8"));
    expect(record).toMatchObject({
      kind: "drill",
      outcome: "drill-passed",
      context: CTX,
      snapshot: { id: s.id },
    });
    expect(record.doctor.ok).toBe(true);
    expect(existsSync(record.stateRoot)).toBe(false); // scratch root removed
    expect(treeHashes(sb.stateRoot)).toEqual(liveBefore); // live state untouched

    const now = await runCli([...sb.flags, "--json", "drill", "status"], {
      env: { PAAS_BACKUP_NOW: "2026-12-01T00:00:00Z" },
    });
    expect(now.code, now.stdout).toBe(0);
    expect(now.json.data[0]).toMatchObject({
      context: CTX,
      mandatory: true,
      overdue: false,
      nextDue: "2027-03-31T23:59:59.999Z",
    });
    const late = await runCli([...sb.flags, "--json", "drill", "status"], {
      env: { PAAS_BACKUP_NOW: "2027-04-02T00:00:00Z" },
    });
    expect(late.code).toBe(8);
    expect(late.json.data[0].overdue).toBe(true);
    rmSync(join(sb.backupRoot, CTX, "drills"), { recursive: true });
    const never = await runCli([...sb.flags, "drill", "status"]);
    expect(never.code).toBe(8);
    expect(never.stdout).toContain("OVERDUE");
  });
});

describe("the confirmation prompt on a terminal", () => {
  it("asks for the context name, restores when typed back, and changes nothing otherwise", async () => {
    const { spawnSync } = await import("node:child_process");
    const { CLI } = await import("./helpers.js");
    const sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
    try {
      const ctx = sb.state.contextDir(CTX);
      await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
      writeFileSync(join(ctx, "targets.json"), "{}\n");
      const before = treeHashes(sb.stateRoot);
      // `script` gives the CLI a real pseudo-terminal for stdin, stdout and stderr.
      const underTty = (answer: string) =>
        spawnSync(
          "script",
          [
            "-qec",
            [process.execPath, CLI, ...sb.flags, "restore", "--context", CTX, "--ticket", "INC-TTY"]
              .map((a) => `'${a}'`)
              .join(" "),
            "/dev/null",
          ],
          {
            input: `${answer}\n`,
            encoding: "utf8",
            env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "dumb" },
          },
        );
      const wrong = underTty("internal-dogfoo");
      expect(wrong.stdout).toContain("Type the context name (internal-dogfood) to confirm");
      expect(wrong.stdout).toMatch(/sha256:\s+[0-9a-f]{64}/);
      expect(wrong.stdout).toContain("not confirmed; nothing was changed");
      expect(wrong.status).toBe(2);
      expect(treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"))).toEqual(
        new Map([...before].filter(([k]) => !k.startsWith(".paas-backup"))),
      );
      const right = underTty(CTX);
      expect(right.status, right.stdout).toBe(0);
      expect(right.stdout).toContain("outcome:");
      expect(JSON.parse(readFileSync(join(ctx, "targets.json"), "utf8")).targets).toHaveLength(3);
    } finally {
      sb.cleanup();
    }
  });
});
