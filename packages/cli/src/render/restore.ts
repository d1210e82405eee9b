import type { RestorePlan, RestoreResult } from "@paas-backup/core/restore";
import type { Runtime } from "../runtime.js";
import { keyValues } from "./text.js";

/** The live event lines a restore carries over (issue 20), one clause per log; undefined when none. */
export function describeEventLines(
  plan: Pick<RestorePlan, "eventLines">,
  /** where an appended line went: the restored log, or (rollback) the log put back */
  into = "the restored log",
): string | undefined {
  if (!plan.eventLines?.length) return undefined;
  return plan.eventLines
    .map(
      (e) =>
        `${e.path}: ${e.lines} line${e.lines === 1 ? "" : "s"} ${
          e.action === "append"
            ? `appended to ${into}`
            : `kept in the incident${e.keptIn ? ` (${e.keptIn})` : ""}`
        }`,
    )
    .join("; ");
}

/** "3: a, b, c", or "0". */
function named(paths: readonly string[]): string {
  return paths.length ? `${paths.length}: ${paths.join(", ")}` : "0";
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
      // Every file named, as --json and the prompt do: a count alone cannot be checked before a restore.
      ["added", named(result.changes.added)],
      ["changed", named(result.changes.changed)],
      ["moved aside", result.movedAsideTo ?? undefined],
      ["scope", result.scope.mode === "paths" ? `only ${result.scope.paths.join(", ")}` : result.scope.mode],
      ["not in snapshot, moved aside", result.changes.removed.join(", ") || undefined],
      ["event lines since the snapshot", describeEventLines(result)],
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
