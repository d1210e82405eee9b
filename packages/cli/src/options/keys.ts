import {
  ageDecryptor,
  ageEncryptor,
  checkIdentities,
  parseIdentities,
  parseRecipients,
  validateRecipient,
  type ArtifactDecryptor,
  type ArtifactEncryptor,
} from "@paas-backup/core/age";
import { UsageError, SafetyError } from "@paas-backup/core/errors";
import { expandHome, type Runtime } from "../runtime.js";

/** A file the operator named, read through the runtime's FileSystem (so commands run in-process on any fs). */
async function readText(
  rt: Runtime,
  path: string,
  what: string,
  missing: "usage" | "safety" = "usage",
): Promise<string> {
  try {
    return Buffer.from(await rt.fs.readFile(path)).toString("utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw err; // named as an environment problem, with the owner
    // A missing identity is the same condition whichever command needs it: exit 4, as a wrong one.
    if (missing === "safety")
      throw new SafetyError(
        "PAAS_BACKUP_IDENTITY_REQUIRED",
        `${what} ${path} cannot be read (${code ?? "error"})`,
        {
          path,
          remediation:
            "Pass --identity with the path of an age identity file whose recipient the snapshots were encrypted to.",
          stage: "decrypt",
        },
      );
    throw new UsageError(
      "PAAS_BACKUP_FILE_UNREADABLE",
      `${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      {
        path,
        remediation: `Check the path given for the ${what}.`,
        stage: "arguments",
      },
    );
  }
}

export interface KeyFlags {
  recipient?: string[];
  recipientsFile?: string;
  insecurePlaintext?: boolean;
  identity?: string;
}

/** Recipients from --recipient, --recipients-file, then the config file; none means no encryptor. */
export async function resolveEncryptor(rt: Runtime, flags: KeyFlags): Promise<ArtifactEncryptor | undefined> {
  if (flags.insecurePlaintext && ((flags.recipient?.length ?? 0) > 0 || flags.recipientsFile)) {
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "--insecure-plaintext cannot be combined with --recipient or --recipients-file",
      {
        remediation:
          "Choose one: drop --insecure-plaintext to encrypt to the recipients, or drop the recipients to write plaintext.",
        stage: "arguments",
      },
    );
  }
  if (flags.insecurePlaintext) return undefined;
  const recipients = [...(flags.recipient ?? []).map(validateRecipient)];
  const file = flags.recipientsFile ?? rt.config.recipientsFile;
  if (file)
    recipients.push(
      ...parseRecipients(
        await readText(rt, expandHome(file, rt.env), "recipients file"),
        expandHome(file, rt.env),
      ),
    );
  if (recipients.length === 0)
    recipients.push(...rt.config.recipients.map((r, i) => configRecipient(rt, r, i)));
  return recipients.length ? ageEncryptor([...new Set(recipients)]) : undefined;
}

/** The identity file: --identity, else $PAAS_BACKUP_IDENTITY, else the config file's identityFile (flag > environment > file). */
export function identityPath(rt: Runtime, flags: KeyFlags): string | undefined {
  const file = flags.identity ?? (rt.env.PAAS_BACKUP_IDENTITY?.trim() || undefined) ?? rt.config.identityFile;
  return file ? expandHome(file, rt.env) : undefined;
}

/** A recipient from the config file, reported by its key (recipients[1]) and file, not as a flag the operator never typed. */
function configRecipient(rt: Runtime, recipient: string, index: number): string {
  try {
    return validateRecipient(recipient);
  } catch {
    const file = rt.configPath ?? "the config file";
    throw new UsageError(
      "PAAS_BACKUP_BAD_RECIPIENT",
      `config file ${file}: recipients[${index}] (${JSON.stringify(recipient.slice(0, 12))}…) is not an age X25519 recipient`,
      {
        path: file,
        remediation:
          "Put the public recipient (age1…, as `paas-backup keygen` prints it) in recipients, never the identity.",
        stage: "config",
      },
    );
  }
}

/** The identity's AGE-SECRET-KEY-1 lines (flag > PAAS_BACKUP_IDENTITY > identityFile), checked to decode. */
export async function resolveIdentityLines(
  rt: Runtime,
  flags: KeyFlags,
): Promise<{ path: string; identities: string[] } | undefined> {
  const path = identityPath(rt, flags);
  if (!path) return undefined;
  const identities = parseIdentities(await readText(rt, path, "identity file", "safety"), path);
  await checkIdentities(identities, path);
  return { path, identities };
}

export async function resolveDecryptor(rt: Runtime, flags: KeyFlags): Promise<ArtifactDecryptor | undefined> {
  const path = identityPath(rt, flags);
  if (!path) return undefined;
  // A file that holds no usable identity is bad input (exit 2), found before any artifact is read;
  // a valid identity that opens nothing is refused later (exit 4). core refuses an identity inside
  // a work tree or the backup root before it is used.
  const identities = parseIdentities(await readText(rt, path, "identity file", "safety"), path);
  return ageDecryptor(await checkIdentities(identities, path), path, path);
}
