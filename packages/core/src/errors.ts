/**
 * Every error an operator can meet is one of these classes: a stable `code` for scripts,
 * a message that names the path, a one-sentence `remediation` (as si's failure envelope has),
 * and the process exit code the CLI uses. Messages never carry secret values.
 */
export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  integrity: 3,
  safety: 4,
  validation: 5,
  busy: 6,
  partial: 7,
  overdue: 8,
  /** the snapshot was taken, with secret values redacted: rotate the leaked credential (or acknowledge it) */
  redacted: 9,
  environment: 10,
  /** `status`: at least one context needs attention (no recent full, overdue drill, blocked, offsite copy missing, failed tick) */
  attention: 11,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Every error code paas-backup reports, with what it means: the stable `code` of a
 * PaasBackupError is one of these keys, so a typo is a compile error and scripts can rely on
 * the list. To add a code, add one line (keep them sorted).
 */
export const ERROR_CODES = {
  PAAS_BACKUP_ABORTED: "the operator aborted at the confirmation prompt (Ctrl-C); nothing changed",
  PAAS_BACKUP_ARCHIVE_CORRUPT: "an artifact cannot be read as gzip/tar (or its encryption layer fails)",
  PAAS_BACKUP_ARCHIVE_TOO_LARGE: "an archive expands past its limit (decompression bomb guard)",
  PAAS_BACKUP_BAD_IDENTITY: "an identity file holds no age identity",
  PAAS_BACKUP_BAD_RECIPIENT: "a recipient is not an age X25519 recipient",
  PAAS_BACKUP_BAD_SIGNATURE: "a signature that does not match the bytes it signs (changed after signing)",
  PAAS_BACKUP_BAD_SIGNING_KEY: "a signing key file that is not an unencrypted Ed25519 OpenSSH key",
  PAAS_BACKUP_BAD_TARGET: "an offsite target URL or name that cannot be used",
  PAAS_BACKUP_CHAIN_BROKEN: "an incremental whose parent is missing or fails its checksum",
  PAAS_BACKUP_CHECKSUM_MALFORMED: "a checksum file that names no sha256 for its artifact (empty, truncated)",
  PAAS_BACKUP_CHECKSUM_MISMATCH: "an artifact does not match its checksum file",
  PAAS_BACKUP_CHECKSUM_MISSING: "an artifact has no checksum file",
  PAAS_BACKUP_CONFIG_INVALID: "the config file is not valid",
  PAAS_BACKUP_CONTENT_MISMATCH: "restored bytes differ from what the manifest records",
  PAAS_BACKUP_CONTEXT_NOT_A_FOLDER: "the context path is not a folder",
  PAAS_BACKUP_CONTEXT_NOT_FOUND: "the context folder does not exist",
  PAAS_BACKUP_CROSS_DEVICE:
    "a rename across filesystems (EXDEV): the folders it moves between must be on one filesystem (exit 10)",
  PAAS_BACKUP_DECRYPT_FAILED: "decryption failed",
  PAAS_BACKUP_DOCTOR_NOT_RUNNABLE:
    "--doctor-cmd names a command that cannot run here (checked before anything changes)",
  PAAS_BACKUP_DOCTOR_REQUIRED: "unblock needs the external doctor that blocked the context to pass",
  PAAS_BACKUP_DOCTOR_MISMATCH:
    "unblock's --doctor-cmd is not the external doctor that blocked the context (--override-doctor with a ticket to run another)",
  PAAS_BACKUP_FILE_EXISTS: "a file that is never overwritten already exists",
  PAAS_BACKUP_FILE_UNREADABLE: "a file the operator named cannot be read",
  PAAS_BACKUP_HOSTILE_ENTRY: "an archive entry that would escape or harm the target (refused)",
  PAAS_BACKUP_IDENTITY_REQUIRED: "an encrypted snapshot and no identity",
  PAAS_BACKUP_INVALID_ARGUMENT: "a flag or option value that cannot be",
  PAAS_BACKUP_INVALID_CONTEXT: "a context name that is not one",
  PAAS_BACKUP_IO_ERROR: "the disk reported an I/O error (EIO) on a file paas-backup read or wrote (exit 10)",
  PAAS_BACKUP_JOURNAL_UNREADABLE: "a swap journal cannot be read; the context may be half swapped",
  PAAS_BACKUP_LEASE_LOST:
    "a shared repository's lease was taken over while its holder paused: its commit was refused (exit 6)",
  PAAS_BACKUP_LOCKED: "another run holds the context's lock (or a shared repository's lease)",
  PAAS_BACKUP_MANIFEST_DISAGREES: "an archive entry disagrees with its manifest",
  PAAS_BACKUP_MANIFEST_INVALID: "a manifest that is not valid",
  PAAS_BACKUP_MOUNT_BUSY:
    "a folder paas-backup must move is busy (EBUSY), e.g. a mount point such as a bind-mounted context (exit 10)",
  PAAS_BACKUP_NAME_TOO_LONG: "a file name or path longer than the filesystem allows (ENAMETOOLONG, exit 10)",
  PAAS_BACKUP_NOTHING_TO_DRILL: "no snapshot that verifies, so no drill",
  PAAS_BACKUP_NOTHING_TO_ROLL_BACK: "no restore to roll back",
  PAAS_BACKUP_NOT_A_FOLDER:
    "a path paas-backup needs as a folder is a file (ENOTDIR), e.g. a context's backup folder (exit 10)",
  PAAS_BACKUP_NOT_A_REPOSITORY:
    "an s3:// backup root whose bucket and prefix hold no paas-backup repository yet (exit 2)",
  PAAS_BACKUP_NOT_CONFIRMED: "the operator did not confirm a restore",
  PAAS_BACKUP_NO_CONDITIONAL_WRITES:
    "a storage server or bucket that ignores create-only writes, refused as a shared repository (exit 4)",
  PAAS_BACKUP_NO_CONTEXTS: "no contexts to work on",
  PAAS_BACKUP_NO_RECIPIENT: "no age recipient and no --insecure-plaintext",
  PAAS_BACKUP_NO_SNAPSHOTS: "a context without snapshots",
  PAAS_BACKUP_NO_SPACE: "no space left on a filesystem paas-backup writes to (exit 10)",
  PAAS_BACKUP_NO_TARGET: "no offsite target given or configured",
  PAAS_BACKUP_OBJECT_NOT_FOUND: "a repository object is missing (every storage driver)",
  PAAS_BACKUP_OBJECT_TOO_LARGE: "a small repository object (manifest, checksum) is too large",
  PAAS_BACKUP_OFFSITE_NO_RECIPIENT:
    "a plaintext snapshot would leave the host: no recipient to encrypt it to on push, and the target does not say allowPlaintext (exit 4)",
  PAAS_BACKUP_OFFSITE_ROOT_AMBIGUOUS:
    "restore --from-offsite: this backup root has no copy of the snapshot and several other roots at the target do; --offsite-root picks one (exit 2)",
  PAAS_BACKUP_PACKAGE_MISSING:
    "an optional package a feature needs is not installed (a storage driver, the demo fixtures)",
  PAAS_BACKUP_PATH_NOT_IN_SNAPSHOT: "restore --path names a file that is never backed up",
  PAAS_BACKUP_PERMISSION_DENIED:
    "the OS refused access to a file (EACCES/EPERM): file and owner named (exit 10)",
  PAAS_BACKUP_READ_ONLY: "a filesystem paas-backup writes to is read-only (exit 10)",
  PAAS_BACKUP_RECORD_NAME_TAKEN:
    "every name for an incident or drill record is taken (a bug or a runaway writer)",
  PAAS_BACKUP_RECOVERY_FAILED: "an interrupted swap could not be finished or undone",
  PAAS_BACKUP_REPOSITORY_ID_INVALID: "a backup root identity file that does not hold one",
  PAAS_BACKUP_REMOTE_ROOT_UNSUPPORTED:
    "a command that does not work with an s3:// backup root yet (exit 2; it names the ones that do)",
  PAAS_BACKUP_RESTORE_UNFINISHED: "a restore failed after its swap; the context is blocked",
  PAAS_BACKUP_SCHEDULER_UNAVAILABLE:
    "schedule install/remove could not change the user's crontab (no crontab command, or it refused; exit 10)",
  PAAS_BACKUP_SECRET_FOUND: "plaintext secret material in a file to back up",
  PAAS_BACKUP_SNAPSHOT_NOT_FOUND: "no snapshot with that id",
  PAAS_BACKUP_STATE_CHANGING: "a state file kept changing while it was read",
  PAAS_BACKUP_STILL_FAILING: "unblock refused: doctor still fails",
  PAAS_BACKUP_STORAGE_FAILED: "a storage backend failed (network, permissions, bucket)",
  PAAS_BACKUP_STORAGE_MISMATCH: "bytes written to storage hash otherwise than expected",
  PAAS_BACKUP_SWAP_CONFLICT: "a swap step found its destination taken",
  PAAS_BACKUP_SYMLINK_IN_CONTEXT: "a symbolic link appeared in a context while a snapshot read it",
  PAAS_BACKUP_TICKET_REQUIRED: "a restore without an incident ticket",
  PAAS_BACKUP_UNEXPECTED: "a bug in paas-backup (recorded in outcomes; exit 1)",
  PAAS_BACKUP_UNSAFE_LOCATION: "a backup root, key or target inside a git work tree (or the backup root)",
  PAAS_BACKUP_UNSIGNED: "a snapshot without a signature, dated after the repository began signing",
  PAAS_BACKUP_UNTRUSTED_SIGNER: "a snapshot signed by a key outside the allowed signers",
  PAAS_BACKUP_VALIDATION_FAILED: "the restored state fails post-restore validation",
  PAAS_BACKUP_WRONG_IDENTITY: "the identity cannot decrypt this snapshot",
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

export interface ErrorDetails {
  path?: string;
  remediation: string;
  stage?: string;
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class PaasBackupError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCodeValue;
  readonly path: string | undefined;
  readonly remediation: string;
  readonly stage: string;
  readonly data: Record<string, unknown>;
  constructor(code: ErrorCode, exitCode: ExitCodeValue, message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
    this.path = details.path;
    this.remediation = details.remediation;
    this.stage = details.stage ?? "run";
    this.data = details.data ?? {};
  }
}

/** Exit 2: the operator asked for something that cannot be (bad flag, unknown context or snapshot). */
export class UsageError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.usage, message, details);
  }
}

