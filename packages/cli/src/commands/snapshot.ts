import { allowRepoStateFrom, createSnapshot, withContextLock, type SnapshotKind, UsageError, type SnapshotResult, ExitCode, type SnapshotRedaction } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { humanBytes, keyValues, printEnvelope, progressBar } from "../output.js";
import { lockOwner, parseInclude, requireContext, resolveEncryptor, type KeyFlags } from "./common.js";
import { assertBackupLocation } from "./guard.js";

export interface SnapshotFlags extends KeyFlags {
  context?: string;
  kind?: string;
  include?: string;
}

export async function takeSnapshot(rt: Runtime, context: string, kind: SnapshotKind, flags: SnapshotFlags, command: string): Promise<SnapshotResult> {
  await assertBackupLocation(rt);
  const encryptor = await resolveEncryptor(rt, flags);
  const bar = progressBar(rt, `snapshot ${context}`);
  try {
    return await withContextLock(
      { fs: rt.fs, backupRoot: rt.backupRoot, context, owner: lockOwner(command), clock: rt.clock, timeoutMs: rt.config.lockTimeoutSeconds * 1000 },
      () =>
        createSnapshot({
          fs: rt.fs,
          stateRoot: rt.stateRoot,
          backupRoot: rt.backupRoot,
          context,
          clock: rt.clock,
          kind,
          include: parseInclude(flags.include, rt.config.include),
          ...(encryptor ? { encryptor } : {}),
          insecurePlaintext: flags.insecurePlaintext === true,
          secretAllow: rt.config.secretAllow,
          allowRepoState: allowRepoStateFrom(rt.env),
          secretAcknowledged: rt.config.secretAcknowledged,
          onProgress: (p) => bar.update(p.doneBytes, p.totalBytes),
        }),
    );
  } finally {
    bar.done();
  }
}

export async function snapshotCommand(rt: Runtime, flags: SnapshotFlags): Promise<number> {
  const context = requireContext(flags.context);
  const kind = (flags.kind ?? "full") as SnapshotKind;
  if (kind !== "full" && kind !== "incremental") {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `--kind ${JSON.stringify(flags.kind)} is not full or incremental`, {
      remediation: "Use --kind full (the default) or --kind incremental.",
      stage: "arguments",
    });
  }
  const result = await takeSnapshot(rt, context, kind, flags, "snapshot");
  const unacknowledged = result.redactions.filter((r) => !r.acknowledged);
  if (rt.json) {
    printEnvelope(rt, { ok: true, command: "snapshot", context, mode: "live", count: 1, data: [result] });
  } else {
    rt.write(
      keyValues([
        ["snapshot", result.id],
        ["kind", result.kind + (result.promotedToFull ? ` (incremental asked: ${result.promotedToFull})` : "")],
        ["parent", result.parent?.id],
        ["files", result.files],
        ["stored", humanBytes(result.storedBytes)],
        ["artifact", `${result.artifact} (${humanBytes(result.bytes)}${result.encrypted ? ", age-encrypted" : ", NOT encrypted"})`],
        ["sha256", result.sha256],
        ["absent", result.absent.join(", ")],
        ["excluded", result.excluded.map((e) => e.path).join(", ")],
        ["skipped", result.skipped.map((e) => `${e.path} (${e.reason})`).join(", ")],
        ["warnings", result.warnings.map((e) => `${e.path}: ${e.reason}`).join("; ")],
        ["redacted", result.redactions.map((r) => `${r.path}:${r.line} (${r.rule})${r.acknowledged ? " acknowledged" : ""}`).join(", ")],
      ]),
    );
  }
  if (unacknowledged.length === 0) return ExitCode.ok;
  process.stderr.write(redactionNotice(unacknowledged));
  return ExitCode.redacted;
}

/** Exit 9's message: what was redacted (never the value) and what the operator does about it. */
export function redactionNotice(redactions: readonly SnapshotRedaction[]): string {
  const list = redactions.slice(0, 10).map((r) => `${r.path}:${r.line} (${r.rule})`);
  return (
    `paas-backup: snapshot taken with redactions: rotate the leaked credential (${list.join(", ")}${redactions.length > 10 ? ` and ${redactions.length - 10} more` : ""}).\n` +
    `  The stored copy holds <redacted> in its place. Once rotated, acknowledge each finding in the config file (secretAcknowledged: [{"path", "line", "rule"}]) so later runs exit 0; a false positive goes in secretAllow.\n`
  );
}
