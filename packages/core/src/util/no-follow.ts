import type { FileStat, FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { join } from "./paths.js";

/**
 * lstat(2) only refuses to follow the last component of a path: `events/audit.jsonl` is read
 * through `events` when `events` is a symbolic link. Inside a context nothing is ever read through
 * a link (issue 9 §6), so every component below `root` is lstat'ed in turn.
 *
 * - `{ stat }`: every component is a real directory and the last one is what `stat` says
 *   (which may itself be a symlink: the caller decides, without following it);
 * - `{ link }`: an earlier component (named, relative to root) is a symbolic link or not a folder;
 * - null: missing.
 *
 * Node has no openat(2), so a link swapped in between this check and the open is still followed;
 * callers check right before they read, which leaves that window as small as it can be.
 */
export type InsideStat =
  { stat: FileStat; link?: undefined } | { link: string; kind: FileStat["kind"]; stat?: undefined };

export async function lstatInside(fs: FileSystem, root: string, rel: string): Promise<InsideStat | null> {
  const parts = rel.split("/").filter(Boolean);
  try {
    for (let i = 0; i < parts.length - 1; i++) {
      const prefix = parts.slice(0, i + 1).join("/");
      const st = await fs.lstat(join(root, prefix));
      if (st.kind !== "directory") return { link: prefix, kind: st.kind };
    }
    return { stat: await fs.lstat(join(root, rel)) };
  } catch (err) {
    if (isNotFound(err) || (err as { code?: string }).code === "ENOTDIR") return null;
    throw err;
  }
}

/** true when `rel` under `root` is a regular file reached through real folders only */
export async function isPlainFileInside(fs: FileSystem, root: string, rel: string): Promise<boolean> {
  const s = await lstatInside(fs, root, rel);
  return s?.stat?.kind === "file";
}