/** Exit 3: a checksum is missing or wrong, an archive is corrupt, a chain link is broken. */
export class IntegrityError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.integrity, message, details);
  }
}

/** Exit 4: refused because going on could leak a secret or write where it must not. */
export class SafetyError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.safety, message, details);
  }
}

/** Exit 5: the restored state does not pass post-restore validation. */
export class ValidationError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.validation, message, details);
  }
}

/** Exit 6: another run holds the context's lock. */
export class BusyError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.busy, message, details);
  }
}

/**
 * Exit 10: the machine refused, not paas-backup: a file it may not read or write (EACCES, EPERM),
 * a full filesystem (ENOSPC), a read-only one (EROFS). The message names the file, its owner or
 * the filesystem, so the operator can fix the environment; exit 1 stays for bugs.
 */
export class EnvironmentError extends PaasBackupError {
  constructor(code: ErrorCode, message: string, details: ErrorDetails) {
    super(code, ExitCode.environment, message, details);
  }
}

/**
 * The errno errors the machine raises, named (exit 10), for callers with no host to ask (core,
 * tick's per-context outcomes): the file from the error, what it means and what to do. The CLI's
 * own mapping (host/environment.ts) adds the owner and the free space where it can; both agree
 * on the codes. null for anything else (a bug stays exit 1).
 */
