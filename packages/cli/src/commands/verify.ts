import { findFallback, verifySnapshots } from "@paas-backup/core/restore";
import { backupRootStorage, openRepository, type ObjectStorage } from "@paas-backup/core/repository";
import { resolveSignaturePolicy } from "../options/signing.js";
import type { Runtime } from "../runtime.js";
import { printEnvelope } from "../envelope.js";
import { table } from "../render/text.js";
import { requireContext, requireKnownContext } from "../options/context.js";
import { resolveDecryptor, type KeyFlags } from "../options/keys.js";

export async function verifyCommand(
  rt: Runtime,
  flags: KeyFlags & {
    context?: string;
    snapshot?: string;
    all?: boolean;
    deep?: boolean;
    maxExpansion?: number;
  },
): Promise<number> {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  const decryptor = await resolveDecryptor(rt, flags);
  // latest as restore resolves it: a snapshot from the future is passed over, and the warning says so
  const warnings: string[] = [];
  // An s3:// root: the snapshots committed in the bucket, read from there.
  const repository = rt.shared
    ? await (await import("../host/shared-root.js")).committedView(rt.shared, context)
    : undefined;
  const results = await verifySnapshots({
    clock: rt.clock,
    onWarning: (w) => {
      warnings.push(w);
      process.stderr.write(`warning: ${w}\n`);
    },
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    ...(repository ? { repository } : {}),
    context,
    snapshot: flags.all ? "all" : (flags.snapshot ?? "latest"),
    deep: flags.deep === true,
    ...(decryptor ? { decryptor } : {}),
    ...(typeof process.getuid === "function" ? { currentUid: process.getuid() } : {}),
    ...(flags.maxExpansion ? { maxExpansion: flags.maxExpansion } : {}),
    signatures: await resolveSignaturePolicy(rt, false),
  });
  const ok = results.every((r) => r.ok);
  const exitCode = ok ? 0 : failureExitCode(results);
  const failed = results.filter((r) => !r.ok);
  const first = failed[0];
  // Damaged bytes (exit 3): name the newest snapshot older than the first failure whose chain
  // verifies, as restore does, so the operator knows what to restore instead.
  const olderVerified =
    exitCode === 3 && first ? await newestVerifiedBefore(rt, context, first.id, repository) : null;
  const error = first ? failureOf(results, exitCode, olderVerified) : undefined;
  if (rt.json)
    printEnvelope(rt, {
      ok,
      command: "verify",
      context,
      mode: "live",
      count: results.length,
      data: results,
      ...(warnings.length ? { warnings } : {}),
      ...(error ? { error } : {}),
    });
  else rt.write(verifyTable(results));
  return exitCode;
}

type Verified = Awaited<ReturnType<typeof verifySnapshots>>[number];

/**
 * Integrity problems outrank safety ones: exit 3 for a checksum, chain or content problem; 4 for a
 * hostile archive, a missing or wrong identity, or loose permissions alone.
 */
function failureExitCode(results: Verified[]): 3 | 4 {
  return results.some(
    (r) => r.checksum !== "verified" || !r.chainOk || (r.deep?.error && r.deep.error.exitCode === 3),
  )
    ? 3
    : 4;
}

/**
 * The envelope's error: named after the first failed snapshot's first problem (checksum, chain,
 * then deep content or signature), its message listing every failure, its remediation naming the
 * older snapshot that verifies when there is one.
 */
function failureOf(results: Verified[], exitCode: number, olderVerified: string | null) {
  const failed = results.filter((r) => !r.ok);
  const first = failed[0]!;
  const restoreInstead = olderVerified
    ? ` The newest older snapshot that verifies is ${olderVerified}: restore it with --snapshot ${olderVerified}, or add --fallback.`
    : "";
  const deepError = failed.find((r) => r.deep?.error)?.deep?.error as
    { code?: string; message?: string; remediation?: string; stage?: string } | undefined;
  return {
    code:
      first.checksum === "malformed-checksum"
        ? "PAAS_BACKUP_CHECKSUM_MALFORMED"
        : first.checksum === "missing-checksum"
          ? "PAAS_BACKUP_CHECKSUM_MISSING"
          : first.checksum === "mismatch"
            ? "PAAS_BACKUP_CHECKSUM_MISMATCH"
            : !first.chainOk
              ? "PAAS_BACKUP_CHAIN_BROKEN"
              : (deepError?.code ??
                first.signature.refusal?.code ??
                (exitCode === 3 ? "PAAS_BACKUP_INTEGRITY_FAILED" : "PAAS_BACKUP_REFUSED")),
    stage:
      deepError?.stage ?? (first.checksum !== "verified" ? "checksum" : !first.chainOk ? "chain" : "verify"),
    target: first.id,
    message: `${failed.length} of ${results.length} snapshot(s) failed verification: ${failed.map((r) => `${r.id} (${r.checksum !== "verified" ? r.checksum : !r.chainOk ? (r.chainProblem ?? "chain broken") : (r.deep?.error?.message ?? r.signature.refusal?.message ?? r.access.join("; "))})`).join(", ")}`,
    remediation:
      (deepError?.remediation ??
        (first.checksum === "malformed-checksum"
          ? "The checksum file is empty or truncated: restore it from an offsite copy, or recreate it with `sha256sum` only if you trust the artifact."
          : "Do not restore a failed snapshot: restore an older verified one (restore --fallback) or fetch an offsite copy.")) +
      restoreInstead,
  };
}

/** One row per snapshot: each check's state, and what failed. */
function verifyTable(results: Verified[]): string {
  return table([
    ["ID", "KIND", "CHECKSUM", "CHAIN", "DEEP", "SIGNER", "RESULT"],
    ...results.map((r) => [
      r.id,
      r.kind,
      r.checksum,
      r.chainOk ? "ok" : (r.chainProblem ?? "broken"),
      r.deep ? (r.deep.ok ? `ok (${r.deep.files} files)` : `FAILED: ${r.deep.error?.message}`) : "-",
      r.signature.state === "signed" ? r.signature.principal : r.signature.state,
      r.ok
        ? "ok"
        : ["FAILED", ...r.access, ...(r.signature.refusal ? [r.signature.refusal.code] : [])].join("; "),
    ]),
  ]);
}

async function newestVerifiedBefore(
  rt: Runtime,
  context: string,
  id: string,
  repository: ObjectStorage | undefined,
): Promise<string | null> {
  const { snapshots } = await openRepository(repository ?? backupRootStorage(rt.fs, rt.backupRoot)).scan(
    context,
  );
  const failed = snapshots.find((s) => s.id === id);
  return failed ? ((await findFallback(snapshots, failed))?.id ?? null) : null;
}
