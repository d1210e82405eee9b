import { ExitCode, verifySnapshots } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { requireContext, resolveDecryptor, type KeyFlags } from "./common.js";
import { parseExpansion } from "./restore.js";

export async function verifyCommand(rt: Runtime, flags: KeyFlags & { context?: string; snapshot?: string; all?: boolean; deep?: boolean; maxExpansion?: string }): Promise<number> {
  const context = requireContext(flags.context);
  const decryptor = await resolveDecryptor(rt, flags);
  const results = await verifySnapshots({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    context,
    snapshot: flags.all ? "all" : (flags.snapshot ?? "latest"),
    deep: flags.deep === true,
    ...(decryptor ? { decryptor } : {}),
    ...(typeof process.getuid === "function" ? { currentUid: process.getuid() } : {}),
    ...(flags.maxExpansion ? { maxExpansion: parseExpansion(flags.maxExpansion) } : {}),
  });
  const ok = results.every((r) => r.ok);
  if (rt.json) printEnvelope(rt, { ok, command: "verify", context, mode: "live", count: results.length, data: results });
  else {
    rt.write(
      table([
        ["ID", "KIND", "CHECKSUM", "CHAIN", "DEEP", "RESULT"],
        ...results.map((r) => [
          r.id,
          r.kind,
          r.checksum,
          r.chainOk ? "ok" : (r.chainProblem ?? "broken"),
          r.deep ? (r.deep.ok ? `ok (${r.deep.files} files)` : `FAILED: ${r.deep.error?.message}`) : "-",
          r.ok ? "ok" : ["FAILED", ...r.access].join("; "),
        ]),
      ]),
    );
  }
  if (ok) return ExitCode.ok;
  // Integrity problems outrank safety ones: exit 3 for a checksum, chain or content problem; 4 for a
  // hostile archive, a missing or wrong identity, or loose permissions alone.
  if (results.some((r) => r.checksum !== "verified" || !r.chainOk || (r.deep?.error && r.deep.error.exitCode === ExitCode.integrity))) return ExitCode.integrity;
  return ExitCode.safety;
}
