import { describe, it, expect, beforeEach, afterEach, beforeAll, afterAll } from "vitest";
import { readFileSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { createServer, type Server, type IncomingMessage } from "node:http";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox, openUp } from "./helpers.js";

// The fleet at a glance: status and its exit code, the Prometheus metrics file (checked by the real
// promtool), and healthchecks-style pings seen by a loopback HTTP server.

const CTX = "internal-dogfood";
const OTHER = "customer-1";
const T0 = "2026-06-01T01:00:00Z";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });
const hoursAfter = (h: number) => new Date(Date.parse(T0) + h * 3600_000).toISOString();

function promtool(file: string): { code: number; out: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: readFileSync(file), encoding: "utf8" });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** metric lines as name{labels} -> value */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe("status: the fleet at a glance", () => {
  let sb: Sandbox;
  let config: string;
  beforeEach(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 20_000 },
      { name: OTHER, eventBytes: 10_000 },
    ]);
    config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        offsite: { targets: [{ name: "nfs", url: `file://${join(sb.dir, "nfs")}`, allowPlaintext: true }] },
      }),
    );
  });
  afterEach(() => {
    openUp(join(sb.dir, "nfs"));
    sb.cleanup();
  });
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env });

  it("exits 0 when every context is fine and 11 when one needs attention, naming why", async () => {
    const tick = await cli(["--json", "tick", "--all-contexts", "--insecure-plaintext"], at(T0));
    expect(tick.code, tick.stdout + tick.stderr).toBe(0);
    const fine = await cli(["--json", "status"], at(hoursAfter(1)));
    expect(fine.code, fine.stdout).toBe(0);
    expect(fine.json.data.map((s: any) => [s.context, s.ok])).toEqual(
      [
        [OTHER, true],
        [CTX, true],
      ].sort(),
    );
    const s = fine.json.data.find((x: any) => x.context === CTX);
    expect(s).toMatchObject({
      chain: { ok: true },
      blocked: null,
      newestIncremental: null,
      lastTick: { ok: true, action: "full" },
    });
    // the snapshot was taken a moment after T0 (PAAS_BACKUP_NOW plus the run time), status runs at T0 + 1 h
    expect(Math.abs(s.newestFull.ageSeconds - 3600)).toBeLessThan(60);
    expect(s.offsite[0]).toMatchObject({ name: "nfs", confirmed: 1, problems: [], newestFullMissing: false });
    expect(s.drill).toMatchObject({ mandatory: false });

    // 27 hours without a full: attention, exit 11
    const stale = await cli(["--json", "status", "--context", CTX], at(hoursAfter(27)));
    expect(stale.code).toBe(11);
    expect(stale.json.data[0].attention.join(" ")).toMatch(/no full in 27 h/);

    // a block marker in the context
    writeFileSync(
      join(sb.state.contextDir(OTHER), "paas-backup.blocked.json"),
      JSON.stringify({
        schema: "paas-backup/block@1",
        context: OTHER,
        ticket: "INC-7",
        blockedAt: T0,
        reason: "doctor failed",
        snapshot: null,
        failingChecks: [],
        blocks: ["deploy", "secret-mutation"],
      }),
    );
    const blocked = await cli(["status"], at(hoursAfter(2)));
    expect(blocked.code).toBe(11);
    expect(blocked.stdout).toMatch(new RegExp(`${OTHER}: blocked since ${T0} \\(ticket INC-7\\)`));
    expect(blocked.stdout).toMatch(/BLOCKED/);
    expect((await cli(["status", "--context", CTX], at(hoursAfter(2)))).code).toBe(0);
    // a wrong path is not an empty, healthy fleet
    const empty = await runCli([
      "--state-root",
      join(sb.dir, "nope"),
      "--backup-root",
      join(sb.dir, "nope2"),
      "--json",
      "status",
    ]);
    expect(empty.code).toBe(2);
    expect(empty.json.error.code).toBe("PAAS_BACKUP_NO_CONTEXTS");
  });

  it("flags an overdue mandatory drill, a missing offsite copy and a failed tick", async () => {
    // a full taken without a push: three hours later its copy is missing at the configured target
    await cli(["snapshot", "--context", CTX, "--insecure-plaintext"], at(T0));
    const missing = await cli(["--json", "status", "--context", CTX], at(hoursAfter(3)));
    expect(missing.code).toBe(11);
    expect(missing.json.data[0].attention).toEqual([
      expect.stringMatching(/offsite copy missing: .* is not at file:/),
    ]);
    // the drill of a mandatory context never passed
    writeFileSync(config, JSON.stringify({ mandatoryDrillContexts: [CTX] }));
    const drill = await cli(["--json", "status", "--context", CTX], at(hoursAfter(3)));
    expect(drill.json.data[0].attention.join(" ")).toMatch(/restore drill overdue/);
    // a tick that fails (no recipient and no --insecure-plaintext) is remembered
    writeFileSync(config, JSON.stringify({ mandatoryDrillContexts: [] }));
    const failed = await cli(["--json", "tick", "--context", OTHER], at(hoursAfter(3)));
    expect(failed.code).not.toBe(0);
    const st = await cli(["--json", "status", "--context", OTHER], at(hoursAfter(3)));
    expect(st.code).toBe(11);
    expect(st.json.data[0].lastTick).toMatchObject({ ok: false });
    expect(st.json.data[0].attention.join(" ")).toMatch(/last tick failed/);
  });

  it("writes a metrics file promtool accepts, with a failing context at context_ok 0 and no secret in it", async () => {
    const metrics = join(sb.dir, "paas_backup.prom");
    const tick = await cli(
      ["--json", "tick", "--context", CTX, "--insecure-plaintext", "--metrics-file", metrics],
      { ...at(T0), AWS_SECRET_ACCESS_KEY: "SECRETVALUE-should-not-appear" },
    );
    expect(tick.code, tick.stdout + tick.stderr).toBe(0);
    expect(tick.json.metrics).toEqual({ file: metrics, written: true });
    const check = promtool(metrics);
    expect(check.code, check.out).toBe(0);
    const text = readFileSync(metrics, "utf8");
    const m = samples(text);
    // the newest snapshot's time, which the tick took at T0 plus however long the run took to get
    // there (PAAS_BACKUP_NOW advances with the wall clock): on a loaded machine that is a second or more
    const shown = await cli(["--json", "status", "--context", CTX], at(T0));
    const newest = Math.floor(Date.parse(shown.json.data[0].newestFull.time) / 1000);
    expect(newest).toBeGreaterThanOrEqual(Date.parse(T0) / 1000);
    expect(newest).toBeLessThan(Date.parse(T0) / 1000 + 120);
    expect(m.get(`paas_backup_last_success_timestamp_seconds{context="${CTX}"}`)).toBe(newest);
    expect(m.get(`paas_backup_last_snapshot_bytes{context="${CTX}",kind="full"}`)).toBe(
      tick.json.data[0].snapshot.bytes,
    );
    expect(
      m.get(`paas_backup_snapshot_duration_seconds{context="${CTX}",kind="full"}`),
    ).toBeGreaterThanOrEqual(0);
    expect(m.get(`paas_backup_context_ok{context="${CTX}"}`)).toBe(1);
    // the other context never had a backup: in the file, and not ok
    expect(m.get(`paas_backup_context_ok{context="${OTHER}"}`)).toBe(0);
    expect(m.get(`paas_backup_last_success_timestamp_seconds{context="${OTHER}"}`)).toBe(0);
    expect(m.get(`paas_backup_drill_overdue{context="${CTX}"}`)).toBe(1);
    expect(
      m.get(
        `paas_backup_offsite_copies{context="${CTX}",target="file://${join(sb.dir, "nfs")}",state="confirmed"}`,
      ),
    ).toBe(1);
    expect(text).not.toContain("SECRETVALUE");
    expect(readdirSync(sb.dir).filter((n) => n.includes(".tmp"))).toEqual([]);
    expect(statSync(metrics).mode & 0o777).toBe(0o644);

    // status writes the same set; exit 11 because customer-1 has no full
    const st = await cli(["status", "--metrics-file", metrics], at(hoursAfter(1)));
    expect(st.code).toBe(11);
    expect(promtool(metrics).code).toBe(0);
    // drill status writes the drill gauges
    const drillFile = join(sb.dir, "drill.prom");
    await cli(["drill", "status", "--metrics-file", drillFile], at(hoursAfter(1)));
    expect(promtool(drillFile).code, promtool(drillFile).out).toBe(0);
    expect(samples(readFileSync(drillFile, "utf8")).get(`paas_backup_drill_overdue{context="${CTX}"}`)).toBe(
      1,
    );
  });
});

