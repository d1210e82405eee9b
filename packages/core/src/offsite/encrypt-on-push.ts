import { createHash, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import { SafetyError } from "../errors.js";
import type { FileSystem } from "../fs/types.js";
import { checkSnapshotChecksum, formatChecksumLine } from "../repository/checksum.js";
import { artifactNames, readSmallObject, type SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage, PutResult } from "../repository/storage.js";
import { HashingStream } from "../util/hash.js";
import { contextBackupDir, join } from "../util/paths.js";
import { hashObject, isLockRefusal } from "./checks.js";
import type { OffsiteCopy, OffsiteRecord } from "./types.js";

/**
 * Nothing plaintext leaves the host unannounced (issue 21 §5, policy §7.2). A snapshot that is
 * plaintext at home (`--insecure-plaintext`, the policy's shell flow) is encrypted to the
 * configured recipients on its way to a target that does not say `allowPlaintext`, and stored
 * there as `<id>.tar.gz.age` with its own checksum file, which `sha256sum -c` checks and which
 * verify and heal compare against. The manifest travels unchanged: it describes the tar.gz inside.
 *
 * Crash safety: age output differs on every run, so the encrypted bytes are written to a file in
 * the backup root first (their sha256 and size must be known before an upload starts), and the
 * upload is recorded as pending before its artifact is committed. After a kill, the next push
 * confirms an object at the key only when it re-reads to the pending sha256; anything else there
 * that this root did not record is another writer's and is never replaced.
 */

/** What signs the encrypted copy's checksum file: this host's signing key (signing/ is above offsite/). */
export interface PushSigner {
  sign(text: string): string;
}

export type EncryptedPushOutcome =
  | {
      copy: Pick<OffsiteCopy, "artifact" | "sha256" | "size" | "sourceSha256" | "recipients">;
      put: PutResult;
      note: string | null;
      warning: string | null;
    }
  | { problem: string };

/** The refusal when a plaintext snapshot would go out and there is nothing to encrypt it to. */
export function noRecipientRefusal(context: string, target: string, ids: readonly string[]): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_OFFSITE_NO_RECIPIENT",
    `not pushing plaintext snapshot${ids.length === 1 ? "" : "s"} ${ids.join(", ")} of ${context} to ${target}: they are not encrypted at home, no age recipient is configured to encrypt them to on the way out, and the target does not say allowPlaintext`,
    {
      path: target,
      remediation:
        "Configure recipients (recipients or recipientsFile in the config file; `paas-backup keygen` makes a key), or, if this target may hold plaintext, set allowPlaintext: true on it in offsite.targets. Encrypted snapshots were pushed.",
      stage: "offsite",
      data: { refused: [...ids], target },
    },
  );
}

/** The backup root's folder for a context's encrypted-on-push files in flight. */
function outboxDir(backupRoot: string, context: string): string {
  return join(contextBackupDir(backupRoot, context), "offsite");
}

