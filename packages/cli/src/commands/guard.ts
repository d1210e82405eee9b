import { findGitRootResolved, SafetyError } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";

export function allowRepoState(env: NodeJS.ProcessEnv): boolean {
  return ["1", "true", "yes", "on"].includes((env.SI_PAAS_ALLOW_REPO_STATE ?? "").trim().toLowerCase());
}

/** Policy §7.1: backups (and keys, and offsite staging) live outside any git work tree. */
export async function assertOutsideRepo(rt: Runtime, path: string, what: string): Promise<void> {
  // symbolic links resolved: a backup root that links into a repository is inside it
  const repo = await findGitRootResolved(rt.fs, path);
  if (repo) {
    throw new SafetyError("PAAS_BACKUP_UNSAFE_LOCATION", `${what} ${path} is inside the git work tree ${repo}`, {
      path,
      remediation: `Move the ${what} outside any repository (policy §7.1), e.g. under ~/.si/; a backup in a work tree is one \`git add\` away from a leak.`,
      stage: "location",
      data: { repository: repo },
    });
  }
}

export async function assertBackupLocation(rt: Runtime): Promise<void> {
  await assertOutsideRepo(rt, rt.backupRoot, "backup root");
  const repo = await findGitRootResolved(rt.fs, rt.stateRoot);
  if (repo && !allowRepoState(rt.env)) {
    throw new SafetyError("PAAS_BACKUP_UNSAFE_LOCATION", `state root ${rt.stateRoot} is inside the git work tree ${repo}`, {
      path: rt.stateRoot,
      remediation: "Keep si paas state outside repositories; si's own override SI_PAAS_ALLOW_REPO_STATE=1 allows it when you must.",
      stage: "location",
      data: { repository: repo },
    });
  }
}
