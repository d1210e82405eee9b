import { spawn } from "node:child_process";
import { createInterface } from "node:readline/promises";
import { readFileSync } from "node:fs";
import { restoreSnapshot, UsageError, ValidationError, type ExternalDoctorResult, type RestorePlan, type RestoreResult, type TrustStore } from "@paas-backup/core";
import { resolveOperator, type Runtime } from "../runtime.js";
import { keyValues, printEnvelope, progressBar } from "../output.js";
import { assertDoctorRunnable, lockOwner, requireContext, resolveDecryptor, type KeyFlags } from "./common.js";
import { allowRepoState } from "./guard.js";
import { withContextLock, redactText } from "@paas-backup/core";

export interface RestoreFlags extends KeyFlags {
  context?: string;
  snapshot?: string;
  ticket?: string;
  operator?: string;
  yes?: boolean;
  fallback?: boolean;
  dryRun?: boolean;
  doctorCmd?: string;
  fromOffsite?: string;
  maxExpansion?: string;
  /** set by --from-offsite: what was fetched, and a fallback if the operator allowed one */
  offsitePlan?: unknown;
  exact?: boolean;
  path?: string[];
}

/** Run an external doctor (e.g. `si paas doctor --json`) against the state root; ok only on JSON `"ok": true`. */
export function externalDoctorRunner(command: string, env: NodeJS.ProcessEnv): (stateRoot: string) => Promise<ExternalDoctorResult> {
  return (stateRoot) =>
    new Promise((resolve) => {
      const child = spawn("sh", ["-c", command], { env: { ...env, SI_PAAS_STATE_ROOT: stateRoot }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (c: Buffer) => {
        if (out.length < 1_000_000) out += c.toString("utf8");
      });
      child.stderr.resume();
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      child.on("error", (err) => {
        clearTimeout(timer);
        resolve({ command, ok: false, exitCode: null, detail: `could not run: ${err.message}` });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        let parsed: { ok?: unknown } | null = null;
        try {
          parsed = JSON.parse(out) as { ok?: unknown };
        } catch {
          parsed = null;
        }
        const ok = parsed !== null && parsed.ok === true;
        resolve({
          command,
          ok,
          exitCode: code,
          detail: parsed === null ? `stdout is not JSON (exit ${code})` : ok ? `ok: true (exit ${code})` : `ok: ${JSON.stringify(parsed.ok)} (exit ${code})`,
        });
      });
    });
}

export function parseExpansion(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `--max-expansion ${JSON.stringify(value)} is not a number of at least 1`, {
      remediation: "Give how many times its compressed size a hand-made archive may expand, e.g. --max-expansion 1000.",
      stage: "arguments",
    });
  }
  return n;
}

function loadTrustStore(env: NodeJS.ProcessEnv): TrustStore | null {
  const path = env.SI_VAULT_TRUST_STORE?.trim();
  if (!path) return null;
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as { entries?: unknown };
    return { entries: Array.isArray(raw.entries) ? (raw.entries as TrustStore["entries"]) : [] };
  } catch {
    return { entries: [] };
  }
}

async function confirmOnTty(plan: RestorePlan): Promise<boolean> {
  // the prompt names paths and doctor details from the state: no secret value reaches the terminal
  process.stderr.write(redactText(
    `About to restore context ${plan.context}\n` +
      keyValues([
        ["  snapshot", `${plan.snapshot.id} (${plan.snapshot.kind}, ${plan.snapshot.time})`],
        ["  sha256", plan.snapshot.sha256],
        ["  fallback", plan.fallback.used ? `yes, ${plan.fallback.from} ${plan.fallback.reason}` : undefined],
        ["  scope", plan.scope.mode === "paths" ? `only ${plan.scope.paths.join(", ")}` : plan.scope.mode === "exact" ? "the whole context (--exact); only vault/ stays" : "what the snapshot covers"],
        ["  added", plan.changes.added.join(", ") || "none"],
        ["  changed", plan.changes.changed.join(", ") || "none"],
        ["  moved aside", plan.changes.removed.join(", ") || "none"],
        ["  unchanged", plan.changes.unchanged],
        ["  stays as it is", plan.changes.kept.join(", ") || "none"],
        ["  staged doctor", !plan.stagedDoctor ? undefined : plan.stagedDoctor.ok ? "ok" : `FAILS: ${plan.stagedDoctor.checks.filter((c) => !c.ok).map((c) => c.name).join(", ")}`],
      ]).replace(/^/gm, ""),
  ));
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`Type the context name (${plan.context}) to confirm: `);
    return answer.trim() === plan.context;
  } finally {
    rl.close();
  }
}

