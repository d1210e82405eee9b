import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { UsageError, EnvironmentError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { printEnvelope } from "../envelope.js";
import { keyValues, table } from "../render/text.js";

/**
 * schedule install | status | remove: the three jobs policy asks for, as systemd timers or cron
 * lines, written with this run's roots and config so they back up what this command sees.
 *   tick         hourly: a daily full, else an incremental, then prune (and offsite push when configured)
 *   maintenance  daily: `status`, which exits 11 (the unit fails, cron mails) when a context needs attention
 *   drill        quarterly: the restore drill of each mandatory context (policy §7.4)
 * As root they are system-wide (/etc/systemd/system, /etc/cron.d/paas-backup), otherwise the
 * user's (~/.config/systemd/user, the user's crontab); --system / --user choose.
 */

export interface ScheduleFlags {
  systemd?: boolean;
  cron?: boolean;
  system?: boolean;
  user?: boolean;
  unitDir?: string;
  cronFile?: string;
  context?: string;
  metricsFile?: string;
  identity?: string;
  drillContext?: string[];
  enable?: boolean;
}

interface Job {
  name: "tick" | "maintenance" | "drill";
  description: string;
  /** systemd OnCalendar */
  onCalendar: string;
  /** cron's five fields */
  cron: string;
  commands: string[][];
}

const MARK_BEGIN = "# paas-backup schedule: begin (written by `paas-backup schedule install`; edit with it)";
const MARK_END = "# paas-backup schedule: end";

function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** systemd's own quoting for ExecStart: double quotes, and % doubled (a specifier otherwise). */
function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, "%%");
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/(["\\])/g, "\\$1")}"`;
}

function mode(flags: ScheduleFlags): { kind: "systemd" | "cron"; scope: "system" | "user" } {
  if (flags.systemd === flags.cron)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "schedule needs exactly one of --systemd or --cron",
      {
        remediation: "Pass --systemd (timer and service units) or --cron (crontab lines).",
        stage: "arguments",
      },
    );
  if (flags.system && flags.user)
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--system and --user cannot be combined", {
      remediation: "Choose one: --system (all users, needs root) or --user (this user's).",
      stage: "arguments",
    });
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  return {
    kind: flags.systemd ? "systemd" : "cron",
    scope: flags.system || (root && !flags.user) ? "system" : "user",
  };
}

function jobs(rt: Runtime, flags: ScheduleFlags): Job[] {
  // The command as it runs now: this Node and this paas-backup, with the roots and config it resolved.
  const entry = realpathSync(process.argv[1]!);
  const base = [process.execPath, entry, "--state-root", rt.stateRoot, "--backup-root", rt.backupRoot];
  if (rt.configPath) base.push("--config", rt.configPath);
  const metrics = flags.metricsFile ? ["--metrics-file", resolve(flags.metricsFile)] : [];
  const drillContexts = flags.drillContext?.length ? flags.drillContext : rt.config.mandatoryDrillContexts;
  const identity = flags.identity ? ["--identity", resolve(flags.identity)] : [];
  return [
    {
      name: "tick",
      description: "hourly paas-backup tick: a daily full, else an incremental, then prune",
      onCalendar: "hourly",
      cron: "7 * * * *",
      commands: [
        [...base, "tick", ...(flags.context ? ["--context", flags.context] : ["--all-contexts"]), ...metrics],
      ],
    },
    {
      name: "maintenance",
      description: "daily paas-backup status: fails when a context needs attention",
      onCalendar: "*-*-* 03:17:00",
      cron: "17 3 * * *",
      commands: [[...base, "status", ...(flags.context ? ["--context", flags.context] : [])]],
    },
    {
      name: "drill",
      description: "quarterly paas-backup restore drill (policy §7.4)",
      onCalendar: "quarterly",
      cron: "37 4 1 1,4,7,10 *",
      commands: drillContexts.map((c) => [...base, "drill", "--context", c, ...identity]),
    },
  ];
}

function unitDir(flags: ScheduleFlags, scope: "system" | "user", env: NodeJS.ProcessEnv): string {
  if (flags.unitDir) return resolve(flags.unitDir);
  if (scope === "system") return "/etc/systemd/system";
  return join(env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), ".config"), "systemd", "user");
}

function unitFiles(job: Job): { name: string; text: string }[] {
  const unit = `paas-backup-${job.name}`;
  return [
    {
      name: `${unit}.service`,
      text: [
        "[Unit]",
        `Description=${job.description}`,
        "",
        "[Service]",
        "Type=oneshot",
        ...job.commands.map((c) => `ExecStart=${c.map(systemdQuote).join(" ")}`),
        "",
      ].join("\n"),
    },
    {
      name: `${unit}.timer`,
      text: [
        "[Unit]",
        `Description=${job.description}`,
        "",
        "[Timer]",
        `OnCalendar=${job.onCalendar}`,
        "RandomizedDelaySec=300",
        "Persistent=true",
        "",
        "[Install]",
        `WantedBy=timers.target`,
        "",
      ].join("\n"),
    },
  ];
}

function cronBlock(list: Job[], scope: "system" | "user"): string {
  const lines = list.flatMap((job) =>
    job.commands.map(
      (c) =>
        `${job.cron}${scope === "system" ? " root" : ""} ${c.map(quote).join(" ")} # paas-backup ${job.name}`,
    ),
  );
  return [MARK_BEGIN, ...lines, MARK_END].join("\n");
}

