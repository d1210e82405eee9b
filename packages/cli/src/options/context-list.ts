import { contextsDir } from "@paas-backup/core/policy";
import { fleetContexts as coreFleetContexts } from "@paas-backup/core/governance";
import { listContexts } from "@paas-backup/core/context";
import { environmentError } from "../host/environment.js";
import type { Runtime } from "../runtime.js";

/** The contexts of the state root (--all-contexts): core's one lister, through the runtime's FileSystem. */
export async function contextsOf(rt: Runtime): Promise<string[]> {
  try {
    return await listContexts({ fs: rt.fs, stateRoot: rt.stateRoot });
  } catch (err) {
    // a folder this user may not read is not "no contexts": name it (exit 10)
    throw environmentError(err, { path: contextsDir(rt.stateRoot) }) ?? err;
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
