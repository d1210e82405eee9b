import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { appendFileSync, readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { EVENT_LOGS } from "@paas-backup/core/policy";
import { planRetention } from "@paas-backup/core/retention";
import { parseSnapshotId } from "@paas-backup/core/repository";
import { eventLine } from "@paas-backup/testing";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

/**
 * The CLI soak (issue 20 §1): what cron does to one context for 45 days, through the built CLI
 * in real processes, the clock set by PAAS_BACKUP_NOW. A tick every 6 hours, with a file://
 * offsite target carrying the policy's retention (7 daily, 4 weekly, 3 monthly) and the same
 * numbers locally, si appending events between ticks. Then the simulation's invariants, as an
 * operator checks them: status and the metrics say ok and are right to, the newest restore point
 * and its chain are kept and verify, the target holds exactly its retention's set, a restore of
 * latest loses no event line, nothing secret is stored, every exit code was the documented one.
 */
const CTX = "internal-dogfood";
const DAYS = 45;
const STEP_HOURS = 6;
const POLICY = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };

describe("45 days of cron through the built CLI", () => {
  let sb: Sandbox;
  let target: string;
  let config: string;
  let metrics: string;
  const exits: { at: string; code: number; stderr: string }[] = [];
  let now = Date.parse("2026-09-01T00:10:00Z");
  const iso = () => new Date(now).toISOString();
  const cli = (args: string[]) =>
    runCli(["--config", config, ...sb.flags, ...args], { env: { PAAS_BACKUP_NOW: iso() } });
  let elapsedMs = 0;

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    target = join(sb.dir, "offsite");
    metrics = join(sb.dir, "paas_backup.prom");
    config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        retention: POLICY,
        mandatoryDrillContexts: [],
        offsite: {
          targets: [{ name: "nfs", url: `file://${target}`, retention: POLICY, allowPlaintext: true }],
        },
      }),
    );
    const started = performance.now();
    let line = 0;
    for (let hour = 0; hour < DAYS * 24; hour += STEP_HOURS) {
      for (const log of EVENT_LOGS) {
        const kind = log.includes("deploy") ? "deploy" : log.includes("alert") ? "alert" : "audit";
        appendFileSync(
          join(sb.state.contextDir(CTX), log),
          `${eventLine(kind, CTX, new Date(now), line++)}\n`,
        );
      }
      // the metrics file on the last tick only: prom-client costs every run a little, and the
      // file is the whole picture each time it is written
      const last = hour + STEP_HOURS >= DAYS * 24;
      const r = await cli([
        "--json",
        "tick",
        "--all-contexts",
        "--insecure-plaintext",
        ...(last ? ["--metrics-file", metrics] : []),
      ]);
      exits.push({ at: iso(), code: r.code, stderr: r.stderr });
      now += STEP_HOURS * 3600_000;
    }
    now -= STEP_HOURS * 3600_000 - 5 * 60_000; // five minutes after the last tick
    elapsedMs = performance.now() - started;
    process.stdout.write(
      `soak: ${exits.length} ticks over ${DAYS} days in ${(elapsedMs / 1000).toFixed(1)} s\n`,
    );
  }, 900_000);
  afterAll(() => sb?.cleanup());

  it("every tick exits 0 (nothing to report, nothing failed)", () => {
    expect(exits.filter((e) => e.code !== 0)).toEqual([]);
  });

  it("status and the metrics say ok, and the newest full is under a day old", async () => {
    const st = await cli(["--json", "status", "--all-contexts"]);
    expect(st.code, st.stdout).toBe(0);
    const s = st.json.data[0];
    expect(s).toMatchObject({ context: CTX, ok: true, attention: [], chain: { ok: true } });
    expect(s.newestFull.ageSeconds).toBeLessThan(24 * 3600);
    const prom = readFileSync(metrics, "utf8");
    expect(prom).toMatch(new RegExp(`paas_backup_context_ok\\{context="${CTX}"\\} 1`));
    expect(prom).toMatch(new RegExp(`paas_backup_chain_ok\\{context="${CTX}"\\} 1`));
  });

  it("local retention kept the policy's set, the newest restore point and its chain, and they verify", async () => {
    const list = await cli(["--json", "list", "--context", CTX]);
    expect(list.code, list.stdout).toBe(0);
    const snaps = list.json.data as { id: string; kind: string; createdAt?: string; time?: string }[];
    const fulls = snaps.filter((s) => s.kind === "full").map((s) => s.id);
    // 7 daily + 4 weekly + 3 monthly over 45 daily fulls: at most 14, at least the 7 dailies
    expect(fulls.length).toBeGreaterThanOrEqual(7);
    expect(fulls.length).toBeLessThanOrEqual(14);
    const plan = planRetention({
      snapshots: fulls.map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
      policy: POLICY,
    });
    expect(plan.remove).toEqual([]);
    // the newest snapshot (the last tick's incremental) is there and restores: verify reads its chain
    const newest = snaps[snaps.length - 1]!;
    expect(Date.parse(iso()) - parseSnapshotId(newest.id)!.time.getTime()).toBeLessThan(7 * 3600_000);
    const verify = await cli(["--json", "verify", "--context", CTX]);
    expect(verify.code, verify.stdout).toBe(0);
  });

  it("the offsite target holds exactly the target retention's set of fulls, the newest among them", async () => {
    const rootsDir = join(target, "roots");
    const roots = readdirSync(rootsDir).filter((n) => /^[0-9a-f]{16}$/.test(n));
    expect(roots).toHaveLength(1);
    const ids = readdirSync(join(rootsDir, roots[0]!, CTX))
      .map((n) => /^(.+)\.tar\.gz(\.age)?$/.exec(n)?.[1])
      .filter((id): id is string => id !== undefined)
      .sort();
    const plan = planRetention({
      snapshots: ids.map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
      policy: POLICY,
    });
    expect(plan.remove).toEqual([]);
    expect(ids.length).toBeLessThanOrEqual(14);
    const local = (
      (await cli(["--json", "list", "--context", CTX])).json.data as { id: string; kind: string }[]
    )
      .filter((s) => s.kind === "full")
      .map((s) => s.id);
    expect(ids).toContain(local[local.length - 1]);
  });

  it("a restore of latest loses no event line ever written, those since the snapshot included", async () => {
    for (const log of EVENT_LOGS)
      appendFileSync(
        join(sb.state.contextDir(CTX), log),
        `${eventLine("audit", CTX, new Date(now), 9_000_000 + log.length)}\n`,
      );
    const before = new Map(
      EVENT_LOGS.map((log) => [log, readFileSync(join(sb.state.contextDir(CTX), log), "utf8")] as const),
    );
    const r = await cli(["--json", "restore", "--context", CTX, "--ticket", "SOAK-1", "--yes"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const [log, text] of before) {
      const live = readFileSync(join(sb.state.contextDir(CTX), log), "utf8");
      for (const line of text.split("\n").filter(Boolean)) expect(live).toContain(line);
    }
  });

  it("nothing secret is stored in the backup root, the target or the metrics", () => {
    const markers = sb.state.planted.map((p) => p.marker);
    const files: string[] = [metrics];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true }))
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.isFile()) files.push(join(dir, e.name));
    };
    walk(sb.backupRoot);
    walk(target);
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      if (!existsSync(f)) continue;
      const raw = readFileSync(f);
      // plaintext artifacts are gzip: their contents are what must not hold a secret
      const text = (f.endsWith(".tar.gz") ? gunzipSync(raw) : raw).toString("latin1");
      for (const m of markers) expect(text.includes(m), `${f} holds a planted secret`).toBe(false);
    }
  });
});
