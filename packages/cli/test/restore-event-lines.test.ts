import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { appendFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { eventLine } from "@paas-backup/testing";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Issue 20: an audit trail survives a restore. Every line si wrote after the snapshot is still covered afterwards. */
describe("restore keeps the event lines written since the snapshot", () => {
  let sb: Sandbox;
  let ctx: string;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    ctx = sb.state.contextDir(CTX);
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stderr).toBe(0);
  });
  afterEach(() => sb.cleanup());

  const later = new Date("2026-12-01T09:00:00Z");
  const lines = (kind: "audit" | "deploy", n: number, from = 0) =>
    Array.from({ length: n }, (_, i) => `${eventLine(kind, CTX, later, from + i)}\n`).join("");
  const restore = (...extra: string[]) =>
    runCli([...sb.flags, "--json", "restore", "--context", CTX, "--ticket", "INC-20", "--yes", ...extra]);
  const record = (file: string) => JSON.parse(readFileSync(file, "utf8"));

  it("appends the live lines past the snapshot's log to the restored log and names them in the incident", async () => {
    const auditTail = lines("audit", 3);
    const deployTail = lines("deploy", 2);
    appendFileSync(join(ctx, "events", "audit.jsonl"), auditTail);
    appendFileSync(join(ctx, "events", "deployments.jsonl"), deployTail);
    writeFileSync(join(ctx, "targets.json"), '{"current_target":"broken","targets":[]}\n');
    const auditBefore = readFileSync(join(ctx, "events", "audit.jsonl"), "utf8");
    const deployBefore = readFileSync(join(ctx, "events", "deployments.jsonl"), "utf8");

    const dry = await runCli([...sb.flags, "restore", "--context", CTX, "--ticket", "INC-20", "--dry-run"]);
    expect(dry.stdout).toMatch(
      /event lines since the snapshot:\s+events\/deployments\.jsonl: 2 lines appended to the restored log; events\/audit\.jsonl: 3 lines appended/,
    );

    const r = await restore();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(join(ctx, "targets.json"), "utf8")).not.toContain("broken");
    expect(readFileSync(join(ctx, "events", "deployments.jsonl"), "utf8")).toBe(deployBefore);
    // every line that was live is live still; the restore's own audit event follows them
    const audit = readFileSync(join(ctx, "events", "audit.jsonl"), "utf8");
    expect(audit.startsWith(auditBefore)).toBe(true);
    expect(audit.slice(auditBefore.length)).toContain('"backup restore"');
    const incident = record(r.json.data[0].incidentFile);
    expect(incident.eventLines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          path: "events/audit.jsonl",
          action: "append",
          lines: 3,
          sha256: sha256(auditTail),
        }),
        expect.objectContaining({
          path: "events/deployments.jsonl",
          action: "append",
          lines: 2,
          sha256: sha256(deployTail),
        }),
      ]),
    );
    expect(r.json.data[0].eventLines).toEqual(incident.eventLines);
  });

  it("the doctor scans only the appended lines of an extended log, and still finds a secret there by its line", async () => {
    const audit = join(ctx, "events", "audit.jsonl");
    const snapshotLines = readFileSync(audit, "utf8").split("\n").length - 1;
    appendFileSync(audit, `${lines("audit", 2)}{"timestamp":"x","message":"key AKIAIOSFODNN7PLANTED"}\n`);
    const r = await restore();
    // a secret si wrote after the snapshot is still a secret in the restored context: blocked (exit 5)
    expect(r.code, r.stdout + r.stderr).toBe(5);
    const check = r.json.details.result.doctor.checks.find(
      (c: any) => c.name === "repo_plaintext_secret_exposure",
    );
    expect(check.ok).toBe(false);
    expect(check.detail).toContain(`events/audit.jsonl:${snapshotLines + 3} (aws-access-key-id)`);
    // the snapshot's part of the log was proven by its sha256, not scanned again
    expect(check.detail).not.toMatch(/events\/audit\.jsonl:[0-9]+ .*events\/audit\.jsonl/);
  });

  it("keeps the live lines in a file of the incident in the backup root when the live log does not extend the snapshot's, and with --exact", async () => {
    // rotated: the live log starts afresh, so it no longer begins with the snapshot's lines
    const rotated = lines("audit", 2, 100);
    writeFileSync(join(ctx, "events", "audit.jsonl"), rotated);
    const deployTail = lines("deploy", 4);
    appendFileSync(join(ctx, "events", "deployments.jsonl"), deployTail);
    const r = await restore();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const incident = record(r.json.data[0].incidentFile);
    const kept = incident.eventLines.find((e: any) => e.path === "events/audit.jsonl");
    expect(kept).toMatchObject({ action: "keep", lines: 2, sha256: sha256(rotated) });
    expect(kept.keptIn.startsWith(join(sb.backupRoot, CTX, "incidents"))).toBe(true);
    expect(readFileSync(kept.keptIn, "utf8")).toBe(rotated);
    expect(incident.eventLines.find((e: any) => e.path === "events/deployments.jsonl")).toMatchObject({
      action: "append",
      lines: 4,
    });
    expect(readFileSync(join(ctx, "events", "deployments.jsonl"), "utf8").endsWith(deployTail)).toBe(true);

    // --exact replaces the logs as the snapshot has them; the lines since go into the incident
    const moreDeploys = lines("deploy", 1, 50);
    appendFileSync(join(ctx, "events", "deployments.jsonl"), moreDeploys);
    const exact = await restore("--exact");
    expect(exact.code, exact.stdout + exact.stderr).toBe(0);
    const exactIncident = record(exact.json.data[0].incidentFile);
    const deploys = exactIncident.eventLines.find((e: any) => e.path === "events/deployments.jsonl");
    expect(deploys.action).toBe("keep");
    expect(readFileSync(deploys.keptIn, "utf8")).toBe(deployTail + moreDeploys);
    expect(readFileSync(join(ctx, "events", "deployments.jsonl"), "utf8")).not.toContain(moreDeploys);
    const files = readdirSync(join(sb.backupRoot, CTX, "incidents"));
    expect(files.filter((f) => f.endsWith(".jsonl"))).toHaveLength(3);
  });
});