export function describeRestore(rt: Runtime, result: RestoreResult): void {
  rt.write(
    keyValues([
      ["outcome", result.outcome],
      ["context", result.contextDir],
      ["snapshot", `${result.snapshot.id} (${result.snapshot.kind})`],
      ["sha256", result.snapshot.sha256],
      ["fallback", result.fallback.used ? `used instead of ${result.fallback.from}: ${result.fallback.reason}` : undefined],
      ["added", result.changes.added.length],
      ["changed", result.changes.changed.length],
      ["moved aside", result.movedAsideTo ?? undefined],
      ["scope", result.scope.mode === "paths" ? `only ${result.scope.paths.join(", ")}` : result.scope.mode],
      ["not in snapshot, moved aside", result.changes.removed.join(", ") || undefined],
      ["stays as it is", result.changes.kept.join(", ") || undefined],
      ["doctor", result.doctor ? (result.doctor.ok ? "ok" : `FAILED: ${result.doctor.checks.filter((c) => !c.ok).map((c) => `${c.name} (${c.detail})`).join("; ")}`) : undefined],
      ["staged doctor", result.dryRun && result.stagedDoctor ? (result.stagedDoctor.ok ? "ok" : `FAILS: ${result.stagedDoctor.checks.filter((c) => !c.ok).map((c) => c.name).join(", ")}`) : undefined],
      ["external doctor", result.externalDoctor ? `${result.externalDoctor.ok ? "ok" : "FAILED"}: ${result.externalDoctor.detail}` : undefined],
      ["vault", result.vault ? `${result.vault.present ? `kept (${result.vault.files.join(", ") || "empty"})` : "none"}; trust ${result.vault.trust}` : undefined],
      ["vault findings", result.vault?.findings.join("; ") || undefined],
      ["blocked", result.blockFile ?? undefined],
      ["incident", result.incidentFile],
    ]),
  );
}

export async function restoreCommand(rt: Runtime, flags: RestoreFlags, fetchFromOffsite?: () => Promise<void>): Promise<number> {
  const context = requireContext(flags.context);
  if (!flags.ticket?.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "restore needs --ticket <incident-id>", {
      remediation: "Open or name the incident first (policy §6.1), then pass its id with --ticket.",
      stage: "arguments",
    });
  }
  if (flags.exact && flags.path?.length) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--exact and --path exclude each other", {
      remediation: "--exact replaces the whole context; --path restores only the files named. Pick one.",
      stage: "arguments",
    });
  }
  // Checked before anything changes: a doctor that cannot run would only fail after the swap.
  if (flags.doctorCmd) assertDoctorRunnable(flags.doctorCmd, rt.env);
  const decryptor = resolveDecryptor(rt, flags);
  const bar = progressBar(rt, `restore ${context}`);
  let done = 0;
  const ask = rt.stdinIsTTY && rt.stderrIsTTY && !flags.yes && !flags.dryRun && !rt.json;
  try {
    const result = await withContextLock(
      { fs: rt.fs, backupRoot: rt.backupRoot, context, owner: lockOwner("restore"), clock: rt.clock, timeoutMs: rt.config.lockTimeoutSeconds * 1000 },
      async () => {
        // The offsite fetch writes into the backup root: under the same lock as the restore.
        if (fetchFromOffsite) await fetchFromOffsite();
        return restoreSnapshot({
          fs: rt.fs,
          stateRoot: rt.stateRoot,
          backupRoot: rt.backupRoot,
          context,
          snapshot: flags.snapshot ?? "latest",
          ticket: flags.ticket!,
          operator: resolveOperator(flags.operator, rt.env),
          clock: rt.clock,
          ...(decryptor ? { decryptor } : {}),
          fallback: flags.fallback === true,
          dryRun: flags.dryRun === true,
          secretAllow: rt.config.secretAllow,
          allowRepoState: allowRepoState(rt.env),
          trustStore: loadTrustStore(rt.env),
          ...(flags.doctorCmd ? { externalDoctor: externalDoctorRunner(flags.doctorCmd, rt.env), externalDoctorCommand: flags.doctorCmd } : {}),
          exact: flags.exact === true,
          ...(flags.path?.length ? { paths: flags.path } : {}),
          ...(ask ? { confirm: (plan: RestorePlan) => { bar.done(); return confirmOnTty(plan); } } : {}),
          onBytes: (n) => bar.update((done += n), Math.max(done, 1)),
          ...(flags.maxExpansion ? { maxExpansion: parseExpansion(flags.maxExpansion) } : {}),
        });
      },
    );
    bar.done();
    if (rt.json) printEnvelope(rt, { ok: result.ok, command: "restore", context, mode: flags.dryRun ? "dry-run" : "live", count: 1, ...(flags.offsitePlan ? { offsite: flags.offsitePlan } : {}), data: [result] });
    else describeRestore(rt, result);
    // A dry run whose staged state fails a doctor says so by its exit code, as the real restore would.
    return result.ok ? 0 : 5;
  } catch (err) {
    bar.done();
    if (err instanceof ValidationError && err.data.result && !rt.json) describeRestore(rt, err.data.result as RestoreResult);
    throw err;
  }
}
