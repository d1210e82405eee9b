import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { dirname, join } from "../util/paths.js";

/** si's rule: the repository root is the first folder, walking up, that holds `.git` (folder or file). */
export async function findGitRoot(fs: FileSystem, start: string): Promise<string | null> {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      await fs.lstat(join(dir, ".git"));
      return dir;
    } catch (err) {
      if (!isNotFound(err) && (err as { code?: string }).code !== "ENOTDIR") throw err;
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
      if (!isNotFound(err) && (err as { code?: string }).code !== "ENOTDIR") throw err;
    }
    if (dirname(p) === p) return p;
  }
}

/**
 * The work tree holding `path`, symbolic links resolved: a backup root that is a link into a
 * repository writes into that repository, so the guard looks where the bytes go (realpath of the
 * nearest existing folder) as well as at the path as given. A path not yet created is judged by
 * its nearest existing ancestor.
 */
export async function findGitRootResolved(fs: FileSystem, path: string): Promise<string | null> {
  const existing = await nearestExisting(fs, path);
  const asGiven = await findGitRoot(fs, existing);
  if (asGiven) return asGiven;
  let resolved: string;
  try {
    resolved = await fs.realpath(existing);
  } catch (err) {
    if (isNotFound(err)) return null; // a dangling link: nothing is written through it
    throw err;
  }
  return resolved === existing ? null : findGitRoot(fs, resolved);
}
