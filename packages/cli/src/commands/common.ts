import { hostname } from "node:os";
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import {
  ageDecryptor,
  ageEncryptor,
  checkIdentities,
  parseIdentities,
  parseRecipients,
  validateRecipient,
  hasJournal,
  recoverContext,
  withContextLock,
  type RecoveryResult,
  type ArtifactDecryptor,
  type ArtifactEncryptor,
  type LockOwner,
  type OptionalFolder,
} from "@paas-backup/core/snapshot";
import { UsageError, SafetyError } from "@paas-backup/core/errors";
import { expandHome, type Runtime } from "../runtime.js";

export { requireContext, requireKnownContext } from "./context-args.js";

export function requireContextDirExists(dir: string, context: string): void {
  if (existsSync(dir)) return;
  throw new UsageError(
    "PAAS_BACKUP_CONTEXT_NOT_FOUND",
    `context ${context} not found: ${dir} does not exist`,
    {
      path: dir,
      remediation:
        "Check --context and --state-root (or SI_PAAS_STATE_ROOT); `si paas context list` shows the contexts.",
      stage: "plan",
    },
  );
}

export function parseInclude(
  value: string | undefined,
  fallback: readonly OptionalFolder[],
): OptionalFolder[] {
  if (value === undefined) return [...fallback];
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (item !== "releases" && item !== "cache") {
      throw new UsageError(
        "PAAS_BACKUP_INVALID_ARGUMENT",
        `--include ${JSON.stringify(item)} is not an optional folder`,
        {
          remediation: "--include takes releases, cache or releases,cache (policy §2 optional folders).",
          stage: "arguments",
        },
      );
    }
  }
  return items as OptionalFolder[];
}

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

export async function resolveDecryptor(rt: Runtime, flags: KeyFlags): Promise<ArtifactDecryptor | undefined> {
  const path = identityPath(rt, flags);
  if (!path) return undefined;
  // A file that holds no usable identity is bad input (exit 2), found before any artifact is read;
  // a valid identity that opens nothing is refused later (exit 4). core refuses an identity inside
  // a work tree or the backup root before it is used.
  const identities = parseIdentities(await readText(rt, path, "identity file", "safety"), path);
  return ageDecryptor(await checkIdentities(identities, path), path, path);
}

/**
 * The lock options every command uses: waiting more than a second for another run prints who
 * holds the lock and since when on stderr (once), instead of lockTimeoutSeconds of silence.
 */
export function lockOptions(rt: Runtime, context: string, command: string) {
  let told = false;
  return {
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    context,
    owner: lockOwner(command),
    clock: rt.clock,
    timeoutMs: rt.config.lockTimeoutSeconds * 1000,
    onWait: (
      holder: { pid: number | null; host: string | null; command: string | null; startedAt: string },
      waitedMs: number,
      timeoutMs: number,
    ) => {
      // Brief contention (another tick finishing) stays quiet; a real wait says who holds the lock, once.
      if (told || waitedMs < 1000) return;
      told = true;
      const who =
        holder.pid === null
          ? `an unreadable lock file (written ${holder.startedAt})`
          : `pid ${holder.pid} on ${holder.host} (${holder.command || "unknown command"}) since ${holder.startedAt}`;
      process.stderr.write(
        `paas-backup ${command}: waiting for the lock of ${context}: held by ${who}; giving up after ${Math.round(timeoutMs / 1000)} s\n`,
      );
    },
  };
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

/**
 * Before a command touches a context: finish or undo a swap a crash interrupted (issue 9 §1).
 * Cheap when there is nothing to do (one lstat); otherwise under the context's lock, so a restore
 * still running in another process is waited for, never "recovered" under its feet.
 */
export async function recoverFirst(rt: Runtime, context: string): Promise<RecoveryResult | null> {
  if (!(await hasJournal(rt.fs, rt.stateRoot, context))) return null;
  const result = await withContextLock(
    {
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      context,
      owner: lockOwner("recover"),
      clock: rt.clock,
      timeoutMs: rt.config.lockTimeoutSeconds * 1000,
    },
    () =>
      recoverContext({
        fs: rt.fs,
        stateRoot: rt.stateRoot,
        backupRoot: rt.backupRoot,
        context,
        clock: rt.clock,
      }),
  );
  if (result)
    process.stderr.write(
      `paas-backup: recovery: ${result.message}${result.incidentFile ? ` (recorded in ${result.incidentFile})` : ""}\n`,
    );
  return result;
}

/**
 * An external doctor must be runnable before anything changes (issue 10 §3): its first word is
 * looked up as the shell would (builtins, PATH, or a path), and a missing one is a usage error.
 */
export function assertDoctorRunnable(command: string, env: NodeJS.ProcessEnv): void {
  const first = command.trim().split(/\s+/)[0] ?? "";
  const found =
    first !== "" &&
    spawnSync("sh", ["-c", 'command -v -- "$1" >/dev/null 2>&1', "sh", first], { env, stdio: "ignore" })
      .status === 0;
  if (!found) {
    throw new UsageError(
      "PAAS_BACKUP_DOCTOR_NOT_RUNNABLE",
      `--doctor-cmd ${JSON.stringify(command)}: ${JSON.stringify(first)} is not a command that can be run here`,
      {
        remediation:
          "Nothing was changed. Give a doctor that exists on this host, e.g. --doctor-cmd 'si paas doctor --json' with si on PATH.",
        stage: "arguments",
        data: { command: first },
      },
    );
  }
}
