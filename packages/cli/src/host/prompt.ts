import { createInterface } from "node:readline/promises";
import { redactText } from "@paas-backup/core/redact";
import { UsageError } from "@paas-backup/core/errors";
import type { RestorePlan } from "@paas-backup/core/restore";
import { keyValues } from "../render/text.js";
import { describeEventLines } from "../render/restore.js";

/** restore's confirmation on a terminal: the plan on stderr, then the context name typed back. */
export async function confirmOnTty(plan: RestorePlan): Promise<boolean> {
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
          // the old copy of every added/changed file goes aside too: this row is what the snapshot lacks
          ["  not in snapshot, moved aside", plan.changes.removed.join(", ") || "none"],
          ["  event lines since the snapshot", describeEventLines(plan) ?? "none"],
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
