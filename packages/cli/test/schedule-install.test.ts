import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

// Issue 25 §4: `schedule install | status | remove` writes what an operator would otherwise copy
// from the README: systemd timers (checked by Debian's systemd-analyze) or cron lines.

const CTX = "internal-dogfood";

describe("schedule install, status and remove", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 10_000 },
      { name: "acme-prod", eventBytes: 10_000 },
    ]);
  });
  afterEach(() => sb.cleanup());

  it("--systemd writes timer and service units that systemd-analyze verify accepts and that run tick with the user's flags", async () => {
    const units = join(sb.dir, "units");
    const metrics = join(sb.dir, "paas_backup.prom");
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ mandatoryDrillContexts: [CTX] }));
    const install = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "schedule",
      "install",
      "--systemd",
      "--unit-dir",
      units,
      "--no-enable",
      "--metrics-file",
      metrics,
      "--drill-context",
      CTX,
      "--drill-context",
      "acme-prod",
    ]);
    expect(install.code, install.stdout + install.stderr).toBe(0);
    expect(install.json.data.map((d: any) => [d.job, d.scope])).toEqual([
      ["tick", "system"], // as root: system-wide
      ["maintenance", "system"],
      ["drill", "system"],
    ]);
    const files = readdirSync(units).sort();
    expect(files).toEqual(
      ["drill", "maintenance", "tick"].flatMap((j) => [`paas-backup-${j}.service`, `paas-backup-${j}.timer`]),
    );
    const verify = spawnSync("systemd-analyze", ["verify", ...files.map((f) => join(units, f))], {
      encoding: "utf8",
    });
    expect(verify.status, verify.stderr).toBe(0);
    expect(verify.stderr).not.toMatch(/paas-backup-\w+\.(service|timer):\d+/); // no warning on a line of ours
    expect(readFileSync(join(units, "paas-backup-tick.timer"), "utf8")).toMatch(/^OnCalendar=hourly$/m);
    expect(readFileSync(join(units, "paas-backup-drill.timer"), "utf8")).toMatch(/^OnCalendar=quarterly$/m);
    const drill = readFileSync(join(units, "paas-backup-drill.service"), "utf8");
    expect(drill.match(/^ExecStart=.* drill --context (\S+)$/gm)?.length).toBe(2);
    expect(drill).toContain("drill --context acme-prod");

    // The tick unit's command, run as systemd would: this sandbox's roots, config and metrics file.
    const exec = /^ExecStart=(.*)$/m.exec(readFileSync(join(units, "paas-backup-tick.service"), "utf8"))![1]!;
    expect(exec).toContain(`--state-root ${sb.stateRoot} --backup-root ${sb.backupRoot} --config ${config}`);
    expect(exec).toContain(`tick --all-contexts --metrics-file ${metrics}`);
    const [cmd, ...args] = exec.split(" ");
    const tick = spawnSync(cmd!, [...args, "--insecure-plaintext"], { encoding: "utf8" });
    expect(tick.status, tick.stderr).toBe(0);
    expect(existsSync(metrics)).toBe(true);
    expect(readdirSync(join(sb.backupRoot, "acme-prod")).some((n) => n.endsWith(".tar.gz"))).toBe(true);

    const status = await runCli([
      ...sb.flags,
      "--json",
      "schedule",
      "status",
      "--systemd",
      "--unit-dir",
      units,
    ]);
    expect(status.json.data.map((d: any) => [d.job, d.installed, d.schedule])).toEqual([
      ["tick", true, "hourly"],
      ["maintenance", true, "*-*-* 03:17:00"],
      ["drill", true, "quarterly"],
    ]);
    const removed = await runCli([
      ...sb.flags,
      "schedule",
      "remove",
      "--systemd",
      "--unit-dir",
      units,
      "--no-enable",
    ]);
    expect(removed.code).toBe(0);
    expect(readdirSync(units)).toEqual([]);
    const after = await runCli([
      ...sb.flags,
      "--json",
      "schedule",
      "status",
      "--systemd",
      "--unit-dir",
      units,
    ]);
    expect(after.json.data.every((d: any) => !d.installed)).toBe(true);
  });

  it("--user writes per-user units under ~/.config/systemd/user", async () => {
    const home = join(sb.dir, "home");
    const r = await runCli(
      [...sb.flags, "--json", "schedule", "install", "--systemd", "--user", "--no-enable"],
      {
        env: { HOME: home },
      },
    );
    expect(r.code, r.stdout).toBe(0);
    expect(r.json.data[0].scope).toBe("user");
    expect(readdirSync(join(home, ".config", "systemd", "user"))).toContain("paas-backup-tick.timer");
    const both = await runCli([...sb.flags, "schedule", "install", "--systemd", "--cron"]);
    expect(both.code).toBe(2);
  });

  it("--cron writes one block of crontab lines, keeps the other lines, and removes only its own", async () => {
    const system = join(sb.dir, "cron.d-paas-backup");
    writeFileSync(system, "MAILTO=ops@example.com\n0 0 * * * root /usr/local/bin/other-job\n");
    for (let i = 0; i < 2; i++) {
      const r = await runCli([
        ...sb.flags,
        "schedule",
        "install",
        "--cron",
        "--system",
        "--cron-file",
        system,
      ]);
      expect(r.code, r.stderr).toBe(0);
    }
    const text = readFileSync(system, "utf8");
    expect(text).toContain("/usr/local/bin/other-job");
    expect(text.match(/# paas-backup schedule: begin/g)).toHaveLength(1); // twice installed, once written
    expect(text).toMatch(
      /^7 \* \* \* \* root \S+ \S+ --state-root \S+ --backup-root \S+ tick --all-contexts # paas-backup tick$/m,
    );
    expect(text).toMatch(
      /^37 4 1 1,4,7,10 \* root .* drill --context internal-dogfood # paas-backup drill$/m,
    );
    const status = await runCli([
      ...sb.flags,
      "--json",
      "schedule",
      "status",
      "--cron",
      "--system",
      "--cron-file",
      system,
    ]);
    expect(status.json.data.map((d: any) => [d.job, d.installed, d.schedule])).toEqual([
      ["tick", true, "7 * * * *"],
      ["maintenance", true, "17 3 * * *"],
      ["drill", true, "37 4 1 1,4,7,10 *"],
    ]);
    expect(status.json.data[0].commands[0]).toContain("tick --all-contexts");
    await runCli([...sb.flags, "schedule", "remove", "--cron", "--system", "--cron-file", system]);
    expect(readFileSync(system, "utf8")).toBe(
      "MAILTO=ops@example.com\n0 0 * * * root /usr/local/bin/other-job\n",
    );

    const user = join(sb.dir, "user-crontab");
    await runCli([
      ...sb.flags,
      "schedule",
      "install",
      "--cron",
      "--user",
      "--cron-file",
      user,
      "--context",
      CTX,
    ]);
    expect(readFileSync(user, "utf8")).toMatch(
      /^7 \* \* \* \* \/\S+ .* tick --context internal-dogfood # paas-backup tick$/m,
    );
  });
});
