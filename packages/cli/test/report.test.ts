import { describe, it, expect, beforeAll, afterAll } from "vitest";
import {
  appendFileSync,
  readFileSync,
  writeFileSync,
  readdirSync,
  statSync,
  mkdtempSync,
  rmSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox, openUp } from "./helpers.js";

/**
 * Issue 24 §1: the governance report, from a quarter an operator lived through: hourly ticks with
 * daily fulls pushed offsite, a failed tick, a prune, an incident restore and a drill. What an
 * auditor reads is checked against what the tool itself lists and recorded, and the HTML is read
 * by a real browser (Debian's Chromium, headless).
 */
const CTX = "internal-dogfood";
const T0 = Date.parse("2026-10-05T00:10:00Z");
const at = (hours: number) => ({ PAAS_BACKUP_NOW: new Date(T0 + hours * 3600_000).toISOString() });

const hourOf = (id: string) => id.slice(0, 11); // YYYYMMDDTHH

describe("report: evidence for auditors", () => {
  let sb: Sandbox;
  let config: string;
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env });
  const tickHours = [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48];
  let listedHoursBeforePrune: Set<string>;

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        offsite: { targets: [{ name: "nfs", url: `file://${join(sb.dir, "nfs")}`, allowPlaintext: true }] },
      }),
    );
    const audit = join(sb.state.contextDir(CTX), "events", "audit.jsonl");
    for (const h of tickHours) {
      // si keeps writing between ticks, so every tick has something to take
      appendFileSync(
        audit,
        `${JSON.stringify({ timestamp: at(h).PAAS_BACKUP_NOW, context: CTX, source: "audit", command: "deploy", status: "succeeded", mode: "live", severity: "info" })}\n`,
      );
      // hour 24: a tick without a recipient fails, and is remembered until the next one succeeds
      const args =
        h === 24
          ? ["--json", "tick", "--context", CTX]
          : ["--json", "tick", "--context", CTX, "--insecure-plaintext"];
      const r = await cli(args, at(h));
      if (h === 24) expect(r.code).not.toBe(0);
      else expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    const list = await cli(["--json", "list", "--context", CTX], at(49));
    listedHoursBeforePrune = new Set(list.json.data.map((s: any) => hourOf(s.id)));
    // keep one hourly and one daily: most snapshots go, with their reason recorded
    const prune = await cli(
      [
        "--json",
        "prune",
        "--context",
        CTX,
        "--keep-hourly",
        "1",
        "--keep-daily",
        "1",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
      ],
      at(49),
    );
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    expect(prune.json.data[0].removed.length).toBeGreaterThan(3);
    expect((await cli(["--json", "offsite", "verify", "--context", CTX], at(49.5))).code).toBe(0);
    const restore = await cli(
      ["--json", "restore", "--context", CTX, "--ticket", "INC-4242", "--yes"],
      at(50),
    );
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    const drill = await cli(["--json", "drill", "--context", CTX], at(51));
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
  }, 240_000);

  afterAll(() => {
    openUp(join(sb.dir, "nfs"));
    sb.cleanup();
  });

  it("counts every hour a snapshot was taken, pruned or not, and names the largest gap", async () => {
    const out = join(sb.dir, "q4.json");
    const r = await cli(
      ["--json", "report", "--context", CTX, "--period", "2026-Q4", "--format", "json", "--out", out],
      at(52),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0]).toMatchObject({ out, format: "json", schema: "paas-backup/report@1" });
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const report = JSON.parse(readFileSync(out, "utf8"));
    expect(report.period).toEqual({
      label: "2026-Q4",
      from: "2026-10-01T00:00:00.000Z",
      to: "2027-01-01T00:00:00.000Z",
    });
    const c = report.contexts[0];
    expect(c.context).toBe(CTX);
    // evidence starts with the first tick, not with the quarter
    expect(c.evidence.from.slice(0, 13)).toBe("2026-10-05T00");
    // every hour list showed before the prune is still evidence after it (tick and prune history)
    expect(c.coverage.hoursWithSnapshot).toBe(listedHoursBeforePrune.size);
    expect(c.coverage.hoursWithSnapshot).toBe(tickHours.length - 1); // the failed tick took none
    // the failed tick at hour 24 leaves a 6-hour gap (21 -> 27); the window ends at "now" (hour 52)
    expect(c.coverage.largestGap.hours).toBeGreaterThanOrEqual(6);
    expect(c.coverage.largestGap.hours).toBeLessThan(6.1);
    expect(c.coverage.days).toBe(3);
    expect(c.coverage.daysWithFull).toBe(3);
    const day1 = c.coverage.calendar.find((d: any) => d.date === "2026-10-05");
    expect(day1.hours.filter((h: boolean | null) => h === true)).toHaveLength(8);
    // deletions carry their reason and are really gone
    expect(c.retention.deletions.length).toBeGreaterThan(3);
    for (const d of c.retention.deletions) {
      expect(d.reason).toMatch(/\S/);
      expect(d.stillPresent).toBe(false);
    }
    const daily = c.retention.slots.filter((s: any) => s.rule === "daily");
    expect(daily).toHaveLength(7);
    expect(daily[0]).toMatchObject({ state: "verified" });
    // the slots before the first tick are not called missing: there is no evidence for them
    expect(daily.at(-1).state).toBe("before-evidence");
    // offsite: each daily full's copy, read-verified by the file:// verify
    const nfs = c.offsite.find((o: any) => o.name === "nfs");
    // one row per day's full, the pruned ones too (tick pushed each; the target keeps 7 daily)
    expect(nfs.copies).toHaveLength(3);
    expect(nfs.fullsWithoutCopy).toEqual([]);
    const kept = nfs.copies.filter((x: any) => x.confirmed);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.some((x: any) => x.lastReadVerify !== null)).toBe(true);
    // the restore, cross-checked against the audit event it appended to the live log
    const restore = c.restores.find((x: any) => x.kind === "restore");
    expect(restore).toMatchObject({
      ticket: "INC-4242",
      outcome: "restored",
      doctorOk: true,
      auditEvent: "found",
    });
    expect(restore.sha256).toMatch(/^[0-9a-f]{64}$/);
    // the drill: Q4 passed, with the measured restore time
    const q4 = c.drills.find((q: any) => q.quarter === "2026-Q4");
    expect(q4.passed).toBe(true);
    expect(q4.drills[0].restoreSeconds).toBeGreaterThanOrEqual(0);
    // the failed tick is an exception, resolved by the next good one 3 hours later
    const failed = c.exceptions.find((e: any) => e.kind === "failed-tick");
    expect(failed).toMatchObject({ hoursToResolve: 3 });
    expect(failed.resolvedAt).not.toBeNull();
    expect(c.keys).toEqual({ recipients: [], changes: [], rotations: [] });
    // the restore's and the drill's records form one hash chain
    expect(c.records).toEqual({ chainOk: true, length: 2, problems: [] });
  });

  it("writes CSV a spreadsheet reads, and refuses a period it does not understand", async () => {
    const out = join(sb.dir, "oct.csv");
    const r = await cli(
      [
        "report",
        "--context",
        CTX,
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
        "--format",
        "csv",
        "--out",
        out,
      ],
      at(52),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`wrote the csv report for 2026-10-01..2026-10-31 to ${out}`));
    const rows = readFileSync(out, "utf8").trim().split("\r\n");
    expect(rows[0]).toBe("context,section,item,at,value,detail");
    expect(rows.some((l) => l.startsWith(`${CTX},restore,INC-4242,`))).toBe(true);
    expect(rows.some((l) => l.startsWith(`${CTX},drill-quarter,2026-Q4,`))).toBe(true);
    const bad = await cli(["--json", "report", "--context", CTX, "--period", "2026-Q5"], at(52));
    expect(bad.code).toBe(2);
    expect(bad.json.error.message).toMatch(/2026-Q5/);
    const none = await cli(["--json", "report", "--period", "2026-Q4"], at(52));
    expect(none.code).toBe(2);
    expect(none.json.error.message).toMatch(/--context or --all-contexts/);
  });

  it("renders one static HTML file that Chromium shows, naming the context and the ticket", async () => {
    const out = join(sb.dir, "q4.html");
    const r = await cli(
      ["report", "--all-contexts", "--period", "2026-Q4", "--format", "html", "--out", out],
      at(52),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const html = readFileSync(out, "utf8");
    // no external asset: nothing is fetched when an auditor opens it
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/<script/i);
    const profile = mkdtempSync(join(tmpdir(), "pb-chromium-"));
    try {
      const flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
      ];
      const dom = spawnSync("chromium", [...flags, "--dump-dom", `file://${out}`], {
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(dom.status, dom.stderr).toBe(0);
      const text = dom.stdout.replace(/<[^>]+>/g, " ");
      expect(text).toContain(`Context ${CTX}`);
      expect(text).toContain("INC-4242");
      expect(text).toMatch(/drill passed/);
      const png = join(process.env.PB_REPORT_SCREENSHOT_DIR ?? sb.dir, "report.png");
      const shot = spawnSync(
        "chromium",
        [...flags, "--window-size=1280,2200", `--screenshot=${png}`, `file://${out}`],
        {
          encoding: "utf8",
          timeout: 60_000,
        },
      );
      expect(shot.status, shot.stderr).toBe(0);
      // a real picture, not an empty page: a PNG of some size
      const bytes = readFileSync(png);
      expect(bytes.subarray(1, 4).toString()).toBe("PNG");
      expect(bytes.length).toBeGreaterThan(20_000);
    } finally {
      rmSync(profile, { recursive: true, force: true });
    }
  }, 120_000);

  it("a deleted newest record shows: the last tick saw it at the head of the records' hash chain", async () => {
    // a tick after the drill writes the chain's head into tick.json
    const tick = await cli(["--json", "tick", "--context", CTX, "--insecure-plaintext"], at(53));
    expect(tick.code, tick.stdout).toBe(0);
    const drills = join(sb.backupRoot, CTX, "drills");
    const [drillRecord] = readdirSync(drills).filter((n) => n.endsWith(".json"));
    const saved = readFileSync(join(drills, drillRecord!));
    rmSync(join(drills, drillRecord!));
    const out = join(sb.dir, "after-delete.json");
    expect((await cli(["report", "--context", CTX, "--period", "2026-Q4", "--out", out], at(54))).code).toBe(
      0,
    );
    const c = JSON.parse(readFileSync(out, "utf8")).contexts[0];
    expect(c.records.chainOk).toBe(false);
    expect(c.records.problems.join(" ")).toContain(
      `drills/${drillRecord}, the newest record when the last tick ran, is gone`,
    );
    expect(c.exceptions.some((e: any) => e.kind === "record-chain")).toBe(true);
    writeFileSync(join(drills, drillRecord!), saved);
    // an edited older record breaks the link its successor holds
    const incidents = join(sb.backupRoot, CTX, "incidents");
    const [incident] = readdirSync(incidents).filter((n) => n.endsWith(".json"));
    const text = readFileSync(join(incidents, incident!), "utf8");
    writeFileSync(join(incidents, incident!), text.replace("INC-4242", "INC-4243"));
    expect((await cli(["report", "--context", CTX, "--period", "2026-Q4", "--out", out], at(54))).code).toBe(
      0,
    );
    expect(JSON.parse(readFileSync(out, "utf8")).contexts[0].records.problems.join(" ")).toMatch(
      new RegExp(`incidents/${incident} changed after drills/`),
    );
    writeFileSync(join(incidents, incident!), text);
  });
});
