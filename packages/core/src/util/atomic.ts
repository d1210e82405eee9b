import type { FileSystem } from "../fs/types.js";
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