/** The crontab text without our block. */
function withoutBlock(text: string): string {
  const start = text.indexOf(MARK_BEGIN);
  if (start < 0) return text;
  const end = text.indexOf(MARK_END, start);
  const after = end < 0 ? "" : text.slice(end + MARK_END.length).replace(/^\n/, "");
  return `${text.slice(0, start)}${after}`;
}

function cronFile(flags: ScheduleFlags, scope: "system" | "user"): string | null {
  if (flags.cronFile) return resolve(flags.cronFile);
  return scope === "system" ? "/etc/cron.d/paas-backup" : null;
}

/** The user's crontab through the crontab command (null file), or a file. */
function readCron(file: string | null): string {
  if (file) return existsSync(file) ? readFileSync(file, "utf8") : "";
  const r = spawnSync("crontab", ["-l"], { encoding: "utf8" });
  if (r.error) throw noCrontab(r.error.message);
  return r.status === 0 ? r.stdout : ""; // "no crontab for user" is an empty crontab
}

function writeCron(file: string | null, text: string): void {
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    if (text.trim() === "") rmSync(file, { force: true });
    else writeFileSync(file, text, { mode: 0o644 });
    return;
  }
  const r = spawnSync("crontab", ["-"], { input: text, encoding: "utf8" });
  if (r.error || r.status !== 0) throw noCrontab(r.error?.message ?? r.stderr.trim());
}

function noCrontab(why: string): EnvironmentError {
  return new EnvironmentError(
    "PAAS_BACKUP_SCHEDULER_UNAVAILABLE",
    `the user's crontab cannot be changed: ${why}`,
    {
      remediation:
        "Install cron (Debian: apt-get install cron), or use --systemd, or --cron-file <file> to write the lines to a file.",
      stage: "schedule",
    },
  );
}

/** systemctl daemon-reload and enable/disable the timers; a note, not a failure, where there is no systemd. */
function systemctl(scope: "system" | "user", args: string[][]): string[] {
  const notes: string[] = [];
  for (const a of args) {
    const full = [...(scope === "user" ? ["--user"] : []), ...a];
    const r = spawnSync("systemctl", full, { encoding: "utf8" });
    if (r.error || r.status !== 0)
      notes.push(
        `run \`systemctl ${full.join(" ")}\` where systemd runs (${(r.error?.message ?? r.stderr).trim() || `exit ${r.status}`})`,
      );
  }
  return notes;
}

export async function scheduleInstallCommand(rt: Runtime, flags: ScheduleFlags): Promise<number> {
  const { kind, scope } = mode(flags);
  const list = jobs(rt, flags);
  const written: string[] = [];
  let notes: string[] = [];
  if (kind === "systemd") {
    const dir = unitDir(flags, scope, rt.env);
    mkdirSync(dir, { recursive: true });
    for (const job of list)
      for (const f of unitFiles(job)) {
        writeFileSync(join(dir, f.name), f.text, { mode: 0o644 });
        written.push(join(dir, f.name));
      }
    if (flags.enable !== false)
      notes = systemctl(scope, [
        ["daemon-reload"],
        ["enable", "--now", ...list.map((j) => `paas-backup-${j.name}.timer`)],
      ]);
  } else {
    const file = cronFile(flags, scope);
    const before = withoutBlock(readCron(file));
    writeCron(file, `${before}${before && !before.endsWith("\n") ? "\n" : ""}${cronBlock(list, scope)}\n`);
    written.push(file ?? "the user's crontab");
  }
  const data = list.map((j) => ({
    job: j.name,
    kind,
    scope,
    schedule: kind === "systemd" ? j.onCalendar : j.cron,
    commands: j.commands.map((c) => c.map(quote).join(" ")),
  }));
  if (rt.json) printEnvelope(rt, { ok: true, context: "", mode: "live", files: written, notes, data });
  else {
    rt.write(
      table([["JOB", "WHEN", "RUNS"], ...data.map((d) => [d.job, d.schedule, d.commands.join("; ")])]),
    );
    rt.write(
      keyValues([
        ["written", written.join(", ")],
        ["scope", scope],
      ]),
    );
    for (const n of notes) rt.write(`note: ${n}\n`);
  }
  return 0;
}

