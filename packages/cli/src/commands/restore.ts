import { allowRepoStateFrom } from "@paas-backup/core/policy";
import {
  restoreSnapshot,
  type RestoreOptions,
  type RestorePlan,
  type RestoreResult,
} from "@paas-backup/core/restore";
import { backupRootStorage, chainOf, openRepository, type ObjectStorage } from "@paas-backup/core/repository";
import { UsageError, ValidationError } from "@paas-backup/core/errors";
import { withContext, type ContextSession } from "@paas-backup/core/context";
import { resolveRecordSigner, resolveSignaturePolicy } from "../options/signing.js";
import { resolveOperator, type Runtime } from "../runtime.js";
import { printEnvelope } from "../envelope.js";
import { progressBar } from "../render/progress.js";
import { describeRestore } from "../render/restore.js";
import { environmentError } from "../host/environment.js";
import { assertDoctorRunnable, externalDoctorRunner } from "../host/doctor.js";
import { confirmOnTty } from "../host/prompt.js";
import { loadTrustStore } from "../host/trust-store.js";
import { requireContext, requireKnownContext } from "../options/context.js";
import { resolveDecryptor, type KeyFlags } from "../options/keys.js";
import { sessionOptions } from "../options/lock.js";
import type { offsiteFetcher } from "../ops/offsite.js";

export interface RestoreFlags extends KeyFlags {
  context?: string;
  snapshot?: string;
  ticket?: string;
  operator?: string;
  yes?: boolean;
  fallback?: boolean;
  allowUnsigned?: boolean;
  dryRun?: boolean;
  doctorCmd?: string;
  fromOffsite?: string;
  maxExpansion?: number;
  /** set by --from-offsite: what was fetched, and a fallback if the operator allowed one */
  offsitePlan?: unknown;
  exact?: boolean;
  path?: string[];
}

/** restore as the CLI runs it: with --from-offsite's fetch first when asked. */
export async function restoreAction(
  rt: Runtime,
  flags: RestoreFlags & Record<string, unknown>,
): Promise<number> {
  // The offsite modules (the fetch, targets, the S3 driver's options) load only for --from-offsite:
  // a restore from the backup root starts without them.
  const fetch = flags.fromOffsite
    ? (await import("../ops/offsite.js")).offsiteFetcher(rt, flags as Parameters<typeof offsiteFetcher>[1])
    : undefined;
  return restoreCommand(rt, flags, fetch);
}

/**
 * Steps: check the flags → resolve the repository, keys, trust and signatures → size the progress
 * bar → in one context session: the offsite fetch, then core's restore (plan → verify → stage →
 * swap → validate → record) → hand the records to the bucket → report. On failure: the same
 * clean-up, and a full disk named with the space needed.
 */
export async function restoreCommand(
  rt: Runtime,
  flags: RestoreFlags,
  fetchFromOffsite?: (session: ContextSession) => Promise<void>,
): Promise<number> {
  const context = requireContext(flags.context);
  checkRestoreFlags(flags);
  // Checked before anything changes: a doctor that cannot run would only fail after the swap.
  if (flags.doctorCmd) assertDoctorRunnable(flags.doctorCmd, rt.env);
  if (!fetchFromOffsite) await requireKnownContext(rt, context);
  // An s3:// root: the snapshots committed in the bucket, read from there (nothing is downloaded to
  // keep). With --from-offsite the bucket is not read at all: the chain is fetched from the target
  // into this host's cache of the root, restored from there, and removed from the cache after.
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const repository =
    shared && !fetchFromOffsite ? await shared.committedView(rt.shared!, context) : undefined;
  const trust: RestoreTrust = {
    decryptor: await resolveDecryptor(rt, flags),
    trustStore: await loadTrustStore(rt),
    signatures: await resolveSignaturePolicy(rt, flags.allowUnsigned === true),
  };
  const bar = progressBar(rt, `restore ${context}`);
  const { total, needed } = await restoreScale(rt, repository, context, flags.snapshot ?? "latest");
  let done = 0;
  const ask = rt.stdinIsTTY && rt.stderrIsTTY && !flags.yes && !flags.dryRun && !rt.json;
  try {
    const signer = await resolveRecordSigner(rt);
    const signed = { ...sessionOptions(rt, context, "restore"), ...(signer ? { signer } : {}) };
    const result = await withContext(signed, async (session) => {
      // The offsite fetch writes into the backup root: in the same session as the restore.
      if (fetchFromOffsite) await fetchFromOffsite(session);
      return restoreSnapshot({
        ...restoreOptions(rt, flags, context, session, repository, trust),
        ...(signer ? { signer } : {}),
        ...(ask
          ? {
              confirm: (plan: RestorePlan) => {
                bar.done();
                return confirmOnTty(plan);
              },
            }
          : {}),
        onBytes: (n) => bar.update((done += n), total),
        ...(flags.maxExpansion ? { maxExpansion: flags.maxExpansion } : {}),
      });
    });
    bar.done(true);
    if (shared && fetchFromOffsite) await dropFetched(rt, context, flags.offsitePlan);
    // The incident record (and any event lines kept aside) belong to the bucket, not this host's cache.
    if (shared) {
      const moved = await shared.moveRecordsToBucket(rt, context);
      result.incidentFile = moved.get(result.incidentFile) ?? result.incidentFile;
    }
    reportRestore(rt, flags, context, result);
    // A dry run whose staged state fails a doctor says so by its exit code, as the real restore would.
    return result.ok ? 0 : 5;
  } catch (err) {
    bar.done();
    if (shared && fetchFromOffsite) await dropFetched(rt, context, flags.offsitePlan).catch(() => undefined);
    if (shared) await shared.moveRecordsToBucket(rt, context).catch(() => undefined);
    // A full state-root filesystem names itself and what the restore needs (the staged copy).
    const env = environmentError(err, { path: rt.stateRoot, ...(needed !== undefined ? { needed } : {}) });
    if (env) throw env;
    if (err instanceof ValidationError && err.data.result && !rt.json)
      describeRestore(rt, err.data.result as RestoreResult);
    throw err;
  }
}

