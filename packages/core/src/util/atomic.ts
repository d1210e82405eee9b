import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { dirname, join, basename } from "./paths.js";

/**
 * Write a small file so that readers see the old content or the new, never a torn one:
 * temporary name in the same folder, flush, rename, flush the folder.
 */
export async function writeFileAtomic(
  fs: FileSystem,
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
  nonce = "",
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${nonce || "tmp"}.partial`);
  await fs.writeFile(tmp, data, { mode });
  await fs.sync(tmp);
  await fs.rename(tmp, path);
  await fs.sync(dirname(path));
}

/**
 * Make `path` appear holding all of `data` in one step, never replacing anything: the data is
 * written and flushed to a private temporary file, then link(2)ed into place. false when `path`
 * already exists. On a filesystem without hard links, an exclusive create (O_EXCL) is the
 * fallback: still never replaces, but a reader may catch it half-written.
 */
export async function createFileExclusive(
  fs: FileSystem,
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
): Promise<boolean> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
  await fs.writeFile(tmp, data, { mode, exclusive: true });
  try {
    await fs.sync(tmp);
    try {
      await fs.link(tmp, path);
      await fs.sync(dirname(path));
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EOPNOTSUPP") throw err;
    }
    try {
      await fs.writeFile(path, data, { mode, exclusive: true });
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST") return false;
      throw err;
    }
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
