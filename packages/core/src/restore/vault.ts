import { createHash } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { join } from "../util/paths.js";

/**
 * Policy §6.3 and §8.3: the vault is confirmed separately and never restored. This reports what
 * the live vault holds (names only, never values) and whether the restored config still points
 * at it; a mismatch is a finding for the operator, never fixed by copying secrets.
 */
export interface VaultReport {
  present: boolean;
  /** names of the files in vault/, and the names of the keys in secrets.env */
  files: string[];
  keys: string[];
  vaultFile: string;
  vaultFileExists: boolean;
  recipients: number;
  fingerprint: string | null;
  trust: "trusted" | "untrusted" | "no-trust-store" | "no-recipients";
  findings: string[];
}

export interface TrustStore {
  entries: { repo_root?: string; file: string; fingerprint: string; trusted_at?: string }[];
}

export function recipientFingerprint(recipients: readonly string[]): string {
  const lines = [...new Set(recipients.map((r) => r.trim()).filter(Boolean))].sort();
  return createHash("sha256")
    .update(lines.map((l) => `${l}\n`).join(""))
    .digest("hex");
}

export async function inspectVault(
  fs: FileSystem,
  contextPath: string,
  restoredConfig: Record<string, unknown> | null,
  trustStore: TrustStore | null,
): Promise<VaultReport> {
  const vaultDir = join(contextPath, "vault");
  const configured =
    typeof restoredConfig?.vault_file === "string" && restoredConfig.vault_file
      ? (restoredConfig.vault_file as string)
      : "";
  const vaultFile = configured
    ? configured.startsWith("/")
      ? configured
      : join(contextPath, configured)
    : join(vaultDir, "secrets.env");
  const report: VaultReport = {
    present: false,
    files: [],
    keys: [],
    vaultFile,
    vaultFileExists: false,
    recipients: 0,
    fingerprint: null,
    trust: "no-recipients",
    findings: [],
  };
  try {
    report.files = (await fs.readdir(vaultDir)).map((e) => e.name).sort();
    report.present = true;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let text = "";
  // What the live vault holds: the configured file, or si's default when the config points elsewhere.
  for (const candidate of [vaultFile, join(vaultDir, "secrets.env")]) {
    try {
      text = Buffer.from(await fs.readFile(candidate)).toString("utf8");
      if (candidate === vaultFile) report.vaultFileExists = true;
      break;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  const recipients: string[] = [];
  for (const line of text.split("\n")) {
    const r = /^#\s*si-vault:recipient\s+(\S+)/.exec(line.trim());
    if (r) recipients.push(r[1]!);
    const k = /^([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line.trim());
    if (k) report.keys.push(k[1]!);
  }
  report.recipients = new Set(recipients).size;
  if (report.recipients > 0) {
    report.fingerprint = recipientFingerprint(recipients);
    if (!trustStore) report.trust = "no-trust-store";
    else
      report.trust = trustStore.entries.some(
        (e) => e.file === vaultFile && e.fingerprint === report.fingerprint,
      )
        ? "trusted"
        : "untrusted";
  }
  if (!report.present && !configured)
    report.findings.push(
      "the live context has no vault/ folder: reconcile secrets with the vault backup policy before deploying",
    );
  if (!report.vaultFileExists)
    report.findings.push(
      `the restored config.json points at vault file ${vaultFile}, which does not exist: reconcile with the vault backup policy; do not copy plaintext secrets into the state root`,
    );
  if (report.trust === "untrusted")
    report.findings.push(
      "vault recipients do not match the trust store entry: confirm recipient state with `si vault trust` before secret-mutating commands",
    );
  return report;
}
