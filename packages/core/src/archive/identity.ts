import type { FileSystem } from "../fs/types.js";
import { UsageError } from "../errors.js";
import { dirname } from "../util/paths.js";
import { assertIdentityLocation } from "../policy/work-tree.js";
import { generateIdentityFile } from "./age.js";

/**
 * keygen: a new age X25519 identity written 0600, never inside the backup root or a git work
 * tree (symbolic links resolved), never over an existing file unless `force`.
 */
export async function createIdentityFile(options: {
  fs: FileSystem;
  path: string;
  backupRoot: string;
  clock: () => Date;
  force?: boolean;
}): Promise<{ identityFile: string; recipient: string }> {
  const { fs, path } = options;
  await assertIdentityLocation(fs, path, options.backupRoot);
  const exists = await fs.lstat(path).then(
    () => true,
    () => false,
  );
  if (exists && !options.force) {
    throw new UsageError(
      "PAAS_BACKUP_FILE_EXISTS",
      `${path} already exists; keygen never overwrites a key unless given --force`,
      {
        path,
        remediation:
          "Choose another --out, or pass --force if you really mean to replace it (snapshots encrypted to the old key then need the old key, so keep a copy).",
        stage: "arguments",
      },
    );
  }
  const key = await generateIdentityFile(options.clock());
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await fs.writeFile(path, key.fileText, { mode: 0o600, exclusive: !options.force });
  await fs.sync(path);
  return { identityFile: path, recipient: key.recipient };
}
