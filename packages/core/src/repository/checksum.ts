import { createHash } from "node:crypto";
import { basename } from "../util/paths.js";
import type { SnapshotRef } from "./repository.js";
import { readSmallObject } from "./repository.js";

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

/** malformed-checksum: the file is there but names no sha256 for this artifact (empty, truncated, another file's) */
export type ChecksumState = "verified" | "missing-checksum" | "malformed-checksum" | "mismatch";

export interface ChecksumCheck {
  state: ChecksumState;
  expected: string | null;
  actual: string;
  bytes: number;
}

/** The sha256 its checksum file names for a snapshot, or null when there is none. */
/** what a checksum check needs of a snapshot (a damaged one has these too) */
export type ChecksummedArtifact = Pick<
  SnapshotRef,
  "checksum" | "storage" | "checksumKey" | "artifactKey" | "artifactName"
>;

export async function expectedChecksum(snapshot: ChecksummedArtifact): Promise<string | null> {
  if (!snapshot.checksum) return null;
  return parseChecksumFile(
    await readSmallObject(snapshot.storage, snapshot.checksumKey, 1024 * 1024),
    snapshot.artifactName,
  );
}

/** Stream the artifact through sha256 (memory stays flat) and compare with its checksum file. */
export async function checkSnapshotChecksum(snapshot: ChecksummedArtifact): Promise<ChecksumCheck> {
  const expected = await expectedChecksum(snapshot);
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of await snapshot.storage.get(snapshot.artifactKey)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  const actual = hash.digest("hex");
  if (!snapshot.checksum) return { state: "missing-checksum", expected: null, actual, bytes };
  if (expected === null) return { state: "malformed-checksum", expected: null, actual, bytes };
  return { state: expected === actual ? "verified" : "mismatch", expected, actual, bytes };
}
