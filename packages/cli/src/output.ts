import { statSync, statfsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { PaasBackupError, EnvironmentError, ExitCode } from "@paas-backup/core/errors";
import { redactText } from "@paas-backup/core/redact";
import type { Runtime } from "./runtime.js";
import type { CommandSpec } from "./spec.js";
import { EXIT_ERROR_CODE, EXIT_MEANING, exitName } from "./exit-codes.js";

/** si's envelope (reference §4): the one JSON document a --json run prints on stdout. */
export interface Envelope {
  ok: boolean;
  /** filled in from the command table: whatever a command passes is replaced */
  command?: string;
  context: string;
  mode: string;
  /** always the length of `data` (or of `checks` for doctor): whatever a command passes is replaced */
  count?: number;
  data?: unknown[];
  checks?: unknown[];
  error?: FailureInfo;
  [extra: string]: unknown;
}

export interface FailureInfo {
  code: string;
  stage: string;
  target: string;
  message: string;
  remediation: string;
}

export interface RunState {
  exitCode: number;
  ran: boolean;
  run: (spec: CommandSpec, flags: Record<string, unknown>, positional: string[]) => Promise<void>;
}

/**
 * A command hands its envelope over; the runner prints it once the command has returned, so a
 * run prints exactly one document whatever the command does (a throw after this replaces it with
 * the failure envelope).
 */
export function printEnvelope(rt: Runtime, envelope: Envelope): void {
  rt.envelope = envelope;
}

/** The envelope as printed: command name and count from the runner, and an `error` on every failure. */
export function sealEnvelope(
  command: string,
  exitCode: number,
  envelope: Envelope | null,
  context: string,
): Record<string, unknown> {
  const e: Envelope = envelope ?? { ok: exitCode === 0, context, mode: "live", data: [] };
  const { ok, context: ctx, mode, data, checks, error, command: _c, count: _n, ...extra } = e;
  const list = Array.isArray(checks) ? checks : Array.isArray(data) ? data : data === undefined ? [] : [data];
  const failed = !ok || exitCode !== 0;
  const out: Record<string, unknown> = {
    ok: ok && exitCode === 0,
    command,
    context: ctx,
    mode,
    count: list.length,
  };
  if (Array.isArray(checks)) out.checks = checks;
  out.data = Array.isArray(data)
    ? data
    : data === undefined
      ? Array.isArray(checks)
        ? undefined
        : []
      : [data];
  if (out.data === undefined) delete out.data;
  if (failed) {
    const name = exitName(exitCode) ?? "unexpected";
    out.error = error ?? {
      code: EXIT_ERROR_CODE[name] || EXIT_ERROR_CODE.unexpected,
      stage: "result",
      target: ctx,
      message: `${command}: ${EXIT_MEANING[name]}`,
      remediation: `Read the entries of \`data\` that are not ok; \`paas-backup ${command} --help\` lists the exit codes.`,
    };
  }
  return { ...out, ...extra };
}

/** Run one command from the table: runtime, handler, then exactly one envelope (--json) or the human failure text. */
export async function finishRun(
  command: string,
  spec: CommandSpec,
  flags: Record<string, unknown>,
  positional: string[],
): Promise<number> {
  const json = flags.json === true;
  const context = typeof flags.context === "string" ? flags.context : "";
  let rt: Runtime | null = null;
  try {
    // First, so the worker starts while the rest loads (a snapshot's first large file waited for it).
    if (spec.prestartScanner && flags.dryRun !== true)
      (await import("@paas-backup/core/scan-lane")).prestartScanWorker();
    const { createRuntime } = await import("./runtime.js");
    rt = await createRuntime(flags, process.env, command);
    if (spec.recover && typeof flags.context === "string") {
      // Commands that touch a context first finish or undo a swap a crash interrupted.
      const [{ recoverFirst }, { validateContextName }] = await Promise.all([
        import("./commands/common.js"),
        import("@paas-backup/core/catalog"),
      ]);
      await recoverFirst(rt, validateContextName(flags.context));
    }
    const handler = await spec.load();
    const exitCode = await handler(rt, flags, positional);
    // Everything printed passes the secret scanner (issue 10 §6), the envelope included.
    if (json)
      process.stdout.write(
        redactText(`${JSON.stringify(sealEnvelope(command, exitCode, rt.envelope, context), null, 2)}\n`),
      );
    return exitCode;
  } catch (err) {
    return printFailure(command, context, err, json);
  }
}

function ownerName(uid: number): string {
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    return line ? `${line.split(":")[0]} (uid ${uid})` : `uid ${uid}`;
  } catch {
    return `uid ${uid}`;
  }
}

