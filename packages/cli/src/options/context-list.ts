import { readdirSync } from "node:fs";
import {
  contextsDir,
  fleetContexts as coreFleetContexts,
  isContextFolderName,
  isNotFound,
  UsageError,
} from "@paas-backup/core";
import { environmentError } from "../host/environment.js";
import type { Runtime } from "../runtime.js";

/** The contexts of the state root (--all-contexts). */
export function contextsOf(rt: Runtime): string[] {
  const dir = contextsDir(rt.stateRoot);
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && isContextFolderName(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    // a folder this user may not read is not "no contexts": name it (exit 10)
    if (!isNotFound(err)) throw environmentError(err, { path: dir }) ?? err;
    throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no contexts folder at ${dir}`, {
      path: dir,
      remediation: "Check --state-root or SI_PAAS_STATE_ROOT.",
      stage: "plan",
    });
  }
}

/**
 * Every context the state root has (a symbolic link with a context's name too: it needs
 * attention, as it is not backed up), and every context the backup root has snapshots or tick
 * records of (one whose live folder vanished still has backups to account for). A root that does
 * not exist has no contexts; one this user may not read is named (exit 10).
 */
export async function fleetContexts(rt: Runtime): Promise<string[]> {
  try {
    return await coreFleetContexts(rt.fs, rt.stateRoot, rt.backupRoot);
  } catch (err) {
    throw environmentError(err) ?? err;
  }
}