export function environmentErrorOf(err: unknown, where?: string): EnvironmentError | null {
  const seen = new Set<unknown>();
  for (
    let e = err as
      { code?: unknown; path?: unknown; dest?: unknown; syscall?: unknown; cause?: unknown } | undefined;
    e && typeof e === "object" && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    if (e instanceof PaasBackupError) return null;
    const path = typeof e.path === "string" ? e.path : (where ?? null);
    const dest = typeof e.dest === "string" ? e.dest : null;
    const op = typeof e.syscall === "string" ? e.syscall : "access";
    const at = path ?? "(unknown path)";
    const named = (code: ErrorCode, message: string, remediation: string) =>
      new EnvironmentError(code, message, {
        ...(path ? { path } : {}),
        remediation,
        stage: "filesystem",
        data: { errno: e!.code },
        cause: err as Error,
      });
    switch (e.code) {
      case "EACCES":
      case "EPERM":
        return named(
          "PAAS_BACKUP_PERMISSION_DENIED",
          `permission denied: ${op} ${at}`,
          "Run paas-backup as the user that owns the si paas state (the one si runs as), or fix the file's owner or mode; nothing was changed.",
        );
      case "ENOSPC":
      case "EDQUOT":
        return named(
          "PAAS_BACKUP_NO_SPACE",
          `no space left on the filesystem holding ${at}`,
          "Free space on that filesystem (old snapshots: `paas-backup prune`) or point --backup-root / --state-root at a larger one, then run again.",
        );
      case "EROFS":
        return named(
          "PAAS_BACKUP_READ_ONLY",
          `the filesystem holding ${at} is read-only`,
          "Remount it read-write or point --backup-root elsewhere.",
        );
      case "ENOTDIR":
        return named(
          "PAAS_BACKUP_NOT_A_FOLDER",
          `${at} (or a folder above it) is a file where paas-backup needs a folder`,
          "Move that file out of the way (look at it first: it is not paas-backup's), then run again.",
        );
      case "EXDEV":
        return named(
          "PAAS_BACKUP_CROSS_DEVICE",
          `cannot move ${at}${dest ? ` to ${dest}` : ""}: they are on different filesystems (EXDEV)`,
          "Keep <state_root>/contexts/ and <state_root>/.paas-backup/ on one filesystem (no mount between them); nothing was moved.",
        );
      case "EBUSY":
        return named(
          "PAAS_BACKUP_MOUNT_BUSY",
          `cannot move ${at}: it is busy (EBUSY), e.g. a mount point`,
          "A context that is a mount point (a bind mount) cannot be swapped: unmount it, or restore with --path into it; nothing was changed.",
        );
      case "ENAMETOOLONG":
        return named(
          "PAAS_BACKUP_NAME_TOO_LONG",
          `a name or path is longer than the filesystem allows: ${at}`,
          "Shorten the name (a context name is at most 200 bytes) or the root's path.",
        );
      case "EIO":
        return named(
          "PAAS_BACKUP_IO_ERROR",
          `the disk reported an I/O error on ${at}`,
          "Check the disk (dmesg, SMART) and the filesystem; then run again or restore from the offsite copy.",
        );
    }
  }
  return null;
}

/**
 * Run `work`; an errno error the machine raised (EIO, ENOSPC, EACCES…) comes out typed and named
 * (environmentErrorOf: exit 10, the path, what to do), anything else as it was. Core's entry
 * points run in it, so an SDK caller never meets a raw errno error, which the CLI would otherwise
 * be the only one to name (issue 20: the fleet simulation found raw EIO escaping as exit 1).
 */
export async function namingEnvironmentErrors<T>(
  work: () => Promise<T>,
  /** the folder named when the error names no file (a write stream's ENOSPC) */
  where?: string,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw environmentErrorOf(err, where) ?? err;
  }
}

/** A missing file (ENOENT from a FileSystem) or a missing object (ObjectNotFoundError from any storage driver). */
export function isNotFound(err: unknown): boolean {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === "ENOENT" || code === "PAAS_BACKUP_OBJECT_NOT_FOUND";
}

export function errorCodeOf(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string"
    ? (err as { code: string }).code
    : undefined;
}