function nearestExisting(path: string): string {
  let p = path;
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      if (dirname(p) === p) return p;
      p = dirname(p);
    }
  }
}

export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * An error the machine raised (no permission, no space, read-only filesystem) named as such,
 * with the file, its owner or the filesystem's free space; anything else is left as it is.
 */
export function environmentError(
  err: unknown,
  where: { path?: string; needed?: number } = {},
): PaasBackupError | null {
  const seen = new Set<unknown>();
  for (
    let e = err as
      (NodeJS.ErrnoException & { cause?: unknown; dest?: unknown; needed?: unknown }) | undefined;
    e && typeof e === "object" && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    // A write stream's ENOSPC often names no file: the caller knows which filesystem it wrote to.
    const path = typeof e.path === "string" ? e.path : typeof e.dest === "string" ? e.dest : where.path;
    if (e.code === "EACCES" || e.code === "EPERM") {
      const at = path ? nearestExisting(path) : undefined;
      let owner = "";
      try {
        if (at) {
          const st = statSync(at);
          owner = `; ${at} is owned by ${ownerName(st.uid)}, mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}`;
        }
      } catch {
        owner = "";
      }
      const me = typeof process.getuid === "function" ? ownerName(process.getuid()) : "this user";
      return new EnvironmentError(
        "PAAS_BACKUP_PERMISSION_DENIED",
        `permission denied: ${e.syscall ?? "access"} ${path ?? "(unknown path)"} as ${me}${owner}`,
        {
          ...(path ? { path } : {}),
          remediation:
            "Run paas-backup as the user that owns the si paas state (the one si runs as), or fix the file's owner or mode; nothing was changed.",
          stage: "filesystem",
          data: { errno: e.code },
        },
      );
    }
    if (e.code === "ENOSPC" || e.code === "EDQUOT") {
      let free = "";
      try {
        if (path) {
          const fsInfo = statfsSync(nearestExisting(path));
          free = ` (${humanBytes(fsInfo.bavail * fsInfo.bsize)} free of ${humanBytes(fsInfo.blocks * fsInfo.bsize)})`;
        }
      } catch {
        free = "";
      }
      const needed =
        where.needed !== undefined
          ? `; this run needs up to ${humanBytes(where.needed)} there (the uncompressed size of what it writes)`
          : "";
      return new EnvironmentError(
        "PAAS_BACKUP_NO_SPACE",
        `no space left on the filesystem holding ${path ?? "the file being written"}${free}${needed}`,
        {
          ...(path ? { path } : {}),
          remediation:
            "Free space on that filesystem (old snapshots: `paas-backup prune`) or point --backup-root / --state-root at a larger one, then run again; what this run had written there was removed.",
          stage: "filesystem",
          data: { errno: e.code },
        },
      );
    }
    if (e.code === "EROFS") {
      return new EnvironmentError(
        "PAAS_BACKUP_READ_ONLY",
        `the filesystem holding ${path ?? "the target"} is read-only`,
        {
          ...(path ? { path } : {}),
          remediation: "Remount it read-write or point --backup-root elsewhere.",
          stage: "filesystem",
        },
      );
    }
  }
  return null;
}