export async function pushEncryptedCopy(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  snap: SnapshotRef;
  /** the target seen below this root's prefix */
  view: ObjectStorage;
  /** `roots/<root id>/`: record keys are full keys at the target */
  rootPrefix: string;
  record: OffsiteRecord;
  saveRecord: () => Promise<void>;
  encryptor: ArtifactEncryptor;
  signer?: PushSigner | undefined;
  lock?: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date } | undefined;
  known: OffsiteCopy | undefined;
  healing: string | null;
  now: Date;
}): Promise<EncryptedPushOutcome> {
  const { fs, snap, view, record } = options;
  const names = artifactNames(snap.id, true);
  const key = `${snap.context}/${names.artifactName}`;
  const checksumKey = `${key}.sha256`;
  const fullKey = options.rootPrefix + key;
  const check = await checkSnapshotChecksum(snap);
  if (check.state !== "verified")
    return {
      problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)`,
    };
  // What a killed push left encrypting in the backup root goes first (the context's lock is held).
  const dir = outboxDir(options.backupRoot, snap.context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const leftover = `.${names.artifactName}.`;
  for (const e of await fs.readdir(dir))
    if (e.name.startsWith(leftover) && e.name.endsWith(".partial"))
      await fs.rm(join(dir, e.name), { force: true });
  const existing = await view.head(key);
  const pending = record.pending?.[snap.id];
  if (
    existing &&
    pending &&
    pending.artifact === fullKey &&
    pending.sourceSha256 === check.actual &&
    existing.size === pending.size
  ) {
    // An earlier push was cut short after the upload: confirmed by its bytes, not sent again.
    const back = await hashObject(view, key);
    const sidecar = await view.head(checksumKey);
    if (back.sha256 === pending.sha256 && sidecar) {
      return {
        copy: {
          artifact: fullKey,
          sha256: pending.sha256,
          size: pending.size,
          sourceSha256: check.actual,
          recipients: pending.recipients ?? [...options.encryptor.recipients],
        },
        put: { key, size: back.size, sha256: back.sha256, confirmedBy: "reread", multipart: false },
        note: null,
        warning: null,
      };
    }
  }
  const ours = options.known?.artifact === fullKey;
  if (existing && !ours && !(pending && pending.artifact === fullKey))
    return {
      problem: `a different object is at ${view.locate(key)} (this backup root did not record it); not replaced. Was this backup root copied from another host? Give one of them a new identity.`,
    };
  let note: string | null = null;
  if (existing?.retainUntil && Date.parse(existing.retainUntil) > options.now.getTime())
    note = `the damaged copy is under Object Lock until ${existing.retainUntil}: the good copy is uploaded beside it (the bucket keeps the damaged one as an older version)`;

  // Encrypt into the backup root first: an upload needs the sha256 and size of its bytes up front.
  const tmp = join(dir, `${leftover}${randomUUID().slice(0, 8)}.partial`);
  try {
    const plain = new HashingStream();
    const encrypted = new HashingStream();
    await pipeline(
      await snap.storage.get(snap.artifactKey),
      plain,
      options.encryptor.encrypt(),
      encrypted,
      fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }),
    );
    if (plain.digest() !== check.actual)
      return {
        problem: `local artifact changed while it was encrypted for the target (sha256 ${plain.digest()}, its checksum file names ${check.actual}); not copied`,
      };
    const sha256 = encrypted.digest();
    const size = encrypted.bytes;
    record.pending = {
      ...record.pending,
      [snap.id]: {
        artifact: fullKey,
        sha256,
        size,
        sourceSha256: check.actual,
        recipients: [...options.encryptor.recipients],
        startedAt: options.now.toISOString(),
      },
    };
    await options.saveRecord();

    // Sidecars first, the artifact is the commit (as for every copy). The manifest describes the
    // tar.gz inside the age file and travels unchanged; the checksum file is the encrypted bytes'.
    const checksumText = formatChecksumLine(sha256, names.artifactName);
    const smalls: { key: string; text: string }[] = [{ key: checksumKey, text: checksumText }];
    if (snap.manifest)
      smalls.push({ key: snap.manifestKey, text: await readSmallObject(snap.storage, snap.manifestKey) });
    // The home snapshot's checksum signature covers the plaintext's sha256, not these bytes: this
    // host signs the new checksum file, and the manifest's signature travels with it. A signed
    // snapshot pushed by a host without its key goes unsigned (a signature on one file alone is "bad").
    let warning: string | null = null;
    const homeSigned = (await snap.storage.head(`${snap.checksumKey}.sig`)) !== null;
    if (options.signer) {
      smalls.push({ key: `${checksumKey}.sig`, text: options.signer.sign(checksumText) });
      if (snap.manifest && (await snap.storage.head(`${snap.manifestKey}.sig`)))
        smalls.push({
          key: `${snap.manifestKey}.sig`,
          text: await readSmallObject(snap.storage, `${snap.manifestKey}.sig`),
        });
    } else if (homeSigned)
      warning = `${snap.id} is signed at home, but no signing key is at hand to sign its encrypted copy: the copy at ${view.locate(key)} is unsigned (restore it with --allow-unsigned, or push from the host that signs)`;
    for (const s of smalls) {
      const data = Buffer.from(s.text, "utf8");
      const hex = createHash("sha256").update(data).digest("hex");
      const there = await view.head(s.key);
      if (there?.sha256 === hex && there.size === data.length) continue;
      await view.put(s.key, Readable.from([data]), {
        sha256: hex,
        size: data.length,
        ...(options.lock ? { lock: options.lock } : {}),
      });
    }
    let put: PutResult;
    const body = fs.createReadStream(tmp);
    try {
      put = await view.put(key, body, {
        sha256,
        size,
        ...(options.lock ? { lock: options.lock } : {}),
      });
    } catch (err) {
      if (existing && isLockRefusal(err))
        return {
          problem: `the copy at ${view.locate(key)} is wrong (${options.healing ?? "differs"}) but Object Lock forbids replacing it until ${existing.retainUntil ?? "its retention ends"}; both are kept: the damaged copy there, the good one at home`,
        };
      throw err;
    } finally {
      // a put that failed before reading it must not leave the file open
      body.destroy();
    }
    if (put.sha256 !== sha256 || put.size !== size)
      return {
        problem: `copy at ${view.locate(key)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded`,
      };
    return {
      copy: {
        artifact: fullKey,
        sha256,
        size,
        sourceSha256: check.actual,
        recipients: [...options.encryptor.recipients],
      },
      put,
      note,
      warning,
    };
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
