import type { DirEntry, FileSystem } from "../fs/types.js";
import { dirname, join, basename } from "./paths.js";

/**
 * Write a small file so that readers see the old content or the new, never a torn one:
 * temporary name in the same folder, flush, rename, flush the folder.
 */
export async function writeFileAtomic(fs: FileSystem, path: string, data: string | Uint8Array, mode = 0o600, nonce = ""): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${nonce || "tmp"}.partial`);
  await fs.writeFile(tmp, data, { mode });
  await fs.sync(tmp);
  await fs.rename(tmp, path);
  await fs.sync(dirname(path));
}

export async function exists(fs: FileSystem, path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return false;
    throw err;
  }
}

/** A folder's entries, or none when the folder does not exist (yet). */
export async function readdirOrEmpty(fs: FileSystem, dir: string): Promise<DirEntry[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return [];
    throw err;
  }
}