/** Print a failure as si does: the envelope with `error` under --json, a short message on stderr otherwise. */
export function printFailure(command: string, context: string, raw: unknown, json: boolean): number {
  const err =
    raw instanceof PaasBackupError && raw.exitCode !== ExitCode.unexpected
      ? raw
      : (environmentError(raw) ?? raw);
  const known = err instanceof PaasBackupError;
  const code = known ? err.code : "PAAS_BACKUP_UNEXPECTED";
  const message = known ? err.message : `unexpected failure: ${(err as Error)?.message ?? String(err)}`;
  const remediation = known
    ? err.remediation
    : "This is a bug in paas-backup: rerun with PAAS_BACKUP_DEBUG=1 and report the message and stack.";
  const exitCode = known ? err.exitCode : ExitCode.unexpected;
  if (json) {
    const envelope: Record<string, unknown> = {
      ok: false,
      command,
      context,
      mode: "live",
      error: {
        code,
        stage: known ? err.stage : "run",
        target: known ? (err.path ?? context) : context,
        message,
        remediation,
      },
    };
    if (known && Object.keys(err.data).length) envelope.details = err.data;
    process.stdout.write(redactText(`${JSON.stringify(envelope, null, 2)}\n`));
  } else {
    process.stderr.write(
      redactText(
        `paas-backup ${command}: ${message}\n  code: ${code} (exit ${exitCode})\n  what to do: ${remediation}\n`,
      ),
    );
    if (!known && process.env.PAAS_BACKUP_DEBUG)
      process.stderr.write(redactText(`${(err as Error)?.stack}\n`));
  }
  return exitCode;
}

/** Visible width, ignoring nothing fancy: our cells are plain text. */
const MAX_WIDTH = 100;

/**
 * Aligned rows that fit 100 columns: columns are padded to the widest cell, and a cell that would
 * push a row past the width is cut with "…" (print the long text below the table instead).
 */
export function table(rows: string[][], maxWidth = MAX_WIDTH): string {
  if (rows.length === 0) return "";
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  // shrink the widest column until the table fits (never below 8 characters)
  while (total() > maxWidth) {
    const i = widths.indexOf(Math.max(...widths));
    if (widths[i]! <= 8) break;
    widths[i] = Math.max(8, widths[i]! - (total() - maxWidth));
  }
  const fit = (cell: string, w: number) => (cell.length > w ? `${cell.slice(0, w - 1)}…` : cell);
  return `${rows
    .map((row) =>
      row
        .map((cell, i) =>
          i === row.length - 1 ? fit(cell, widths[i]!) : fit(cell, widths[i]!).padEnd(widths[i]!),
        )
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

export function keyValues(pairs: [string, string | number | null | undefined][]): string {
  const rows = pairs
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [`${k}:`, String(v)]);
  const w = Math.max(0, ...rows.map((r) => r[0]!.length));
  return rows.map(([k, v]) => `${k!.padEnd(w)}  ${v}\n`).join("");
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export interface ProgressBar {
  /** `total` null when unknown: then bytes and rate only */
  update(done: number, total: number | null): void;
  /** success: draw the finished bar at 100% and keep it; failure: clear the line */
  done(success?: boolean): void;
}

/**
 * A progress line on stderr, only when stderr is a terminal (never in cron logs or under --json):
 * percent, bytes of the total, rate and time left; throttled to ten redraws a second.
 */
export function progressBar(rt: Runtime, label: string, clock: () => number = Date.now): ProgressBar {
  const started = clock();
  let last = 0;
  let drawn = false;
  let lastTotal: number | null = null;
  let lastDone = 0;
  const draw = (done: number, total: number | null, final: boolean) => {
    const elapsed = Math.max(0.001, (clock() - started) / 1000);
    const rate = done / elapsed;
    const width = 24;
    if (total && total > 0) {
      const ratio = final ? 1 : Math.min(1, done / total);
      const filled = Math.round(ratio * width);
      const left = final
        ? `done in ${duration(elapsed)}`
        : `${duration((total - done) / Math.max(rate, 1))} left`;
      rt.progress(
        `\r\u001b[2K${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${humanBytes(final ? total : done)} of ${humanBytes(total)}, ${humanBytes(rate)}/s, ${left}`,
      );
    } else {
      rt.progress(
        `\r\u001b[2K${label} ${humanBytes(done)}, ${humanBytes(rate)}/s${final ? `, done in ${duration(elapsed)}` : ""}`,
      );
    }
    drawn = true;
  };
  return {
    update(done, total) {
      lastDone = done;
      lastTotal = total;
      if (!rt.stderrIsTTY) return;
      const now = clock();
      if (now - last < 100) return;
      last = now;
      draw(done, total, false);
    },
    done(success = false) {
      if (!rt.stderrIsTTY) return;
      if (success && (drawn || lastDone > 0)) {
        draw(lastDone, lastTotal, true);
        rt.progress("\n");
      } else if (drawn) rt.progress("\r\u001b[2K");
      drawn = false;
    },
  };
}
