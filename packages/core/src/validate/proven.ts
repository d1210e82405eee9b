import type { Manifest } from "../manifest/schema.js";
import { SCANNER_RULES_VERSION, type SecretAllowance } from "../policy/secrets.js";

/** A file whose bytes the snapshot's secret scan already read: its path, size and sha256. */
export type ScannedFiles = ReadonlyMap<string, { size: number; sha256: string }>;

/**
 * The restored files that need no second secret scan: every link of the chain was written by a
 * scanner with today's rules (manifest `scannerRules`), the file came back with the sha256 the
 * newest manifest records for it, and no allowance that excused a finding in it then is missing
 * now. Hand-made archives (no manifest) and older snapshots prove nothing: scanned in full.
 */
export function filesScannedAtSnapshot(
  chain: readonly { manifest: Manifest | null }[],
  restored: readonly { path: string; size: number; sha256: string }[],
  allowNow: readonly SecretAllowance[] = [],
): ScannedFiles {
  const proven = new Map<string, { size: number; sha256: string }>();
  const newest = chain[chain.length - 1]?.manifest;
  if (!newest || chain.some((link) => link.manifest?.scannerRules !== SCANNER_RULES_VERSION)) return proven;
  const recorded = new Map(newest.files.map((f) => [f.path, f]));
  const allowedThen = chain.flatMap((link) => link.manifest?.scannerAllow ?? []);
  for (const file of restored) {
    const entry = recorded.get(file.path);
    if (!entry || entry.sha256 !== file.sha256 || entry.size !== file.size) continue;
    const excusedThen = allowedThen.filter((a) => a.path === file.path);
    if (
      excusedThen.some(
        (a) => !allowNow.some((n) => n.path === a.path && (n.rule === a.rule || n.rule === "*")),
      )
    )
      continue;
    proven.set(file.path, { size: file.size, sha256: file.sha256 });
  }
  return proven;
}
