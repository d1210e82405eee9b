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
import type { StoredObject } from "../repository/storage.js";
import { hashObject, isLockRefusal } from "./checks.js";
import type { OffsiteCopy, OffsiteRecord } from "./types.js";

/**
 * Nothing plaintext leaves the host unannounced (issue 21 §5, policy §7.2). A snapshot that is
 * plaintext at home (`--insecure-plaintext`, the policy's shell flow) is encrypted to the
 * configured recipients on its way to a target that does not say `allowPlaintext`, and stored
 * there as `<id>.tar.gz.age` with its own checksum file, which `sha256sum -c` checks and which
 * verify and heal compare against. The manifest travels unchanged: it describes the tar.gz inside.
 *
 * Crash safety: age output differs on every run, so the encrypted bytes are written to a scratch
 * file first (their sha256 and size must be known before an upload starts), and the
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

/**
 * Where a context's encrypted-on-push bytes are written before their upload: a folder of its own
 * below the caller's scratch folder (issue 19 §2: a host's scratch, never the repository), or by
 * default the backup root's `<context>/offsite/`, where a folder root has always kept them.
 */
export function encryptScratchDir(
  options: { backupRoot: string; scratch?: string },
  context: string,
): string {
  return options.scratch !== undefined
    ? join(options.scratch, context)
    : join(contextBackupDir(options.backupRoot, context), "offsite");
}

export interface EncryptedPushOptions {
  fs: FileSystem;
  /** the folder on `fs` for this context's encrypted bytes in flight (encryptScratchDir) */
  scratchDir: string;
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
}

/** One encrypted copy's names: at the target (below the root's view, and in full) and in the scratch folder. */
interface EncryptedCopyKeys {
  artifactName: string;
  key: string;
  checksumKey: string;
  fullKey: string;
  /** the scratch file names of this artifact start with it */
  scratchPrefix: string;
}

/**
 * A plaintext full's encrypted copy, as its steps: check the home artifact, clear what a killed
 * push left in the scratch folder, confirm an upload an interrupted push finished, refuse another
 * writer's object, encrypt into the scratch folder, record the upload as pending, put the sidecars,
 * put the artifact (the commit).
 */