describe("tick pings a monitoring URL (healthchecks.io convention)", () => {
  let server: Server;
  let base: string;
  const seen: string[] = [];
  const hung: IncomingMessage[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.url!);
      if (req.url!.startsWith("/hang")) {
        hung.push(req); // never answered
        return;
      }
      res.writeHead(200);
      res.end("OK");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
    seen.length = 0;
  });
  afterEach(() => sb.cleanup());

  it("pings start then success, or start then fail; the URL is never printed", async () => {
    const ok = await runCli([
      ...sb.flags,
      "--json",
      "tick",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--ping-url",
      `${base}/ping/abc-123`,
    ]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(seen).toEqual(["/ping/abc-123/start", "/ping/abc-123"]);
    expect(ok.json.pings.map((p: any) => [p.event, p.ok])).toEqual([
      ["start", true],
      ["success", true],
    ]);
    seen.length = 0;
    // from the config file, and a failing tick (no recipient, no --insecure-plaintext)
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ pingUrl: `${base}/ping/abc-123/` }));
    const bad = await runCli([...sb.flags, "--config", config, "--json", "tick", "--context", CTX], {
      env: at("2026-06-02T01:00:00Z"),
    });
    expect(bad.code).not.toBe(0);
    expect(seen).toEqual(["/ping/abc-123/start", "/ping/abc-123/fail"]);
    expect(`${bad.stdout}${bad.stderr}`).not.toContain("abc-123");
  });

  it("an unreachable or hanging monitor neither fails nor holds up the backup", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const down = await runCli([
      ...sb.flags,
      "--json",
      "tick",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--ping-url",
      `http://127.0.0.1:${port}/x`,
    ]);
    expect(down.code, down.stdout + down.stderr).toBe(0);
    expect(down.json.data[0].action).toBe("full");
    expect(down.json.pings.map((p: any) => p.ok)).toEqual([false, false]);
    expect(down.stderr).toMatch(/ping \(start\) failed: ECONNREFUSED; the backup is not affected/);
    const t0 = Date.now();
    const hang = await runCli(
      [
        ...sb.flags,
        "--json",
        "tick",
        "--context",
        CTX,
        "--insecure-plaintext",
        "--ping-url",
        `${base}/hang/x`,
      ],
      { env: at("2026-06-02T01:00:00Z") },
    );
    const took = Date.now() - t0;
    expect(hang.code, hang.stdout + hang.stderr).toBe(0);
    expect(hang.json.data[0].ok).toBe(true);
    expect(hang.json.pings.map((p: any) => [p.event, p.ok, p.detail])).toEqual([
      ["start", false, "no answer within 3 s"],
      ["success", false, "no answer within 3 s"],
    ]);
    expect(seen.filter((u) => u.startsWith("/hang"))).toEqual(["/hang/x/start", "/hang/x"]);
    expect(took).toBeLessThan(12_000);
  });
});
