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

export interface ErrorDetails {
  path?: string;
  remediation: string;
  stage?: string;
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class PaasBackupError extends Error {
  readonly code: string;
  readonly exitCode: ExitCodeValue;
  readonly path: string | undefined;
  readonly remediation: string;
  readonly stage: string;
  readonly data: Record<string, unknown>;
  constructor(code: string, exitCode: ExitCodeValue, message: string, details: ErrorDetails) {
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
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.usage, message, details);
  }
}

/** Exit 3: a checksum is missing or wrong, an archive is corrupt, a chain link is broken. */
export class IntegrityError extends PaasBackupError {
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.integrity, message, details);
  }
}

/** Exit 4: refused because going on could leak a secret or write where it must not. */
export class SafetyError extends PaasBackupError {
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.safety, message, details);
  }
}

/** Exit 5: the restored state does not pass post-restore validation. */
export class ValidationError extends PaasBackupError {
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.validation, message, details);
  }
}

/** Exit 6: another run holds the context's lock. */
export class BusyError extends PaasBackupError {
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.busy, message, details);
  }
}

/**
 * Exit 10: the machine refused, not paas-backup: a file it may not read or write (EACCES, EPERM),
 * a full filesystem (ENOSPC), a read-only one (EROFS). The message names the file, its owner or
 * the filesystem, so the operator can fix the environment; exit 1 stays for bugs.
 */
export class EnvironmentError extends PaasBackupError {
  constructor(code: string, message: string, details: ErrorDetails) {
    super(code, ExitCode.environment, message, details);
  }
}

/** A missing file (ENOENT from a FileSystem) or a missing object (ObjectNotFoundError from any storage driver). */
export function isNotFound(err: unknown): boolean {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === "ENOENT" || code === "PAAS_BACKUP_OBJECT_NOT_FOUND";
}

export function errorCodeOf(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string"
    ? ((err as { code: string }).code)
    : undefined;
}
