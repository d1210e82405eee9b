import { hostname } from "node:os";
import {
  ageDecryptor,
  ageEncryptor,
  parseIdentities,
  parseRecipients,
  validateRecipient,
  validateContextName,
  UsageError,
  type ArtifactDecryptor,
  type ArtifactEncryptor,
  type LockOwner,
  type OptionalFolder,
} from "@paas-backup/core";
import { expandHome, type Runtime } from "../runtime.js";

export function requireContext(value: string | undefined): string {
  if (value === undefined) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--context <name> is required", {
      remediation: "Name the context, e.g. --context internal-dogfood (a folder under <state_root>/contexts/).",
      stage: "arguments",
    });
  }
  return validateContextName(value);
}

export function parseInclude(value: string | undefined, fallback: readonly OptionalFolder[]): OptionalFolder[] {
  if (value === undefined) return [...fallback];
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (item !== "releases" && item !== "cache") {
      throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `--include ${JSON.stringify(item)} is not an optional folder`, {
        remediation: "--include takes releases, cache or releases,cache (policy §2 optional folders).",
        stage: "arguments",
      });
    }
  }
  return items as OptionalFolder[];
}

/** A file the operator named, read through the runtime's FileSystem (so commands run in-process on any fs). */
async function readText(rt: Runtime, path: string, what: string): Promise<string> {
  try {
    return Buffer.from(await rt.fs.readFile(path)).toString("utf8");
  } catch (err) {
    throw new UsageError("PAAS_BACKUP_FILE_UNREADABLE", `${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`, {
      path,
      remediation: `Check the path given for the ${what}.`,
      stage: "arguments",
    });
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
  const recipients = [...(flags.recipient ?? []).map(validateRecipient)];
  const file = flags.recipientsFile ?? rt.config.recipientsFile;
  if (file) recipients.push(...parseRecipients(await readText(rt, expandHome(file, rt.env), "recipients file"), expandHome(file, rt.env)));
  if (recipients.length === 0) recipients.push(...rt.config.recipients.map(validateRecipient));
  return recipients.length ? ageEncryptor([...new Set(recipients)]) : undefined;
}

export async function resolveDecryptor(rt: Runtime, flags: KeyFlags): Promise<ArtifactDecryptor | undefined> {
  const file = flags.identity ?? rt.config.identityFile ?? rt.env.PAAS_BACKUP_IDENTITY;
  if (!file) return undefined;
  const path = expandHome(file, rt.env);
  // core refuses an identity inside a work tree or the backup root before it is used
  return ageDecryptor(parseIdentities(await readText(rt, path, "identity file"), path), path, path);
}

export function lockOwner(command: string): LockOwner {
  return {
    pid: process.pid,
    host: hostname(),
    command,
    isAlive(pid) {
      try {
        process.kill(pid, 0);
        return true;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === "EPERM";
      }
    },
  };
}

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
