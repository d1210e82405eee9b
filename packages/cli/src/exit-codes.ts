import { ExitCode } from "@paas-backup/core/errors";

export type ExitName = keyof typeof ExitCode;

/**
 * The one exit-code table: --help, the README and the contract test all read it. Keyed by core's
 * ExitCode, so a code added there does not compile until it is described here.
 */
export const EXIT_MEANING: Record<ExitName, string> = {
  ok: "ok",
  unexpected: "a bug in paas-backup, nothing else: please report it with the output",
  usage:
    "bad input: unknown or malformed flag, config file error (a bad value is named by its key, e.g. recipients[1]), an identity file that holds no valid age identity (PAAS_BACKUP_BAD_IDENTITY), bad context name (e.g. longer than 200 UTF-8 bytes), unknown context or snapshot, missing --ticket, a --doctor-cmd that cannot be run (PAAS_BACKUP_DOCTOR_NOT_RUNNABLE), a --path the snapshot does not hold (PAAS_BACKUP_PATH_NOT_IN_SNAPSHOT), restore --from-offsite of a snapshot several other backup roots at the target hold (PAAS_BACKUP_OFFSITE_ROOT_AMBIGUOUS: --offsite-root picks one), restore not confirmed or aborted at the prompt (nothing changed), a command that does not work with an s3:// backup root (PAAS_BACKUP_REMOTE_ROOT_UNSUPPORTED), a bucket and prefix that hold no repository yet (PAAS_BACKUP_NOT_A_REPOSITORY)",
  integrity:
    "integrity: checksum missing, malformed or mismatched, corrupt archive (damaged bytes whichever layer finds them, gzip, tar or age, even under a checksum file rewritten to match; an .age file that is not age), broken incremental chain, content not as its manifest says; restore names the newest older snapshot that verifies",
  safety:
    "refused for safety: hostile archive entry (including folder entries no manifest file implies, any vault/ entry, paths deeper than 64 levels or longer than 4096 bytes), unsafe location, no encryption recipient (also for a plaintext snapshot offsite push would send: PAAS_BACKUP_OFFSITE_NO_RECIPIENT), a missing identity or a valid one that opens nothing (PAAS_BACKUP_WRONG_IDENTITY; every command that decrypts), a manifest that disagrees with intact bytes (PAAS_BACKUP_MANIFEST_DISAGREES, e.g. a gzip member index that does not fit the artifact), a snapshot whose signature does not match (PAAS_BACKUP_BAD_SIGNATURE), signed by a key outside the allowed signers (PAAS_BACKUP_UNTRUSTED_SIGNER) or unsigned though dated after the repository began signing (PAAS_BACKUP_UNSIGNED; restore --allow-unsigned accepts it), an s3:// backup root whose server ignores create-only writes (PAAS_BACKUP_NO_CONDITIONAL_WRITES, e.g. a versioned bucket on Ceph RGW 16)",
  validation:
    "validation failed: post-restore or drill checks fail, or anything failed after the swap (PAAS_BACKUP_RESTORE_UNFINISHED; the context is left blocked and the message names rollback); restore --dry-run when the staged state fails a doctor; doctor and unblock when checks fail",
  busy: "busy: another run holds the context's lock or, with an s3:// backup root, its lease (its holder is printed), a run that paused past its lease and may no longer commit (PAAS_BACKUP_LEASE_LOST), or a state file kept changing while read",
  partial: "some contexts failed in a multi-context run (--all-contexts)",
  overdue: "a mandatory restore drill is overdue (drill status)",
  redacted:
    "snapshot taken with redactions: rotate the leaked credential (snapshot, tick when nothing worse happened); the snapshot is complete, the secret values are stored as <redacted>; acknowledge the findings in the config file (secretAcknowledged) once rotated",
  environment:
    "the environment refused: permission denied (the file and its owner are named), no space left (the filesystem and the space needed), read-only filesystem, a file where a folder belongs, a rename across filesystems or of a mount point, an offsite server or the s3:// backup root's server that does not answer or refuses, e.g. a wrong --root-endpoint or credentials (PAAS_BACKUP_STORAGE_FAILED names the target and what to check; never a credential)",
  attention:
    "status: at least one context needs attention (no full in 26 h, a mandatory drill overdue, blocked, an offsite copy missing or damaged, a broken chain, the last tick failed)",
};

/** The `error.code` a failure envelope carries when a command reports failed checks rather than throwing. */
export const EXIT_ERROR_CODE: Record<ExitName, string> = {
  ok: "",
  unexpected: "PAAS_BACKUP_UNEXPECTED",
  usage: "PAAS_BACKUP_INVALID_ARGUMENT",
  integrity: "PAAS_BACKUP_INTEGRITY_FAILED",
  safety: "PAAS_BACKUP_REFUSED",
  validation: "PAAS_BACKUP_VALIDATION_FAILED",
  busy: "PAAS_BACKUP_BUSY",
  partial: "PAAS_BACKUP_PARTIAL_FAILURE",
  overdue: "PAAS_BACKUP_DRILL_OVERDUE",
  redacted: "PAAS_BACKUP_REDACTED",
  environment: "PAAS_BACKUP_ENVIRONMENT",
  attention: "PAAS_BACKUP_ATTENTION",
};

export function exitName(code: number): ExitName | undefined {
  return (Object.keys(ExitCode) as ExitName[]).find((k) => ExitCode[k] === code);
}

export function exitTable(
  names: readonly ExitName[] = Object.keys(ExitCode) as ExitName[],
): [number, string][] {
  return names.map((n) => [ExitCode[n], EXIT_MEANING[n]] as [number, string]).sort((a, b) => a[0] - b[0]);
}
