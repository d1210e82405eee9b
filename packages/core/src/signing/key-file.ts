import type { FileSystem } from "../fs/types.js";
import { UsageError, isNotFound } from "../errors.js";
import { dirname } from "../util/paths.js";
import { assertIdentityLocation } from "../policy/work-tree.js";
import { generateSigningKeyFile, parseSigningKeyFile, type SigningKey } from "./sshsig.js";

/**
 * keygen --signing: this host's Ed25519 signing key, an unencrypted OpenSSH private key written
 * 0600 (cron signs without a passphrase), never inside the backup root or a git work tree, never
 * over an existing file unless `force`; its public key beside it as `<path>.pub`.
 */
export async function createSigningKeyFile(options: {
  fs: FileSystem;
  path: string;
  backupRoot: string;
  comment: string;
  force?: boolean;
}): Promise<{ signingKeyFile: string; publicKey: string; fingerprint: string; allowedSignersLine: string }> {
  const { fs, path } = options;
  await assertIdentityLocation(fs, path, options.backupRoot);
  const exists = await fs.lstat(path).then(
    () => true,
    () => false,
  );
  if (exists && !options.force)
    throw new UsageError(
      "PAAS_BACKUP_FILE_EXISTS",
      `${path} already exists; keygen never overwrites a key unless given --force`,
      {
        path,
        remediation:
          "Choose another --out, or pass --force if you really mean to replace it (its public key must then be replaced in the allowed signers too).",
        stage: "arguments",
      },
    );
  const { fileText, key } = generateSigningKeyFile(options.comment);
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await fs.writeFile(path, fileText, { mode: 0o600, exclusive: !options.force });
  await fs.sync(path);
  await fs.writeFile(`${path}.pub`, `${key.publicKeyText}\n`, { mode: 0o644 });
  return {
    signingKeyFile: path,
    publicKey: key.publicKeyText,
    fingerprint: key.fingerprint,
    allowedSignersLine: `${options.comment} ${key.publicKeyText}`,
  };
}

/** The signing key at `path`, or null when there is none. */
export async function loadSigningKey(fs: FileSystem, path: string): Promise<SigningKey | null> {
  let text: string;
  try {
    text = Buffer.from(await fs.readFile(path)).toString("utf8");
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
  const st = await fs.lstat(path);
  if ((st.mode & 0o077) !== 0)
    throw new UsageError(
      "PAAS_BACKUP_BAD_SIGNING_KEY",
      `${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): a signing key must be 0600`,
      { path, remediation: `chmod 600 ${path}`, stage: "arguments" },
    );
  return parseSigningKeyFile(text, path);
}