export async function pushEncryptedCopy(options: EncryptedPushOptions): Promise<EncryptedPushOutcome> {
  const { snap, view } = options;
  const names = artifactNames(snap.id, true);
  const key = `${snap.context}/${names.artifactName}`;
  const keys: EncryptedCopyKeys = {
    artifactName: names.artifactName,
    key,
    checksumKey: `${key}.sha256`,
    fullKey: options.rootPrefix + key,
    scratchPrefix: `.${names.artifactName}.`,
  };
  const check = await checkSnapshotChecksum(snap);
  if (check.state !== "verified")
    return {
      problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)`,
    };
  await clearScratchLeftovers(options, keys);
  const existing = await view.head(key);
  const finished = await confirmInterruptedUpload(options, keys, existing, check.actual);
  if (finished) return finished;
  const foreign = foreignObjectProblem(options, keys, existing);
  if (foreign) return { problem: foreign };
  const note =
    existing?.retainUntil && Date.parse(existing.retainUntil) > options.now.getTime()
      ? `the damaged copy is under Object Lock until ${existing.retainUntil}: the good copy is uploaded beside it (the bucket keeps the damaged one as an older version)`
      : null;
  const tmp = join(options.scratchDir, `${keys.scratchPrefix}${randomUUID().slice(0, 8)}.partial`);
  try {
    const encrypted = await encryptToScratch(options, tmp, check.actual);
    if ("problem" in encrypted) return encrypted;
    await recordPending(options, keys, encrypted, check.actual);
    const warning = await putEncryptedSidecars(options, keys, encrypted.sha256);
    const put = await putEncryptedArtifact(options, keys, tmp, encrypted, existing);
    if ("problem" in put) return put;
    return {
      copy: {
        artifact: keys.fullKey,
        sha256: encrypted.sha256,
        size: encrypted.size,
        sourceSha256: check.actual,
        recipients: [...options.encryptor.recipients],
      },
      put: put.put,
      note,
      warning,
    };
  } finally {
    await options.fs.rm(tmp, { force: true });
  }
}

/** What a killed push left encrypting goes first (the context's lock is held: no push of it runs). */
async function clearScratchLeftovers(options: EncryptedPushOptions, keys: EncryptedCopyKeys): Promise<void> {
  const { fs, scratchDir } = options;
  await fs.mkdir(scratchDir, { recursive: true, mode: 0o700 });
  for (const e of await fs.readdir(scratchDir))
    if (e.name.startsWith(keys.scratchPrefix) && e.name.endsWith(".partial"))
      await fs.rm(join(scratchDir, e.name), { force: true });
}

/**
 * An earlier push was cut short after the upload: the object at the key re-reads to the pending
 * sha256 and its checksum file is there, so it is confirmed by its bytes, not sent again.
 */
async function confirmInterruptedUpload(
  options: EncryptedPushOptions,
  keys: EncryptedCopyKeys,
  existing: StoredObject | null,
  sourceSha256: string,
): Promise<EncryptedPushOutcome | null> {
  const { view } = options;
  const pending = options.record.pending?.[options.snap.id];
  if (
    !existing ||
    !pending ||
    pending.artifact !== keys.fullKey ||
    pending.sourceSha256 !== sourceSha256 ||
    existing.size !== pending.size
  )
    return null;
  const back = await hashObject(view, keys.key);
  const sidecar = await view.head(keys.checksumKey);
  if (back.sha256 !== pending.sha256 || !sidecar) return null;
  return {
    copy: {
      artifact: keys.fullKey,
      sha256: pending.sha256,
      size: pending.size,
      sourceSha256,
      recipients: pending.recipients ?? [...options.encryptor.recipients],
    },
    put: { key: keys.key, size: back.size, sha256: back.sha256, confirmedBy: "reread", multipart: false },
    note: null,
    warning: null,
  };
}

/** An object at the key this root neither recorded nor has pending is another writer's: never replaced. */
function foreignObjectProblem(
  options: EncryptedPushOptions,
  keys: EncryptedCopyKeys,
  existing: StoredObject | null,
): string | null {
  const pending = options.record.pending?.[options.snap.id];
  const ours = options.known?.artifact === keys.fullKey;
  if (!existing || ours || (pending && pending.artifact === keys.fullKey)) return null;
  return `a different object is at ${options.view.locate(keys.key)} (this backup root did not record it); not replaced. Was this backup root copied from another host? Give one of them a new identity.`;
}

/**
 * Encrypt into the scratch folder: an upload needs the sha256 and size of its bytes up front, and
 * age output differs on every run. The plaintext is hashed on its way through, so a home artifact
 * that changed under us is refused.
 */
async function encryptToScratch(
  options: EncryptedPushOptions,
  tmp: string,
  sourceSha256: string,
): Promise<{ sha256: string; size: number } | { problem: string }> {
  const { snap } = options;
  const plain = new HashingStream();
  const encrypted = new HashingStream();
  await pipeline(
    await snap.storage.get(snap.artifactKey),
    plain,
    options.encryptor.encrypt(),
    encrypted,
    options.fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }),
  );
  if (plain.digest() !== sourceSha256)
    return {
      problem: `local artifact changed while it was encrypted for the target (sha256 ${plain.digest()}, its checksum file names ${sourceSha256}); not copied`,
    };
  return { sha256: encrypted.digest(), size: encrypted.bytes };
}

/** The upload is recorded as pending before its artifact is committed: after a kill, the next push can confirm it. */
async function recordPending(
  options: EncryptedPushOptions,
  keys: EncryptedCopyKeys,
  encrypted: { sha256: string; size: number },
  sourceSha256: string,
): Promise<void> {
  options.record.pending = {
    ...options.record.pending,
    [options.snap.id]: {
      artifact: keys.fullKey,
      sha256: encrypted.sha256,
      size: encrypted.size,
      sourceSha256,
      recipients: [...options.encryptor.recipients],
      startedAt: options.now.toISOString(),
    },
  };
  await options.saveRecord();
}

/**
 * Sidecars first, the artifact is the commit (as for every copy). The manifest describes the
 * tar.gz inside the age file and travels unchanged; the checksum file is the encrypted bytes'.
 * The home snapshot's checksum signature covers the plaintext's sha256, not these bytes: this host
 * signs the new checksum file, and the manifest's signature travels with it. A signed snapshot
 * pushed by a host without its key goes unsigned (a signature on one file alone is "bad"): the
 * warning says so.
 */
async function putEncryptedSidecars(
  options: EncryptedPushOptions,
  keys: EncryptedCopyKeys,
  sha256: string,
): Promise<string | null> {
  const { snap, view } = options;
  const checksumText = formatChecksumLine(sha256, keys.artifactName);
  const smalls: { key: string; text: string }[] = [{ key: keys.checksumKey, text: checksumText }];
  if (snap.manifest)
    smalls.push({ key: snap.manifestKey, text: await readSmallObject(snap.storage, snap.manifestKey) });
  let warning: string | null = null;
  const homeSigned = (await snap.storage.head(`${snap.checksumKey}.sig`)) !== null;
  if (options.signer) {
    smalls.push({ key: `${keys.checksumKey}.sig`, text: options.signer.sign(checksumText) });
    if (snap.manifest && (await snap.storage.head(`${snap.manifestKey}.sig`)))
      smalls.push({
        key: `${snap.manifestKey}.sig`,
        text: await readSmallObject(snap.storage, `${snap.manifestKey}.sig`),
      });
  } else if (homeSigned)
    warning = `${snap.id} is signed at home, but no signing key is at hand to sign its encrypted copy: the copy at ${view.locate(keys.key)} is unsigned (restore it with --allow-unsigned, or push from the host that signs)`;
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
  return warning;
}

/**
 * The artifact from the scratch file, the commit of the copy. A wrong copy Object Lock keeps is a
 * problem (both are kept); a copy the target confirms otherwise than we sent is not recorded.
 */
async function putEncryptedArtifact(
  options: EncryptedPushOptions,
  keys: EncryptedCopyKeys,
  tmp: string,
  encrypted: { sha256: string; size: number },
  existing: StoredObject | null,
): Promise<{ put: PutResult } | { problem: string }> {
  const { view } = options;
  let put: PutResult;
  const body = options.fs.createReadStream(tmp);
  try {
    put = await view.put(keys.key, body, {
      sha256: encrypted.sha256,
      size: encrypted.size,
      ...(options.lock ? { lock: options.lock } : {}),
    });
  } catch (err) {
    if (existing && isLockRefusal(err))
      return {
        problem: `the copy at ${view.locate(keys.key)} is wrong (${options.healing ?? "differs"}) but Object Lock forbids replacing it until ${existing.retainUntil ?? "its retention ends"}; both are kept: the damaged copy there, the good one at home`,
      };
    throw err;
  } finally {
    // a put that failed before reading it must not leave the file open
    body.destroy();
  }
  if (put.sha256 !== encrypted.sha256 || put.size !== encrypted.size)
    return {
      problem: `copy at ${view.locate(keys.key)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded`,
    };
  return { put };
}
