import { posix } from "node:path";

export const join = posix.join;
export const dirname = posix.dirname;
export const basename = posix.basename;

/** The folder that holds every context's state: <state_root>/contexts (si's layout, reference §1). */
export function contextsDir(stateRoot: string): string {
  return join(stateRoot, "contexts");
}

/** The folder of one context's state: <state_root>/contexts/<context>. */
export function contextDir(stateRoot: string, context: string): string {
  return join(contextsDir(stateRoot), context);
}

/** The folder of one context's snapshots: <backup_root>/<context>. */
export function contextBackupDir(backupRoot: string, context: string): string {
  return join(backupRoot, context);
}

/** True when `child` is `parent` or lies below it (both absolute, already normalised). */
export function isWithin(parent: string, child: string): boolean {
  const rel = posix.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !posix.isAbsolute(rel));
}
