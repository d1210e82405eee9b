import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { SafetyError, UsageError, isNotFound } from "../errors.js";
import type { ObjectStorage } from "../repository/storage.js";
import { readSmallObject, type SnapshotRef } from "../repository/repository.js";
import { parseAllowedSigners, verifySignature, type AllowedSigner, type SigningKey } from "./sshsig.js";

/**
 * Who made a snapshot (issue 24 §2). A checksum sidecar proves bytes, not authorship, and age does
 * not authenticate the sender: anyone holding a recipient can produce a valid-looking snapshot.
 * Each signing host signs the manifest and the checksum file (`<key>.sig`, SSHSIG); the checksum
 * file names the artifact's sha256, so one signature covers the artifact's bytes too. The
 * repository records when it began signing (`paas-backup.signing.json`): an unsigned snapshot
 * dated after that is refused, older ones and the policy's hand-made ones stay usable, marked
 * unsigned.
 */
export const SIGNING_RECORD_KEY = "paas-backup.signing.json";
export const SIGNATURE_SUFFIX = ".sig";

export interface SigningRecord {
  schema: "paas-backup/signing@1";
  /** the creation time of the first signed snapshot */
  since: string;
  firstSigner: string;
}

export function signatureKeys(s: Pick<SnapshotRef, "manifestKey" | "checksumKey">): {
  manifest: string;
  checksum: string;
} {
  return { manifest: `${s.manifestKey}${SIGNATURE_SUFFIX}`, checksum: `${s.checksumKey}${SIGNATURE_SUFFIX}` };
}

