import { allowRepoStateFrom, assertSafeLocations } from "@paas-backup/core/policy";
import type { Runtime } from "../runtime.js";

/**
 * Policy §7.1 before the context lock is taken (the lock file lives in the backup root): the
 * same core check createSnapshot makes for every SDK caller.
 */
export async function assertBackupLocation(rt: Runtime): Promise<void> {
  await assertSafeLocations({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    stateRoot: rt.stateRoot,
    allowRepoState: allowRepoStateFrom(rt.env),
  });
}
