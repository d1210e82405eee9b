import { PaasBackupError, ExitCode, redactText } from "@paas-backup/core";
import type { Runtime } from "./runtime.js";

/** si's success envelope (reference §4): one JSON document on stdout. */
export interface Envelope {
  ok: boolean;
  command: string;
  context: string;
  mode: string;
  count: number;
  data: unknown[];
  [extra: string]: unknown;
}

export function printEnvelope(rt: Runtime, envelope: Envelope): void {
  rt.write(`${JSON.stringify(envelope, null, 2)}\n`);
}

/** Short aligned rows: the first column padded to the widest. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return `${rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n")}\n`;
}

export function keyValues(pairs: [string, string | number | null | undefined][]): string {
  return table(pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [`${k}:`, String(v)]));
}

export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A progress bar on stderr, only when stderr is a terminal; throttled to ten redraws a second. */
export function progressBar(rt: Runtime, label: string): { update(done: number, total: number): void; done(): void } {
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      if (!rt.stderrIsTTY) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      const ratio = total > 0 ? Math.min(1, done / total) : 0;
      const width = 28;
      const filled = Math.round(ratio * width);
      rt.progress(`\r${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${humanBytes(done)}   `);
      drawn = true;
    },
    done() {
      if (drawn) rt.progress("\r\u001b[2K");
    },
  };
}

/** Print a failure as si does: the envelope with `error` under --json, a short message on stderr otherwise. */
export function printFailure(rt: Runtime | null, command: string, context: string, err: unknown, json: boolean): number {
  const known = err instanceof PaasBackupError;
  const code = known ? err.code : "PAAS_BACKUP_UNEXPECTED";
  const message = known ? err.message : `unexpected failure: ${(err as Error)?.message ?? String(err)}`;
  const remediation = known ? err.remediation : "This is a bug or an environment problem; rerun with the same arguments and report the message.";
  const exitCode = known ? err.exitCode : ExitCode.unexpected;
  if (json) {
    const envelope: Record<string, unknown> = {
      ok: false,
      command,
      context,
      mode: "live",
      error: { code, stage: known ? err.stage : "run", target: known ? (err.path ?? context) : context, message, remediation },
    };
    if (known && Object.keys(err.data).length) envelope.details = err.data;
    const text = `${JSON.stringify(envelope, null, 2)}\n`;
    if (rt) rt.write(text);
    else process.stdout.write(redactText(text));
  } else {
    process.stderr.write(redactText(`paas-backup ${command}: ${message}\n  code: ${code} (exit ${exitCode})\n  what to do: ${remediation}\n`));
    if (!known && process.env.PAAS_BACKUP_DEBUG) process.stderr.write(redactText(`${(err as Error)?.stack}\n`));
  }
  return exitCode;
}