async function readOptional(storage: ObjectStorage, key: string): Promise<string | null> {
  try {
    return await readSmallObject(storage, key);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

async function putText(storage: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  await storage.put(key, Readable.from([data]), {
    sha256: createHash("sha256").update(data).digest("hex"),
    size: data.length,
  });
}

export async function readSigningRecord(storage: ObjectStorage): Promise<SigningRecord | null> {
  const text = await readOptional(storage, SIGNING_RECORD_KEY);
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as SigningRecord;
    if (typeof r.since === "string" && Number.isFinite(Date.parse(r.since))) return r;
  } catch {
    // fall through: an unreadable record must not switch the guard off
  }
  throw new SafetyError(
    "PAAS_BACKUP_BAD_SIGNATURE",
    `${storage.url}/${SIGNING_RECORD_KEY} does not parse: when this repository began signing is unknown`,
    {
      path: SIGNING_RECORD_KEY,
      remediation:
        "Restore the file from a copy of the repository, or write it again with the date signing began; until then every snapshot's signature is required.",
      stage: "signature",
    },
  );
}

/**
 * The signatures of a snapshot about to commit: written before the artifact, so a listed snapshot
 * made by a signing host is never without them. The first one also records when signing began.
 */
export async function writeSnapshotSignatures(
  storage: ObjectStorage,
  keys: { manifestKey: string; checksumKey: string },
  texts: { manifest: string; checksum: string },
  signer: SigningKey,
  createdAt: Date,
): Promise<void> {
  const sig = signatureKeys(keys);
  await putText(storage, sig.manifest, signer.sign(texts.manifest));
  await putText(storage, sig.checksum, signer.sign(texts.checksum));
  if ((await readOptional(storage, SIGNING_RECORD_KEY)) === null) {
    const record: SigningRecord = {
      schema: "paas-backup/signing@1",
      since: createdAt.toISOString(),
      firstSigner: signer.fingerprint,
    };
    await putText(storage, SIGNING_RECORD_KEY, `${JSON.stringify(record, null, 2)}\n`);
  }
}

export type SnapshotSignature =
  | { state: "signed"; principal: string; fingerprint: string }
  | { state: "unsigned" }
  | { state: "untrusted"; fingerprint: string }
  | { state: "bad"; reason: string };

/** What the signatures of a snapshot say, against the allowed signers. */
export async function checkSnapshotSignature(
  snapshot: SnapshotRef,
  allowed: readonly AllowedSigner[],
): Promise<SnapshotSignature> {
  const sig = signatureKeys(snapshot);
  const checksumSig = await readOptional(snapshot.storage, sig.checksum);
  const manifestSig = snapshot.manifest ? await readOptional(snapshot.storage, sig.manifest) : null;
  if (checksumSig === null && manifestSig === null) return { state: "unsigned" };
  if (checksumSig === null) return { state: "bad", reason: "the checksum file's signature is missing" };
  if (snapshot.manifest && manifestSig === null)
    return { state: "bad", reason: "the manifest's signature is missing" };
  const checks = [
    verifySignature(checksumSig, await readSmallObject(snapshot.storage, snapshot.checksumKey)),
  ];
  if (manifestSig !== null)
    checks.push(verifySignature(manifestSig, await readSmallObject(snapshot.storage, snapshot.manifestKey)));
  const fingerprints = new Set<string>();
  for (const c of checks) {
    if (c.state === "invalid") return { state: "bad", reason: c.reason };
    fingerprints.add(c.fingerprint);
  }
  if (fingerprints.size !== 1)
    return { state: "bad", reason: "the manifest and checksum file are signed by different keys" };
  const fingerprint = [...fingerprints][0]!;
  const who = allowed.find((a) => a.fingerprint === fingerprint);
  return who
    ? { state: "signed", principal: who.principals.join(","), fingerprint }
    : { state: "untrusted", fingerprint };
}

export interface SignaturePolicy {
  allowedSigners: readonly AllowedSigner[];
  /** where the allowed signers came from, for messages */
  allowedSignersOrigin?: string;
  /** the operator accepts unsigned snapshots dated after signing began (the incident record says so) */
  allowUnsigned?: boolean;
}

/**
 * Refuse what must not be restored (exit 4): a bad signature, a signer outside the allowed
 * signers, or no signature on a snapshot dated after the repository began signing (unless
 * `allowUnsigned`). Returns what the signature says for the records.
 */
export async function requireTrustedSnapshot(
  snapshot: SnapshotRef,
  policy: SignaturePolicy,
  record: SigningRecord | null,
): Promise<SnapshotSignature> {
  const found = await checkSnapshotSignature(snapshot, policy.allowedSigners);
  const where = snapshot.artifactPath;
  if (found.state === "bad")
    throw new SafetyError(
      "PAAS_BACKUP_BAD_SIGNATURE",
      `snapshot ${snapshot.id}: ${found.reason} (${where})`,
      {
        path: where,
        remediation:
          "The snapshot or its signature changed after it was signed: restore another snapshot (list shows them), and find out who changed it.",
        stage: "signature",
      },
    );
  if (found.state === "untrusted")
    throw new SafetyError(
      "PAAS_BACKUP_UNTRUSTED_SIGNER",
      `snapshot ${snapshot.id} is signed by ${found.fingerprint}, which is not among the allowed signers${policy.allowedSignersOrigin ? ` (${policy.allowedSignersOrigin})` : ""}`,
      {
        path: where,
        remediation:
          "If that key is one of your hosts', add its public key to the allowed signers file (config allowedSigners); otherwise do not restore it: restore a snapshot your hosts signed.",
        stage: "signature",
      },
    );
  if (
    found.state === "unsigned" &&
    record &&
    snapshot.time.getTime() >= Date.parse(record.since) &&
    !policy.allowUnsigned
  )
    throw new SafetyError(
      "PAAS_BACKUP_UNSIGNED",
      `snapshot ${snapshot.id} has no signature, but this repository signs every snapshot since ${record.since}`,
      {
        path: where,
        remediation:
          "Someone other than a signing host wrote it: restore a signed snapshot, or, if you know where it came from, pass --allow-unsigned (the incident record names that).",
        stage: "signature",
      },
    );
  return found;
}

/** The allowed signers file named in the config; a missing or empty one allows no one. */
export function readAllowedSigners(text: string | null, origin: string): AllowedSigner[] {
  if (text === null) return [];
  const signers = parseAllowedSigners(text);
  if (signers.length === 0 && text.trim() !== "")
    throw new UsageError("PAAS_BACKUP_BAD_SIGNING_KEY", `${origin} lists no ssh-ed25519 key`, {
      path: origin,
      remediation:
        'Write one line per host: "<principal> ssh-ed25519 AAAA…", the public key `paas-backup keygen --signing` printed.',
      stage: "arguments",
    });
  return signers;
}
