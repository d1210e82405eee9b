import { allowRepoStateFrom, contextDir } from "@paas-backup/core/policy";
import {
  createSnapshot,
  planSnapshotContents,
  type SnapshotKind,
  type SnapshotResult,
} from "@paas-backup/core/snapshot";
import { withContext } from "@paas-backup/core/context";
import { resolveSigner } from "../options/signing.js";
import { UsageError, ExitCode } from "@paas-backup/core/errors";
import type { Lease, ObjectStorage } from "@paas-backup/core/repository";
import type { Runtime } from "../runtime.js";
import { redactionNotice } from "../render/redactions.js";
import { environmentError } from "../host/environment.js";
import { humanBytes, keyValues, table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { progressBar } from "../render/progress.js";
import { sessionOptions } from "../options/lock.js";
import { parseInclude } from "../options/include.js";
import { requireContext, requireContextDirExists } from "../options/context.js";
import { resolveEncryptor, type KeyFlags } from "../options/keys.js";
import { assertBackupLocation } from "../options/locations.js";

export interface SnapshotFlags extends KeyFlags {
  context?: string;
  kind?: string;
  include?: string;
  dryRun?: boolean;
  tag?: string[];
  note?: string;
}

/**
 * snapshot --dry-run: every path the snapshot would take, leave out or skip, with the rule that
 * decided it; reads only names and sizes (no content, so no secret), writes nothing.
 */
async function dryRun(rt: Runtime, context: string, flags: SnapshotFlags): Promise<number> {
  const include = parseInclude(flags.include, rt.config.include);
  const dir = contextDir(rt.stateRoot, context);
  requireContextDirExists(dir, context);
  const plan = await planSnapshotContents(rt.fs, dir, include);
  // core's plan names the rule that decided each path: `rule` keeps its words, `ruleId` the stable id
  const rows = plan.decisions.map((d) => ({
    path: d.path,
    action: d.action,
    rule: d.reason,
    ruleId: d.rule,
    size: d.size,
  }));
  if (rt.json) printEnvelope(rt, { ok: true, context, mode: "dry-run", data: rows, include });
  else {
    rt.write(
      table([
        ["ACTION", "PATH", "SIZE"],
        ...rows.map((r) => [r.action, r.path, r.size === null ? "-" : humanBytes(r.size)]),
      ]),
    );
    rt.write("\nrules:\n");
    for (const r of rows) rt.write(`  ${r.path}: ${r.rule}\n`);
    rt.write(`dry run: nothing was written (${plan.files.length} files would be read)\n`);
  }
  return 0;
}

async function plannedBytes(rt: Runtime, context: string, flags: SnapshotFlags): Promise<number> {
  const plan = await planSnapshotContents(
    rt.fs,
    contextDir(rt.stateRoot, context),
    parseInclude(flags.include, rt.config.include),
  );
  return plan.files.reduce((n, f) => n + f.stat.size, 0);
}

export async function takeSnapshot(
  rt: Runtime,
  context: string,
  kind: SnapshotKind,
  flags: SnapshotFlags,
  command: string,
): Promise<SnapshotResult> {
  await assertBackupLocation(rt);
  // Before the lock: a context that does not exist must leave nothing in the backup root.
  requireContextDirExists(contextDir(rt.stateRoot, context), context);
  const encryptor = await resolveEncryptor(rt, flags);
  const signer = await resolveSigner(rt);
  const bar = progressBar(rt, `snapshot ${context}`);
  try {
    // An s3:// root: under the context's lease in the bucket, written where the committed
    // snapshots are listed, and committed through the lease (a run that paused past it is refused).
    const shared = rt.shared ? await import("../ops/shared.js") : null;
    const underLease = <T>(work: (repository?: ObjectStorage, lease?: Lease) => Promise<T>) =>
      shared
        ? shared.withLease(rt, `context/${context}`, command, async (lease) =>
            work(await shared.committedView(rt.shared!, context), lease),
          )
        : work();
    const result = await withContext(
      { ...sessionOptions(rt, context, command), guardStateRoot: true },
      (session) =>
        underLease(async (repository, lease) => {
          const taken = await createSnapshot({
            session,
            fs: rt.fs,
            stateRoot: rt.stateRoot,
            backupRoot: rt.backupRoot,
            ...(repository ? { repository } : {}),
            // an s3:// root keeps the verified-chain cache in the host's cache, not the bucket
            ...(shared ? { chainCache: shared.hostChainCache(rt) } : {}),
            context,
            clock: rt.clock,
            kind,
            include: parseInclude(flags.include, rt.config.include),
            ...(encryptor ? { encryptor } : {}),
            ...(signer ? { signer } : {}),
            insecurePlaintext: flags.insecurePlaintext === true,
            secretAllow: rt.config.secretAllow,
            allowRepoState: allowRepoStateFrom(rt.env),
            secretAcknowledged: rt.config.secretAcknowledged,
            memberCache: true,
            ...(flags.tag?.length ? { tags: flags.tag } : {}),
            ...(flags.note ? { note: flags.note } : {}),
            onProgress: (p) => bar.update(p.doneBytes, p.totalBytes),
          });
          if (shared && lease) await shared.commitSnapshot(rt, lease, taken);
          return taken;
        }),
    );
    bar.done(true);
    return result;
  } catch (err) {
    // A full disk names the filesystem, its free space and what this snapshot needs.
    const env = environmentError(err, {
      path: rt.shared ? rt.shared.cacheDir : rt.backupRoot,
      needed: await plannedBytes(rt, context, flags).catch(() => undefined),
    });
    throw env ?? err;
  } finally {
    bar.done();
  }
}

function tagsOf(flags: SnapshotFlags): string[] {
  return [...new Set(flags.tag ?? [])];
}

export async function snapshotCommand(rt: Runtime, flags: SnapshotFlags): Promise<number> {
  const context = requireContext(flags.context);
  const kind = (flags.kind ?? "full") as SnapshotKind;
  if (kind !== "full" && kind !== "incremental") {
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `--kind ${JSON.stringify(flags.kind)} is not full or incremental`,
      {
        remediation: "Use --kind full (the default) or --kind incremental.",
        stage: "arguments",
      },
    );
  }
  for (const tag of flags.tag ?? [])
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(tag))
      throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `--tag ${JSON.stringify(tag)} is not a tag`, {
        remediation:
          "A tag is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. pre-upgrade).",
        stage: "arguments",
      });
  if (flags.dryRun) return dryRun(rt, context, flags);
  const result = await takeSnapshot(rt, context, kind, flags, "snapshot");
  const unacknowledged = result.redactions.filter((r) => !r.acknowledged);
  if (rt.json) {
    // A full has `parent: null`, so every snapshot has the same field set.
    const error = unacknowledged.length
      ? {
          code: "PAAS_BACKUP_REDACTED",
          stage: "scan",
          target: unacknowledged[0]!.path,
          message: redactionNotice(unacknowledged)
            .split("\n")[0]!
            .replace(/^paas-backup: /, ""),
          remediation:
            "Rotate the leaked credential; once rotated, acknowledge each finding in the config file (secretAcknowledged) so later runs exit 0; a false positive goes in secretAllow.",
        }
      : undefined;
    // The snapshot was taken (data[0]); exit 9 still makes the run a failure a script must look at.
    printEnvelope(rt, {
      ok: unacknowledged.length === 0,
      context,
      mode: "live",
      data: [{ ...result, parent: result.parent ?? null, tags: tagsOf(flags), note: flags.note ?? null }],
      ...(error ? { error } : {}),
    });
  } else {
    rt.write(
      keyValues([
        ["snapshot", result.id],
        [
          "kind",
          result.kind + (result.promotedToFull ? ` (incremental asked: ${result.promotedToFull})` : ""),
        ],
        ["parent", result.parent?.id],
        ["tags", tagsOf(flags).join(", ")],
        ["note", flags.note],
        ["files", result.files],
        [
          "stored",
          `${humanBytes(result.storedBytes)} put in the archive${result.kind === "incremental" ? " (new bytes only)" : ""}${result.reusedBytes > 0 ? `, ${humanBytes(result.reusedBytes)} of it as gzip members copied from the last full` : ""}`,
        ],
        [
          "artifact",
          `${result.artifact} (${humanBytes(result.bytes)}${result.encrypted ? ", age-encrypted" : ", NOT encrypted"})`,
        ],
        ["sha256", result.sha256],
        ["absent", result.absent.join(", ")],
        ["excluded", result.excluded.map((e) => e.path).join(", ")],
        ["skipped", result.skipped.map((e) => `${e.path} (${e.reason})`).join(", ")],
        ["warnings", result.warnings.map((e) => `${e.path}: ${e.reason}`).join("; ")],
        [
          "redacted",
          result.redactions
            .map((r) => `${r.path}:${r.line} (${r.rule})${r.acknowledged ? " acknowledged" : ""}`)
            .join(", "),
        ],
      ]),
    );
  }
  if (unacknowledged.length === 0) return ExitCode.ok;
  process.stderr.write(redactionNotice(unacknowledged));
  return ExitCode.redacted;
}
