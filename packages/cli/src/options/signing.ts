import {
  loadSigningKey,
  readAllowedSigners,
  type SignaturePolicy,
  type SigningKey,
} from "@paas-backup/core/signing";
import { UsageError } from "@paas-backup/core/errors";
import { expandHome, type Runtime } from "../runtime.js";

/** Where `keygen --signing` puts this host's key, and where snapshot and tick look for it. */
export const DEFAULT_SIGNING_KEY = "~/.config/paas-backup/signing_key";

/**
 * This host's signing key (issue 24 §2): $PAAS_BACKUP_SIGNING_KEY, else the config file's
 * signingKeyFile, else ~/.config/paas-backup/signing_key when it exists. A key that is named but
 * missing is an error; the default one missing means this host does not sign.
 */
export async function resolveSigner(rt: Runtime): Promise<SigningKey | undefined> {
  const named = rt.env.PAAS_BACKUP_SIGNING_KEY || rt.config.signingKeyFile;
  const path = expandHome(named ?? DEFAULT_SIGNING_KEY, rt.env);
  const key = await loadSigningKey(rt.fs, path);
  if (!key && named)
    throw new UsageError("PAAS_BACKUP_FILE_UNREADABLE", `signing key ${path} does not exist`, {
      path,
      remediation:
        "Make it with `paas-backup keygen --signing --out <file>`, or fix signingKeyFile in the config file.",
      stage: "arguments",
    });
  return key ?? undefined;
}

/**
 * The key that signs the incident and drill records a command writes (issue 24 §2). A restore in an
 * emergency never fails over it: a signing key that is named but unusable is said on stderr and the
 * record is written unsigned (`report` and the record chain show that).
 */
export async function resolveRecordSigner(rt: Runtime): Promise<SigningKey | undefined> {
  try {
    return await resolveSigner(rt);
  } catch (err) {
    process.stderr.write(
      `paas-backup: warning: the records of this run are not signed: ${(err as Error).message}\n`,
    );
    return undefined;
  }
}

/** The allowed signers (config allowedSigners, an ssh-keygen allowed_signers file) and --allow-unsigned. */
export async function resolveSignaturePolicy(rt: Runtime, allowUnsigned: boolean): Promise<SignaturePolicy> {
  const file = rt.env.PAAS_BACKUP_ALLOWED_SIGNERS || rt.config.allowedSigners;
  if (!file) return { allowedSigners: [], allowUnsigned };
  const path = expandHome(file, rt.env);
  let text: string;
  try {
    text = Buffer.from(await rt.fs.readFile(path)).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EACCES") throw err;
    throw new UsageError("PAAS_BACKUP_FILE_UNREADABLE", `allowed signers file ${path} cannot be read`, {
      path,
      remediation:
        "Fix allowedSigners in the config file: an ssh-keygen allowed_signers file, one host per line.",
      stage: "arguments",
    });
  }
  return { allowedSigners: readAllowedSigners(text, path), allowedSignersOrigin: path, allowUnsigned };
}
