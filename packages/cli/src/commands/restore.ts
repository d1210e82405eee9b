import { spawn } from "node:child_process";
import { createInterface } from "node:readline/promises";
import {
  allowRepoStateFrom,
  restoreSnapshot,
  findSnapshot,
  chainOf,
  UsageError,
  ValidationError,
  type ExternalDoctorResult,
  type RestorePlan,
  type RestoreResult,
  type TrustStore,
} from "@paas-backup/core";
import { resolveOperator, type Runtime } from "../runtime.js";
import { environmentError, keyValues, printEnvelope, progressBar } from "../output.js";
import {
  assertDoctorRunnable,
  lockOptions,
  requireContext,
  requireKnownContext,
  resolveDecryptor,
  type KeyFlags,
} from "./common.js";
import { offsiteFetcher } from "./offsite.js";
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
  maxExpansion?: number;
  /** set by --from-offsite: what was fetched, and a fallback if the operator allowed one */
  offsitePlan?: unknown;
  exact?: boolean;
  path?: string[];
}

/** restore as the CLI runs it: with --from-offsite's fetch first when asked. */
export function restoreAction(rt: Runtime, flags: RestoreFlags & Record<string, unknown>): Promise<number> {
  return restoreCommand(rt, flags, offsiteFetcher(rt, flags as Parameters<typeof offsiteFetcher>[1]));
}

/** Run an external doctor (e.g. `si paas doctor --json`) against the state root; ok only on JSON `"ok": true`. */
export function externalDoctorRunner(
  command: string,
  env: NodeJS.ProcessEnv,
): (stateRoot: string) => Promise<ExternalDoctorResult> {
  return (stateRoot) =>
    new Promise((resolve) => {
      const child = spawn("sh", ["-c", command], {
        env: { ...env, SI_PAAS_STATE_ROOT: stateRoot },
        stdio: ["ignore", "pipe", "pipe"],
      });
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
          detail:
            parsed === null
              ? `stdout is not JSON (exit ${code})`
              : ok
                ? `ok: true (exit ${code})`
                : `ok: ${JSON.stringify(parsed.ok)} (exit ${code})`,
        });
      });
    });
}

async function loadTrustStore(rt: Runtime): Promise<TrustStore | null> {
  const path = rt.env.SI_VAULT_TRUST_STORE?.trim();
  if (!path) return null;
  try {
    const raw = JSON.parse(Buffer.from(await rt.fs.readFile(path)).toString("utf8")) as { entries?: unknown };
    return { entries: Array.isArray(raw.entries) ? (raw.entries as TrustStore["entries"]) : [] };
  } catch {
    return { entries: [] };
  }
}

async function confirmOnTty(plan: RestorePlan): Promise<boolean> {
  // the prompt names paths and doctor details from the state: no secret value reaches the terminal
  process.stderr.write(
    redactText(
      `About to restore context ${plan.context}\n` +
        keyValues([
          ["  snapshot", `${plan.snapshot.id} (${plan.snapshot.kind}, ${plan.snapshot.time})`],
          ["  sha256", plan.snapshot.sha256],
          [
            "  fallback",
            plan.fallback.used ? `yes, ${plan.fallback.from} ${plan.fallback.reason}` : undefined,
          ],
          [
            "  scope",
            plan.scope.mode === "paths"
              ? `only ${plan.scope.paths.join(", ")}`
              : plan.scope.mode === "exact"
                ? "the whole context (--exact); only vault/ stays"
                : "what the snapshot covers",
          ],
          ["  added", plan.changes.added.join(", ") || "none"],
          ["  changed", plan.changes.changed.join(", ") || "none"],
          ["  moved aside", plan.changes.removed.join(", ") || "none"],
          ["  unchanged", plan.changes.unchanged],
          ["  warnings", plan.warnings?.length ? plan.warnings.join("; ") : undefined],
          ["  stays as it is", plan.changes.kept.join(", ") || "none"],
          [
            "  staged doctor",
            !plan.stagedDoctor
              ? undefined
              : plan.stagedDoctor.ok
                ? "ok"
                : `FAILS: ${plan.stagedDoctor.checks
                    .filter((c) => !c.ok)
                    .map((c) => c.name)
                    .join(", ")}`,
          ],
        ]).replace(/^/gm, ""),
    ),
  );
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  // Ctrl-C or Ctrl-D at the prompt: nothing has been changed yet, and the operator is told so.
  const aborted = (how: string) =>
    new UsageError(
      "PAAS_BACKUP_ABORTED",
      `restore of ${plan.context} aborted at the confirmation prompt (${how}); nothing changed`,
      {
        remediation: "Run the restore again when ready; --dry-run shows the plan without asking.",
        stage: "confirm",
      },
    );
  try {
    return await new Promise<boolean>((resolve, reject) => {
      let answered = false;
      rl.on("SIGINT", () => {
        process.stderr.write("\n");
        reject(aborted("Ctrl-C"));
      });
      rl.on("close", () => {
        if (!answered) reject(aborted("end of input"));
      });
      rl.question(`Type the context name (${plan.context}) to confirm: `).then((answer) => {
        answered = true;
        resolve(answer.trim() === plan.context);
      }, reject);
    });
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
      [
        "fallback",
        result.fallback.used
          ? `used instead of ${result.fallback.from}: ${result.fallback.reason}`
          : undefined,
      ],
      ["added", result.changes.added.length],
      ["changed", result.changes.changed.length],
      ["moved aside", result.movedAsideTo ?? undefined],
      ["scope", result.scope.mode === "paths" ? `only ${result.scope.paths.join(", ")}` : result.scope.mode],
      ["not in snapshot, moved aside", result.changes.removed.join(", ") || undefined],
      ["stays as it is", result.changes.kept.join(", ") || undefined],
      [
        "doctor",
        result.doctor
          ? result.doctor.ok
            ? "ok"
            : `FAILED: ${result.doctor.checks
                .filter((c) => !c.ok)
                .map((c) => `${c.name} (${c.detail})`)
                .join("; ")}`
          : undefined,
      ],
      [
        "staged doctor",
        result.dryRun && result.stagedDoctor
          ? result.stagedDoctor.ok
            ? "ok"
            : `FAILS: ${result.stagedDoctor.checks
                .filter((c) => !c.ok)
                .map((c) => c.name)
                .join(", ")}`
          : undefined,
      ],
      [
        "external doctor",
        result.externalDoctor
          ? `${result.externalDoctor.ok ? "ok" : "FAILED"}: ${result.externalDoctor.detail}`
          : undefined,
      ],
      [
        "vault",
        result.vault
          ? `${result.vault.present ? `kept (${result.vault.files.join(", ") || "empty"})` : "none"}; trust ${result.vault.trust}`
          : undefined,
      ],
      ["vault findings", result.vault?.findings.join("; ") || undefined],
      ["blocked", result.blockFile ?? undefined],
      ["incident", result.incidentFile],
    ]),
  );
}