/** Flags that are wrong on their own or together: refused before anything is read. */
function checkRestoreFlags(flags: RestoreFlags): void {
  if (!flags.ticket?.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "restore needs --ticket <incident-id>", {
      remediation: "Open or name the incident first (policy §6.1), then pass its id with --ticket.",
      stage: "arguments",
    });
  }
  if (flags.exact && flags.path?.length) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "--exact and --path exclude each other", {
      remediation: "--exact replaces the whole context; --path restores only the files named. Pick one.",
      stage: "arguments",
    });
  }
}

/** The keys and trust a restore judges snapshots by, resolved before the session. */
interface RestoreTrust {
  decryptor: Awaited<ReturnType<typeof resolveDecryptor>>;
  trustStore: Awaited<ReturnType<typeof loadTrustStore>>;
  signatures: Awaited<ReturnType<typeof resolveSignaturePolicy>>;
}

/**
 * The bar's total (the bytes every link's archive holds, when every manifest says) and the space
 * needed (the restored files), read from the manifests. Any failure leaves them unknown: the
 * restore itself reports what is wrong.
 */
async function restoreScale(
  rt: Runtime,
  repository: ObjectStorage | undefined,
  context: string,
  snapshotName: string,
): Promise<{ total: number | null; needed: number | undefined }> {
  let total: number | null = null;
  let needed: number | undefined;
  try {
    const { snapshot, all } = await openRepository(
      repository ?? backupRootStorage(rt.fs, rt.backupRoot),
    ).find(context, snapshotName, rt.clock());
    const links = chainOf(snapshot, all).chain;
    if (links.every((l) => l.manifest)) total = links.reduce((n, l) => n + l.manifest!.totals.storedBytes, 0);
    needed = snapshot.manifest?.totals.bytes;
  } catch {
    total = null;
  }
  return { total, needed };
}

/** Core's restore options as the flags, the config and the environment set them. */
function restoreOptions(
  rt: Runtime,
  flags: RestoreFlags,
  context: string,
  session: ContextSession,
  repository: ObjectStorage | undefined,
  trust: RestoreTrust,
): RestoreOptions {
  const { decryptor, trustStore, signatures } = trust;
  return {
    session,
    fs: rt.fs,
    stateRoot: rt.stateRoot,
    backupRoot: rt.backupRoot,
    ...(repository ? { repository } : {}),
    context,
    snapshot: flags.snapshot ?? "latest",
    ticket: flags.ticket!,
    operator: resolveOperator(flags.operator, rt.env),
    clock: rt.clock,
    ...(decryptor ? { decryptor } : {}),
    fallback: flags.fallback === true,
    dryRun: flags.dryRun === true,
    secretAllow: rt.config.secretAllow,
    secretAcknowledged: rt.config.secretAcknowledged,
    allowRepoState: allowRepoStateFrom(rt.env),
    trustStore,
    signatures,
    ...(flags.doctorCmd
      ? {
          externalDoctor: externalDoctorRunner(flags.doctorCmd, rt.env),
          externalDoctorCommand: flags.doctorCmd,
        }
      : {}),
    exact: flags.exact === true,
    ...(flags.path?.length ? { paths: flags.path } : {}),
  };
}

/** The result as JSON, or as text with the plan's warnings on stderr (as ls and dump give them). */
function reportRestore(rt: Runtime, flags: RestoreFlags, context: string, result: RestoreResult): void {
  if (rt.json) {
    printEnvelope(rt, {
      ok: result.ok,
      context,
      mode: flags.dryRun ? "dry-run" : "live",
      ...(flags.offsitePlan ? { offsite: flags.offsitePlan } : {}),
      data: [result],
    });
    return;
  }
  // The warnings the plan carries (latest passed over a snapshot from the future, a state file
  // the snapshot recorded as not valid JSON).
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  describeRestore(rt, result);
}

/**
 * An s3:// root's cache keeps no snapshot: what restore --from-offsite fetched into it (the chain,
 * `<cache>/<context>/<id>.*`) is removed once the restore is done, however it ended.
 */
async function dropFetched(rt: Runtime, context: string, plan: unknown): Promise<void> {
  const fetched = (plan as { fetched?: string[] } | undefined)?.fetched ?? [];
  if (fetched.length === 0) return;
  const { readdir, rm } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const dir = join(rt.backupRoot, context);
  for (const name of await readdir(dir).catch(() => [] as string[]))
    if (fetched.some((id) => name.startsWith(`${id}.`))) await rm(join(dir, name), { force: true });
}
