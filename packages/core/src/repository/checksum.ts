import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { hashFile } from "../util/hash.js";
import { basename } from "../util/paths.js";

/** sha256sum's line format: "<hex>  <name>" (text mode) or "<hex> *<name>" (binary mode). */
export function formatChecksumLine(sha256: string, artifactName: string): string {
  return `${sha256}  ${artifactName}\n`;
}

export function parseChecksumFile(text: string, artifactName: string): string | null {
  for (const line of text.split("\n")) {
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line.trim());
    // The reference flow writes the artifact's absolute path: compare by basename.
    if (m && basename(m[2]!.trim()) === artifactName) return m[1]!.toLowerCase();
  }
  return null;
}

export type ChecksumState = "verified" | "missing-checksum" | "mismatch";

export interface ChecksumCheck {
  state: ChecksumState;
  expected: string | null;
  actual: string;
  bytes: number;
}

/** Stream the artifact through sha256 and compare with its checksum file. */
export async function checkArtifactChecksum(fs: FileSystem, artifactPath: string, checksumPath: string): Promise<ChecksumCheck> {
  let expected: string | null = null;
  let checksumPresent = true;
  try {
    const text = Buffer.from(await fs.readFile(checksumPath)).toString("utf8");
    expected = parseChecksumFile(text, basename(artifactPath));
  } catch (err) {
    if (!isNotFound(err)) throw err;
    checksumPresent = false;
  }
  const { sha256: actual, bytes } = await hashFile(fs, artifactPath);
  if (!checksumPresent) return { state: "missing-checksum", expected: null, actual, bytes };
  return { state: expected === actual ? "verified" : "mismatch", expected, actual, bytes };
}
