import type { FileSystem } from "../fs/types.js";
import { SafetyError, isNotFound } from "../errors.js";
import { dirname, join, isWithin } from "../util/paths.js";

/**
 * Policy §7.1: backups, keys and offsite folders live outside any git work tree (a file in a
 * work tree is one `git add` away from a leak), and the state root too unless si's own
 * override SI_PAAS_ALLOW_REPO_STATE is set. The one git-root walker of the code base.
 */

const missingOrNotDir = (err: unknown) => isNotFound(err) || (err as { code?: string }).code === "ENOTDIR";

/** si's rule: the repository root is the first folder, walking up, that holds `.git` (folder or file). */
export async function findGitRoot(fs: FileSystem, start: string): Promise<string | null> {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      await fs.lstat(join(dir, ".git"));
      return dir;
    } catch (err) {
      if (!missingOrNotDir(err)) throw err;
    }
    if (dirname(dir) === dir) return null;
  }
}

/** The nearest existing folder at or above `path`, so a path not yet created can be checked too. */
export async function nearestExisting(fs: FileSystem, path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    try {
      await fs.lstat(p);
      return p;
    } catch (err) {
      if (!missingOrNotDir(err)) throw err;
    }
    if (dirname(p) === p) return p;
  }
}

/** si's override, read from the environment the caller passes (never process.env here). */
export function allowRepoStateFrom(env: Readonly<Record<string, string | undefined>>): boolean {
  return ["1", "true", "yes", "on"].includes((env.SI_PAAS_ALLOW_REPO_STATE ?? "").trim().toLowerCase());
}

/**
 * The work tree that holds `path`, or null. Both the path as written and the path with every
 * symbolic link resolved count: a backup root that is a link into a repository is inside it.
 */
export async function workTreeOf(fs: FileSystem, path: string): Promise<string | null> {
  const existing = await nearestExisting(fs, path);
  const literal = await findGitRoot(fs, existing);
  if (literal) return literal;
  let real: string;
  try {
    real = await fs.realpath(existing);
  } catch (err) {
    if (!missingOrNotDir(err)) throw err;
    // a symbolic link to nothing: where it would write cannot be checked, so it is refused
    throw new SafetyError(
      "PAAS_BACKUP_UNSAFE_LOCATION",
      `${existing} is a symbolic link whose target does not exist`,
      {
        path: existing,
        remediation: "Point the link at an existing folder outside any git work tree, or use a real folder.",
        stage: "location",
      },
    );
  }
  return real === existing ? null : findGitRoot(fs, real);
}

export type GuardedLocation =
  "backup root" | "state root" | "identity file" | "offsite target" | "scratch root";

/** Refuse a location inside a git work tree (SafetyError PAAS_BACKUP_UNSAFE_LOCATION, exit 4). */
export async function assertOutsideWorkTree(
  fs: FileSystem,
  path: string,
  what: GuardedLocation,
  remediation?: string,
): Promise<void> {
  const repo = await workTreeOf(fs, path);
  if (!repo) return;
  throw new SafetyError(
    "PAAS_BACKUP_UNSAFE_LOCATION",
    `${what} ${path} is inside the git work tree ${repo}`,
    {
      path,
      remediation:
        remediation ??
        `Move the ${what} outside any repository (policy §7.1), e.g. under ~/.si/; a file in a work tree is one \`git add\` away from a leak.`,
      stage: "location",
      data: { repository: repo },
    },
  );
}

/** The locations of a snapshot or a restore: the backup root never in a work tree; the state root not either, unless si allows it. */
export async function assertSafeLocations(options: {
  fs: FileSystem;
  backupRoot: string;
  stateRoot?: string;
  allowRepoState?: boolean;
}): Promise<void> {
  await assertOutsideWorkTree(options.fs, options.backupRoot, "backup root");
  if (options.stateRoot !== undefined && options.allowRepoState !== true)
    await assertOutsideWorkTree(
      options.fs,
      options.stateRoot,
      "state root",
      "Keep si paas state outside repositories; si's own override SI_PAAS_ALLOW_REPO_STATE=1 allows it when you must.",
    );
}

/** An identity file: outside any work tree and outside the backup root it decrypts (links resolved). */
export async function assertIdentityLocation(
  fs: FileSystem,
  path: string,
  backupRoot?: string,
): Promise<void> {
  if (backupRoot !== undefined) await assertOutsideBackupRoot(fs, path, backupRoot);
  await assertOutsideWorkTree(
    fs,
    path,
    "identity file",
    "Move the identity outside any repository (policy §7.1) and pass its new path; a key in a work tree is one `git add` from a leak.",
  );
}

async function assertOutsideBackupRoot(fs: FileSystem, path: string, backupRoot: string): Promise<void> {
  const realOf = async (p: string) => {
    const existing = await nearestExisting(fs, p);
    const real = await fs.realpath(existing).catch(() => existing);
    return join(real, p.slice(existing.length));
  };
  if (isWithin(await realOf(backupRoot), await realOf(path)) || isWithin(backupRoot, path))
    throw new SafetyError(
      "PAAS_BACKUP_UNSAFE_LOCATION",
      `identity ${path} would sit inside the backup root ${backupRoot}`,
      {
        path,
        remediation:
          "Keep the key apart from what it decrypts: write it outside the backup root (and copy it offline).",
        stage: "location",
      },
    );
}