export async function restoreCommand(
  rt: Runtime,
  flags: RestoreFlags,
  fetchFromOffsite?: () => Promise<void>,
): Promise<number> {
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
  if (!fetchFromOffsite) await requireKnownContext(rt, context);
  const decryptor = await resolveDecryptor(rt, flags);
  const trustStore = await loadTrustStore(rt);
  const bar = progressBar(rt, `restore ${context}`);
  let done = 0;
  // The bar's total: every byte the chain's archives hold (the manifests say), when known.
  let total: number | null = null;
  let needed: number | undefined;
  try {
    const { snapshot, all } = await findSnapshot(rt.fs, rt.backupRoot, context, flags.snapshot ?? "latest");
    const links = chainOf(snapshot, all).chain;
    // the bar's total: the bytes every link's archive holds; the space needed: the restored files
    if (links.every((l) => l.manifest)) total = links.reduce((n, l) => n + l.manifest!.totals.storedBytes, 0);
    needed = snapshot.manifest?.totals.bytes;
  } catch {
    total = null; // the restore itself reports what is wrong
  }
  const ask = rt.stdinIsTTY && rt.stderrIsTTY && !flags.yes && !flags.dryRun && !rt.json;
  try {
    const result = await withContextLock(lockOptions(rt, context, "restore"), async () => {
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
        allowRepoState: allowRepoStateFrom(rt.env),
        trustStore,
        ...(flags.doctorCmd
          ? {
              externalDoctor: externalDoctorRunner(flags.doctorCmd, rt.env),
              externalDoctorCommand: flags.doctorCmd,
            }
          : {}),
        exact: flags.exact === true,
        ...(flags.path?.length ? { paths: flags.path } : {}),
        ...(ask
          ? {
              confirm: (plan: RestorePlan) => {
                bar.done();
                return confirmOnTty(plan);
              },
            }
          : {}),
        onBytes: (n) => bar.update((done += n), total),
        ...(flags.maxExpansion ? { maxExpansion: flags.maxExpansion } : {}),
      });
    });
    bar.done(true);
    if (rt.json)
      printEnvelope(rt, {
        ok: result.ok,
        context,
        mode: flags.dryRun ? "dry-run" : "live",
        ...(flags.offsitePlan ? { offsite: flags.offsitePlan } : {}),
        data: [result],
      });
    else describeRestore(rt, result);
    // A dry run whose staged state fails a doctor says so by its exit code, as the real restore would.
    return result.ok ? 0 : 5;
  } catch (err) {
    bar.done();
    // A full state-root filesystem names itself and what the restore needs (the staged copy).
    const env = environmentError(err, { path: rt.stateRoot, ...(needed !== undefined ? { needed } : {}) });
    if (env) throw env;
    if (err instanceof ValidationError && err.data.result && !rt.json)
      describeRestore(rt, err.data.result as RestoreResult);
    throw err;
  }
}
