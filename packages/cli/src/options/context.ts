import { lstatSync } from "node:fs";
import { join } from "node:path";
import { contextDir, validateContextName } from "@paas-backup/core/policy";
import { UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { environmentError } from "../host/environment.js";

// Only the policy and errors entries up front: `list` and `snapshot` load this, and must not load
// the whole core. The repository entry (with the leases and fleet status of a shared bucket) is
// imported only when a context must be looked for among the snapshots: a snapshot of a live
// context never needs it.

/**
 * Is something at `path`? Missing is false; a path this user may not look at is not "missing"
 * (existsSync would say so): it is named, exit 10, so `list` run by the wrong user does not
 * answer "no such context" (issue 20).
 */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw environmentError(err, { path }) ?? err;
  }
}

export function requireContext(value: string | undefined): string {
  if (value === undefined) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--context <name> is required", {
      remediation:
        "Name the context, e.g. --context internal-dogfood (a folder under <state_root>/contexts/).",
      stage: "arguments",
    });
  }
  return validateContextName(value);
}

/**
 * A context that is neither in the state root nor in the backup root is a typo, not an empty
 * context: exit 2 naming both places (list, doctor, verify and restore would otherwise report
 * "no snapshots" or pass on nothing).
 */
export async function requireKnownContext(rt: Runtime, context: string): Promise<void> {
  const live = contextDir(rt.stateRoot, context);
  if (present(live)) return;
  const { backupRootStorage, openRepository } = await import("@paas-backup/core/repository");
  if (rt.shared) {
    // A shared bucket: a context another host backs up is known here by its snapshots alone.
    const view = await (await import("../host/shared-root.js")).committedView(rt.shared, context);
    const { snapshots, damaged } = await openRepository(view).scan(context);
    if (snapshots.length + damaged.length > 0) return;
  }
  const backups = rt.shared ? `${rt.shared.url}/${context}` : join(rt.backupRoot, context);
  if (
    !rt.shared &&
    present(backups) &&
    (await openRepository(backupRootStorage(rt.fs, rt.backupRoot))
      .scan(context)
      .then((r) => r.snapshots.length + r.damaged.length > 0))
  )
    return;
  throw new UsageError(
    "PAAS_BACKUP_CONTEXT_NOT_FOUND",
    `context ${context} has neither state (${live}) nor snapshots (${backups})`,
    {
      path: live,
      remediation:
        "Check --context, --state-root and --backup-root (or SI_PAAS_STATE_ROOT and PAAS_BACKUP_ROOT); `si paas context list` shows the contexts.",
      stage: "select",
    },
  );
}

export function requireContextDirExists(dir: string, context: string): void {
  if (present(dir)) return;
  throw new UsageError(
    "PAAS_BACKUP_CONTEXT_NOT_FOUND",
    `context ${context} not found: ${dir} does not exist`,
    {
      path: dir,
      remediation:
        "Check --context and --state-root (or SI_PAAS_STATE_ROOT); `si paas context list` shows the contexts.",
      stage: "plan",
    },
  );
}
