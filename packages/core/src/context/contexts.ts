import type { DirEntry, FileSystem } from "../fs/types.js";
import { UsageError, isNotFound } from "../errors.js";
import { isContextFolderName } from "../policy/context.js";
import { join } from "../util/paths.js";
import { readdirOrEmpty } from "../util/optional-reads.js";

export interface ListContextsOptions {
  fs: FileSystem;
  /** the contexts of the state root: its folders under contexts/ */
  stateRoot?: string;
  /** the contexts of the backup root: its folders (snapshots, records, tick outcomes) */
  backupRoot?: string;
  /**
   * A state root without a contexts/ folder is a wrong path far more often than an empty fleet:
   * PAAS_BACKUP_NO_CONTEXTS (exit 2). True by default; false counts it as no contexts.
   */
  requireStateRoot?: boolean;
}

/**
 * The one context lister (issue 19 §1): the sorted, de-duplicated names of every folder with a
 * valid context name in the roots given, through the injected FileSystem. `tick --all-contexts`
 * and `offsite push --all-contexts` list the state root; drill status the backup root; `status`
 * and the metrics file both.
 */
export async function listContexts(options: ListContextsOptions): Promise<string[]> {
  const names = new Set<string>();
  if (options.stateRoot !== undefined) {
    const dir = join(options.stateRoot, "contexts");
    let entries: DirEntry[];
    try {
      entries = await options.fs.readdir(dir);
    } catch (err) {
      // a folder this user may not read is not "no contexts": that error goes up as it is
      if (!isNotFound(err)) throw err;
      if (options.requireStateRoot !== false)
        throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no contexts folder at ${dir}`, {
          path: dir,
          remediation: "Check --state-root or SI_PAAS_STATE_ROOT.",
          stage: "plan",
          cause: err,
        });
      entries = [];
    }
    // A symbolic link with a context's name is listed too: never read through, but its tick fails
    // (PAAS_BACKUP_CONTEXT_NOT_A_FOLDER) rather than the context being skipped in silence.
    for (const e of entries)
      if ((e.kind === "directory" || e.kind === "symlink") && isContextFolderName(e.name)) names.add(e.name);
  }
  if (options.backupRoot !== undefined)
    for (const e of await readdirOrEmpty(options.fs, options.backupRoot))
      if (e.kind === "directory" && isContextFolderName(e.name)) names.add(e.name);
  return [...names].sort();
}

/** @deprecated use listContexts({ fs, stateRoot }) */
export async function listStateContexts(fs: FileSystem, stateRoot: string): Promise<string[]> {
  return listContexts({ fs, stateRoot });
}

/** @deprecated use listContexts({ fs, backupRoot }) */
export async function listBackupContexts(fs: FileSystem, backupRoot: string): Promise<string[]> {
  return listContexts({ fs, backupRoot });
}
