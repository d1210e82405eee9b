import { findGitRoot, SafetyError } from "@paas-backup/core";
import { dirname } from "node:path";
import { existsSync } from "node:fs";
import type { Runtime } from "../runtime.js";

function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

export function allowRepoState(env: NodeJS.ProcessEnv): boolean {
  return ["1", "true", "yes", "on"].includes((env.SI_PAAS_ALLOW_REPO_STATE ?? "").trim().toLowerCase());
}

/** Policy §7.1: backups (and keys, and offsite staging) live outside any git work tree. */
export async function assertOutsideRepo(rt: Runtime, path: string, what: string): Promise<void> {
  const repo = await findGitRoot(rt.fs, nearestExisting(path));
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
  const repo = await findGitRoot(rt.fs, nearestExisting(rt.stateRoot));
  if (repo && !allowRepoState(rt.env)) {
    throw new SafetyError("PAAS_BACKUP_UNSAFE_LOCATION", `state root ${rt.stateRoot} is inside the git work tree ${repo}`, {
      path: rt.stateRoot,
      remediation: "Keep si paas state outside repositories; si's own override SI_PAAS_ALLOW_REPO_STATE=1 allows it when you must.",
      stage: "location",
      data: { repository: repo },
    });
  }
}