function installedState(rt: Runtime, flags: ScheduleFlags) {
  const { kind, scope } = mode(flags);
  if (kind === "systemd") {
    const dir = unitDir(flags, scope, rt.env);
    return (["tick", "maintenance", "drill"] as const).map((name) => {
      const files = [`paas-backup-${name}.service`, `paas-backup-${name}.timer`].map((f) => join(dir, f));
      const present = files.filter((f) => existsSync(f));
      const timer = present.find((f) => f.endsWith(".timer"));
      const service = present.find((f) => f.endsWith(".service"));
      return {
        job: name,
        kind,
        scope,
        installed: present.length === 2,
        files: present,
        schedule: timer ? (/^OnCalendar=(.*)$/m.exec(readFileSync(timer, "utf8"))?.[1] ?? null) : null,
        commands: service
          ? [...readFileSync(service, "utf8").matchAll(/^ExecStart=(.*)$/gm)].map((m) => m[1]!)
          : [],
      };
    });
  }
  const file = cronFile(flags, scope);
  const text = readCron(file);
  const start = text.indexOf(MARK_BEGIN);
  const block = start < 0 ? "" : text.slice(start, text.indexOf(MARK_END, start));
  return (["tick", "maintenance", "drill"] as const).map((name) => {
    const lines = block.split("\n").filter((l) => l.endsWith(`# paas-backup ${name}`));
    return {
      job: name,
      kind,
      scope,
      installed: lines.length > 0,
      files: lines.length ? [file ?? "the user's crontab"] : [],
      schedule: lines[0]?.split(" ").slice(0, 5).join(" ") ?? null,
      commands: lines.map((l) =>
        l
          .replace(/ # paas-backup \S+$/, "")
          .split(" ")
          .slice(scope === "system" ? 6 : 5)
          .join(" "),
      ),
    };
  });
}

export async function scheduleStatusCommand(rt: Runtime, flags: ScheduleFlags): Promise<number> {
  const data = installedState(rt, flags);
  if (rt.json) printEnvelope(rt, { ok: true, context: "", mode: "live", data });
  else {
    rt.write(
      table([
        ["JOB", "INSTALLED", "WHEN", "RUNS"],
        ...data.map((d) => [
          d.job,
          d.installed ? "yes" : "no",
          d.schedule ?? "-",
          d.commands.join("; ") || "-",
        ]),
      ]),
    );
  }
  return 0;
}

export async function scheduleRemoveCommand(rt: Runtime, flags: ScheduleFlags): Promise<number> {
  const { kind, scope } = mode(flags);
  const removed: string[] = [];
  let notes: string[] = [];
  if (kind === "systemd") {
    const dir = unitDir(flags, scope, rt.env);
    const names = ["tick", "maintenance", "drill"].map((n) => `paas-backup-${n}`);
    if (flags.enable !== false && names.some((n) => existsSync(join(dir, `${n}.timer`))))
      notes = systemctl(scope, [["disable", "--now", ...names.map((n) => `${n}.timer`)]]);
    for (const n of names)
      for (const f of [`${n}.service`, `${n}.timer`])
        if (existsSync(join(dir, f))) {
          rmSync(join(dir, f));
          removed.push(join(dir, f));
        }
    if (flags.enable !== false && removed.length) notes.push(...systemctl(scope, [["daemon-reload"]]));
  } else {
    const file = cronFile(flags, scope);
    const text = readCron(file);
    if (text.includes(MARK_BEGIN)) {
      writeCron(file, withoutBlock(text));
      removed.push(file ?? "the user's crontab");
    }
  }
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      context: "",
      mode: "live",
      notes,
      data: removed.map((path) => ({ path })),
    });
  else {
    rt.write(
      removed.length
        ? `removed: ${removed.join(", ")}\n`
        : "nothing to remove: no paas-backup schedule found\n",
    );
    for (const n of notes) rt.write(`note: ${n}\n`);
  }
  return 0;
}
