import type { DirEntry, FileStat, FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";

/** Reads where a missing path is an answer, not an error. */

export async function exists(fs: FileSystem, path: string): Promise<boolean> {
  return (await lstatOrNull(fs, path)) !== null;
}

/** What lstat says of a path, or null when nothing is there. */
export async function lstatOrNull(fs: FileSystem, path: string): Promise<FileStat | null> {
  try {
    return await fs.lstat(path);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

/** A folder's entries, or none when the folder does not exist (yet). */
export async function readdirOrEmpty(fs: FileSystem, dir: string): Promise<DirEntry[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/** A file's text (UTF-8), or null when the file does not exist (yet). */
export async function readTextOrNull(fs: FileSystem, path: string): Promise<string | null> {
  try {
    return Buffer.from(await fs.readFile(path)).toString("utf8");
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}
