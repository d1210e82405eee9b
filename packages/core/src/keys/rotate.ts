import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, UsageError, isNotFound } from "../errors.js";
import { ageDecryptor, ageEncryptor, validateRecipient } from "../archive/age.js";
import { canonicalJson } from "../manifest/format.js";
import type { Manifest } from "../manifest/schema.js";
import { parseManifest } from "../manifest/io.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { validateContextName } from "../policy/context.js";
import { formatChecksumLine, expectedChecksum } from "../repository/checksum.js";
import {
  backupRootStorage,
  openRepository,
  readSmallObject,
  type SnapshotRef,
} from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { relocationKey, type Relocation } from "../repository/relocation.js";
import { readRepositoryIdentity } from "../repository/identity.js";
import type { SigningKey } from "../signing/sshsig.js";
import { SIGNATURE_SUFFIX } from "../signing/verify.js";
import { confirmedCopy, readRecordIn, recordStoreOf, writeRecordIn } from "../offsite/record.js";
import { isLockRefusal } from "../offsite/checks.js";
import { encryptScratchDir, pushEncryptedCopy } from "../offsite/encrypt-on-push.js";
import { rootView } from "../offsite/roots.js";
import { ROOTS, type OffsiteCopy, type OffsiteRecord, type OffsiteTarget } from "../offsite/types.js";
import { HashingStream, sha256Hex } from "../util/hash.js";
import { join } from "../util/paths.js";
import { ageHeaderOf, identitiesOpen, readAgeHeader, x25519IdentityOf } from "./audit.js";
import {
  commitRotationStep,
  listRotations,
  rotationRecordPath,
  rotationsDir,
  saveRotationRecord,
  stagingKey,
  type RotationOffsiteCopy,
  type RotationRecord,
  type RotationStep,
} from "../repository/rotation-commit.js";

export {
  ROTATIONS_DIR,
  listRotations,
  rotationsDir,
  type RotationOffsiteCopy,
  type RotationPhase,
  type RotationRecord,
  type RotationStep,
} from "../repository/rotation-commit.js";

/**
 * keys rotate (issue 24 §3): re-encrypt every retained snapshot of a context to a new recipient
 * set. Removing a recipient must re-encrypt (a fresh file key), not re-wrap: the removed holder
 * may already have the old file key. The payload (the plaintext .tar.gz, with the manifest inside
 * it) is kept byte for byte, so `payloadSha256` stays and the inner manifest keeps the recipients
 * at creation; the sidecar manifest and the rotation record carry the current set.
 *
 * A journaled job, resumable after a crash at any point: the rotation record
 * `<backup_root>/<context>/rotations/<id>.json` lists every snapshot with its phase:
 *   pending     nothing done yet
 *   staged      re-encrypted into <context>/rotations/<id>/<artifact>, hashed and checked
 *   committing  the new sidecar texts are in the record; the artifact, its .sha256, its sidecar
 *               manifest, their signatures and the children's sidecar manifests (parent.sha256)
 *               are written from it, each atomically; a rerun writes them all again
 *   done        the staged copy is removed
 * Offsite copies of the rotated fulls are then replaced (a new object version on S3), except
 * those whose COMPLIANCE lock forbids it: their exposure lasts until the lock ends, and the
 * record names them. The record stays when done: it is the evidence of the rotation.
 */
export interface RotateOptions extends ContextCallOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  add: readonly string[];
  remove: readonly string[];
  /** the AGE-SECRET-KEY-1… lines that open the snapshots now */
  identities: readonly string[];
  identityOrigin?: string;
  clock: () => Date;
  operator?: string;
  /** re-signs what was signed; required when a rotated snapshot is signed */
  signer?: SigningKey;
  offsiteTargets?: readonly OffsiteTarget[];
  /**
   * The recipients offsite push encrypts a snapshot that is plaintext at home to (the configured
   * ones): the set a copy encrypted on push is taken to have when its record predates recording it.
   */
  pushRecipients?: readonly string[];
  /** told after each step, for progress and for tests that stop halfway */
  onStep?: (step: RotationStep) => void | Promise<void>;
  /**
   * An s3:// root (issue 22): nothing in the bucket is overwritten, so each rotated snapshot's
   * objects are written under keys of their own and committed by one relocation entry in the
   * context's fenced log (repository/relocation.ts), which every reader follows.
   */
  shared?: SharedRotation;
  /**
   * where the offsite push records are (offsite/record.ts recordStoreOf): the backup root's by
   * default; an s3:// root passes its bucket's offsite-records/ (offsiteRecordsIn)
   */
  offsiteRecords?: ObjectStorage;
}

export interface SharedRotation {
  /** the bucket itself: the new objects are written here, under relocationKey */
  storage: ObjectStorage;
  /** the context's committed snapshots as readers see them now (read again at every step) */
  view(): Promise<ObjectStorage>;
  /** the context's committed relocations (a step whose commit landed before a kill is done) */
  relocations(): Promise<Relocation[]>;
  /** commit one relocation through the context's lease: create-only, carrying its epoch */
  commit(relocation: Relocation): Promise<void>;
}

/** Where the offsite push records are read and written. */
function offsiteRecordsOf(options: RotateOptions): ObjectStorage {
  return recordStoreOf({
    fs: options.fs,
    backupRoot: options.backupRoot,
    ...(options.offsiteRecords ? { records: options.offsiteRecords } : {}),
  });
}

/** Where the context's snapshots are read: the backup root folder, or the bucket as its readers see it. */
async function homeOf(options: RotateOptions): Promise<ObjectStorage> {
  return options.shared ? options.shared.view() : backupRootStorage(options.fs, options.backupRoot);
}

export interface RotateResult {
  context: string;
  record: string;
  rotation: RotationRecord;
  /** an interrupted rotation this run finished first */
  resumed: string | null;
}

async function readOptional(storage: ObjectStorage, key: string): Promise<string | null> {
  try {
    return await readSmallObject(storage, key);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

function uniq(list: readonly string[]): string[] {
  return [...new Set(list)];
}

function bad(message: string, remediation: string): UsageError {
  return new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", message, { remediation, stage: "arguments" });
}

/** Rotate one context in its session (locked: no snapshot, prune or push runs meanwhile). */
export async function rotateRecipients(options: RotateOptions): Promise<RotateResult> {
  const context = validateContextName(options.context);
  const add = uniq(options.add.map(validateRecipient));
  const remove = uniq(options.remove.map(validateRecipient));
  if (add.length === 0 && remove.length === 0)
    throw bad(
      "keys rotate needs --add-recipient or --remove-recipient",
      "Name the recipient to add (--add-recipient age1…) and the one to remove (--remove-recipient age1…).",
    );
  if (add.some((r) => remove.includes(r)))
    throw bad(
      "a recipient cannot be added and removed at once",
      "Name each recipient once: --add-recipient for the new key, --remove-recipient for the old.",
    );
  if (options.identities.length === 0)
    throw bad(
      "keys rotate needs the identity that opens the snapshots (--identity)",
      "Pass --identity with an age identity file whose recipient the snapshots are encrypted to.",
    );
  // the identity decodes (exit 2 for a damaged file, before anything is touched)
  options.identities.forEach((i) => x25519IdentityOf(i, options.identityOrigin ?? "the identity"));
  return inContext({ ...options, context, command: "keys rotate" }, async () => {
    const { fs, backupRoot } = options;
    let resumed: string | null = null;
    const unfinished = (await listRotations(fs, backupRoot, context)).filter((r) => r.finishedAt === null);
    for (const r of unfinished) {
      await runRotation(options, r);
      resumed = r.id;
    }
    const last = unfinished.at(-1);
    if (last && sameSet(last.add, add) && sameSet(last.remove, remove))
      return { context, record: rotationRecordPath(backupRoot, context, last.id), rotation: last, resumed };
    const now = options.clock();
    const record: RotationRecord = {
      schema: "paas-backup/rotation@1",
      id: `${now
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z")}-${randomUUID().slice(0, 6)}`,
      context,
      startedAt: now.toISOString(),
      finishedAt: null,
      operator: options.operator ?? "",
      add,
      remove,
      signer: options.signer?.fingerprint ?? null,
      ...(options.shared ? { relocated: true as const } : {}),
      snapshots: [],
      offsite: [],
    };
    const home = await homeOf(options);
    const snapshots = await openRepository(home).snapshots(context);
    // what would stop it halfway is refused before the record exists
    await requireSigner(options, snapshots);
    for (const s of snapshots) {
      const current = s.manifest?.encryption.recipients;
      if (s.encrypted && current && current.every((r) => remove.includes(r)) && add.length === 0)
        throw bad(
          `removing ${remove.join(", ")} leaves snapshot ${s.id} with no recipient`,
          "Add the new recipient in the same run: --add-recipient age1… --remove-recipient age1….",
        );
    }
    for (const s of snapshots) {
      if (!s.encrypted) continue;
      const oldSha256 = await expectedChecksum(s);
      record.snapshots.push(
        oldSha256
          ? { id: s.id, artifact: s.artifactName, phase: "pending", oldSha256 }
          : {
              id: s.id,
              artifact: s.artifactName,
              phase: "skipped",
              reason: "it has no readable checksum file: verify cannot vouch for it, so it is not rewritten",
              oldSha256: "",
            },
      );
    }
    await saveRotationRecord(fs, backupRoot, record);
    await runRotation(options, record);
    return { context, record: rotationRecordPath(backupRoot, context, record.id), rotation: record, resumed };
  });
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

async function isSigned(s: SnapshotRef): Promise<boolean> {
  return (
    (await s.storage.head(`${s.checksumKey}${SIGNATURE_SUFFIX}`)) !== null ||
    (await s.storage.head(`${s.manifestKey}${SIGNATURE_SUFFIX}`)) !== null
  );
}

/** A rotation rewrites sidecar manifests and checksum files, which their signatures cover: it needs a signing key when any is signed. */
async function requireSigner(options: RotateOptions, snapshots: readonly SnapshotRef[]): Promise<void> {
  if (options.signer) return;
  for (const s of snapshots)
    if (s.encrypted && (await isSigned(s)))
      throw bad(
        `snapshot ${s.id} of ${s.context} is signed, and keys rotate rewrites what its signature covers: it needs this host's signing key`,
        "Run keys rotate where the signing key is (signingKeyFile, or ~/.config/paas-backup/signing_key).",
      );
}

async function runRotation(options: RotateOptions, record: RotationRecord): Promise<void> {
  const { fs, backupRoot } = options;
  const save = () => saveRotationRecord(fs, backupRoot, record);
  await requireSigner(options, await openRepository(await homeOf(options)).snapshots(record.context));
  // a bucket: the steps whose relocation was committed before a kill cut the record's save short
  const committed = options.shared
    ? (await options.shared.relocations()).filter((r) => r.rotation === record.id)
    : [];
  for (const step of record.snapshots) {
    if (step.phase === "done" || step.phase === "skipped") continue;
    const landed = committed.find((r) => r.snapshot === step.id);
    if (landed) {
      Object.assign(step, { newSha256: landed.sha256, payloadSha256: landed.payloadSha256, phase: "done" });
      delete step.writes;
      await save();
      await options.onStep?.(step);
      continue;
    }
    if (
      options.shared &&
      step.phase !== "pending" &&
      !(await options.shared.storage.head(relocationKey(record.context, record.id, step.id, step.artifact)))
    ) {
      // its staged copy was swept (a rotation left unresumed past the delete delay): stage it again
      step.phase = "pending";
      delete step.writes;
    }
    // listed again at each step: the commit of a parent rewrote its children's sidecar manifests
    const home = await homeOf(options);
    const all = await openRepository(home).snapshots(record.context);
    const snap = all.find((s) => s.id === step.id);
    if (!snap) {
      // pruned since the rotation began (or by hand): nothing left to rotate
      step.phase = "skipped";
      step.reason = "the snapshot is gone";
      await save();
      continue;
    }
    if (step.phase === "pending") {
      const current = snap.manifest?.encryption.recipients;
      if (!snap.manifest || !current) {
        step.phase = "skipped";
        step.reason =
          "it has no manifest naming its recipients (made by hand): re-encrypt it by hand, or let retention remove it";
        await save();
        await options.onStep?.(step);
        continue;
      }
      const recipients = uniq([...current.filter((r) => !record.remove.includes(r)), ...record.add]);
      if (sameSet(recipients, current)) {
        step.phase = "skipped";
        step.reason = "its recipients are already the new set";
        await save();
        await options.onStep?.(step);
        continue;
      }
      if (recipients.length === 0)
        throw bad(
          `removing ${record.remove.join(", ")} leaves snapshot ${snap.id} with no recipient`,
          "Add the new recipient in the same run: --add-recipient age1… --remove-recipient age1….",
        );
      Object.assign(step, await stageReencrypted(options, record, snap, recipients));
      step.recipients = recipients;
      step.phase = "staged";
      await save();
      await options.onStep?.(step);
    }
    if (step.phase === "staged") {
      step.writes = await commitWrites(options, record, step, snap, all);
      step.phase = "committing";
      await save();
      await options.onStep?.(step);
    }
    if (step.phase === "committing") {
      if (options.shared) await commitRelocation(options, options.shared, record, step, snap);
      else await commitRotationStep(home, record, step);
      await save();
      await options.onStep?.(step);
    }
  }
  await rotateOffsite(options, record);
  record.finishedAt = options.clock().toISOString();
  await save();
  await fs.rm(join(rotationsDir(backupRoot, record.context), record.id), { recursive: true, force: true });
}

/**
 * Decrypt with the identity, re-encrypt to the new set (a fresh file key), into the staging key.
 * The old artifact is checked against its checksum on the way (a corrupt one is not rotated),
 * the plaintext is hashed (payloadSha256), and the staged copy is read back: its header has one
 * stanza per recipient, and when the identity is still among them it decrypts to the same payload.
 */
async function stageReencrypted(
  options: RotateOptions,
  record: RotationRecord,
  snap: SnapshotRef,
  recipients: string[],
): Promise<{ newSha256: string; payloadSha256: string; bytes: number }> {
  const origin = options.identityOrigin ?? "the identity";
  const oldHash = new HashingStream();
  const payloadHash = new HashingStream();
  const newHash = new HashingStream();
  // a bucket: staged straight to the key its relocation will name (never over a committed key)
  const home = options.shared?.storage ?? snap.storage;
  const key = options.shared
    ? relocationKey(record.context, record.id, snap.id, snap.artifactName)
    : stagingKey(record.context, record.id, snap.artifactName);
  const staged = await home.stage(key);
  try {
    await pipeline([
      await snap.storage.get(snap.artifactKey),
      oldHash,
      ageDecryptor(options.identities, origin).decrypt(),
      payloadHash,
      ageEncryptor(recipients).encrypt(),
      newHash,
      staged.stream,
    ] as unknown as [Readable, NodeJS.WritableStream]);
  } catch (err) {
    await staged.abort();
    throw err;
  }
  const old = oldHash.digest();
  const step = record.snapshots.find((s) => s.id === snap.id)!;
  if (old !== step.oldSha256) {
    await staged.abort();
    throw new IntegrityError(
      "PAAS_BACKUP_CHECKSUM_MISMATCH",
      `snapshot ${snap.id} does not match its checksum file (sha256 ${old}); it is not rotated`,
      {
        path: snap.artifactPath,
        remediation:
          "Run paas-backup verify --all: fetch a good copy from the offsite target (restore --from-offsite) or let retention remove it, then run keys rotate again (it resumes).",
        stage: "rotate",
      },
    );
  }
  const newSha256 = newHash.digest();
  const payloadSha256 = payloadHash.digest();
  await staged.commit(newSha256);
  // the staged copy as stored: one stanza per recipient, and the same payload when we can open it
  const header = ageHeaderOf(await readAgeHeader(home, key));
  if (!header || header.stanzas.length !== recipients.length)
    throw new IntegrityError(
      "PAAS_BACKUP_STORAGE_MISMATCH",
      `the re-encrypted copy of ${snap.id} at ${home.locate(key)} does not carry ${recipients.length} recipient stanzas`,
      {
        path: home.locate(key),
        remediation:
          "The storage changed what was written: check it, then run keys rotate again (it resumes).",
        stage: "rotate",
      },
    );
  const ids = options.identities.map((i) => x25519IdentityOf(i, origin));
  if (identitiesOpen(ids, header)) {
    const check = new HashingStream();
    await pipeline([
      await home.get(key),
      ageDecryptor(options.identities, origin).decrypt(),
      check,
    ] as unknown as [Readable, NodeJS.WritableStream]);
    if (check.digest() !== payloadSha256)
      throw new IntegrityError(
        "PAAS_BACKUP_STORAGE_MISMATCH",
        `the re-encrypted copy of ${snap.id} at ${home.locate(key)} does not decrypt to the snapshot's payload`,
        {
          path: home.locate(key),
          remediation:
            "The storage changed what was written: check it, then run keys rotate again (it resumes).",
          stage: "rotate",
        },
      );
  }
  return { newSha256, payloadSha256, bytes: newHash.bytes };
}

/**
 * What the commit writes besides the artifact, computed once and kept in the record so a rerun
 * writes the same bytes: the .sha256, the sidecar manifest (the current recipients, payloadSha256,
 * the rotation), their signatures when the snapshot was signed, and each child's sidecar manifest
 * with the parent's new sha256 (and its signature).
 */
async function commitWrites(
  options: RotateOptions,
  record: RotationRecord,
  step: RotationStep,
  snap: SnapshotRef,
  all: readonly SnapshotRef[],
): Promise<{ key: string; text: string }[]> {
  const home = snap.storage;
  const writes: { key: string; text: string }[] = [];
  const sign = async (key: string, text: string) => {
    if (options.signer && (await home.head(`${key}${SIGNATURE_SUFFIX}`)))
      writes.push({ key: `${key}${SIGNATURE_SUFFIX}`, text: options.signer.sign(text) });
  };
  const checksum = formatChecksumLine(step.newSha256!, snap.artifactName);
  const manifest: Manifest = {
    ...snap.manifest!,
    encryption: { type: "age", recipients: step.recipients! },
    payloadSha256: step.payloadSha256!,
    rotations: [
      ...(snap.manifest!.rotations ?? []),
      {
        at: options.clock().toISOString(),
        rotation: record.id,
        added: record.add.filter((r) => !snap.manifest!.encryption.recipients!.includes(r)),
        removed: record.remove.filter((r) => snap.manifest!.encryption.recipients!.includes(r)),
        previousSha256: step.oldSha256,
      },
    ],
  };
  const manifestText = `${canonicalJson(manifest, 2)}\n`;
  writes.push({ key: snap.checksumKey, text: checksum }, { key: snap.manifestKey, text: manifestText });
  // the checksum's signature first: whichever is checked, both are there before the artifact moves
  await sign(snap.checksumKey, checksum);
  await sign(snap.manifestKey, manifestText);
  for (const child of all) {
    if (child.parent?.id !== snap.id || !child.manifest) continue;
    const text = await readOptional(home, child.manifestKey);
    if (text === null) continue;
    const m = parseManifest(text, child.manifestPath);
    const updated = `${canonicalJson({ ...m, parent: { ...m.parent!, sha256: step.newSha256! } }, 2)}\n`;
    writes.push({ key: child.manifestKey, text: updated });
    await sign(child.manifestKey, updated);
  }
  return writes;
}

/**
 * The commit of a step on a bucket: the sidecar texts under the step's own keys, then one
 * relocation entry through the context's lease naming where each of the snapshot's keys (and its
 * children's manifests) now is. Until the entry lands nothing a reader sees has changed; a rerun
 * writes the same texts again (nothing reads them before the entry) and commits once.
 */
async function commitRelocation(
  options: RotateOptions,
  shared: SharedRotation,
  record: RotationRecord,
  step: RotationStep,
  snap: SnapshotRef,
): Promise<void> {
  const store = shared.storage;
  const keys: Record<string, string> = {
    [snap.artifactKey]: relocationKey(record.context, record.id, snap.id, snap.artifactName),
  };
  for (const w of step.writes ?? []) {
    const to = relocationKey(record.context, record.id, snap.id, w.key.slice(w.key.lastIndexOf("/") + 1));
    const data = Buffer.from(w.text, "utf8");
    await store.put(to, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
    keys[w.key] = to;
  }
  const at = (store.serverTime ? await store.serverTime() : options.clock()).toISOString();
  await shared.commit({
    rotation: record.id,
    snapshot: snap.id,
    sha256: step.newSha256!,
    payloadSha256: step.payloadSha256!,
    at,
    keys,
  });
  step.phase = "done";
  delete step.writes;
}

/**
 * The rotated fulls' copies at every offsite target are replaced (the object's new version on
 * S3), with the sidecars, and the offsite record updated. A copy whose COMPLIANCE lock forbids
 * replacing it keeps the old bytes: the record names it with the end of its lock, the exposure
 * window `keys audit` reports. Idempotent: a copy already replaced is recognised by its sha256.
 */
async function rotateOffsite(options: RotateOptions, record: RotationRecord): Promise<void> {
  const targets = options.offsiteTargets ?? [];
  if (targets.length === 0) return;
  const { fs, backupRoot } = options;
  const home = await homeOf(options);
  const identity = await readRepositoryIdentity(fs, backupRoot);
  if (!identity) return; // never pushed: no copies of ours anywhere
  const now = options.clock();
  const rotated = new Map(record.snapshots.filter((s) => s.phase === "done").map((s) => [s.id, s]));
  const snaps = new Map((await openRepository(home).snapshots(record.context)).map((s) => [s.id, s]));
  for (const target of targets) {
    const offsite = await readRecordIn(offsiteRecordsOf(options), record.context, target);
    const immutability = await target.storage.immutability();
    const done = (entry: RotationOffsiteCopy) => {
      record.offsite = record.offsite.filter((o) => !(o.target === entry.target && o.id === entry.id));
      record.offsite.push(entry);
    };
    for (const copy of Object.values(offsite.copies)) {
      const step = rotated.get(copy.id);
      const snap = snaps.get(copy.id);
      if (copy.encryptedOnPush && !snap && exposedTo(copy, record)) {
        // pruned at home: no plaintext left to encrypt it from, so it stays as it is until the
        // target's retention removes it (keys audit lists it with its expiry)
        done({
          target: target.name,
          id: copy.id,
          action: "failed",
          encryptedOnPush: true,
          problem:
            "its snapshot is gone at home (pruned): there is nothing to encrypt it again from; it stays readable by the removed recipients until the target's retention removes it (offsite prune)",
        });
        continue;
      }
      if (copy.encryptedOnPush && snap && !snap.encrypted) {
        const entry = await reencryptPushedCopy(options, record, target, offsite, copy, snap, identity.id);
        if (entry) done(entry);
        continue;
      }
      if (!step || !snap || copy.sha256 !== step.oldSha256) continue;
      const lockedUntil =
        copy.retainUntil && Date.parse(copy.retainUntil) > now.getTime() ? copy.retainUntil : null;
      if (lockedUntil && copy.lockMode === "COMPLIANCE") {
        done({ target: target.name, id: copy.id, action: "locked", lockedUntil });
        continue;
      }
      const storage = target.storage;
      const prefix = copy.artifact.slice(0, copy.artifact.length - snap.artifactName.length);
      const lock = copyLock(target, immutability.enabled, now, lockedUntil);
      try {
        // the sidecars first and the artifact last, as a push does
        for (const key of [
          snap.checksumKey,
          snap.manifestKey,
          `${snap.checksumKey}${SIGNATURE_SUFFIX}`,
          `${snap.manifestKey}${SIGNATURE_SUFFIX}`,
        ]) {
          const text = await readOptional(home, key);
          if (text === null) continue;
          const data = Buffer.from(text, "utf8");
          await storage.put(`${prefix}${key.slice(record.context.length + 1)}`, Readable.from([data]), {
            sha256: sha256Hex(data),
            size: data.length,
            ...(lock ? { lock } : {}),
          });
        }
        const put = await storage.put(copy.artifact, await home.get(snap.artifactKey), {
          sha256: step.newSha256!,
          size: step.bytes!,
          ...(lock ? { lock } : {}),
        });
        const head = await storage.head(copy.artifact);
        offsite.copies[copy.id] = confirmedCopy({ ...copy, sha256: put.sha256, size: put.size }, put, {
          now,
          head,
          lock,
          immutability,
        });
        await writeRecordIn(offsiteRecordsOf(options), record.context, target, offsite);
        done({ target: target.name, id: copy.id, action: "replaced" });
      } catch (err) {
        if (!isLockRefusal(err)) throw err;
        done({
          target: target.name,
          id: copy.id,
          action: "locked",
          lockedUntil: lockedUntil ?? now.toISOString(),
        });
      }
    }
    await saveRotationRecord(fs, backupRoot, record);
  }
}

/**
 * A copy encrypted on push (the snapshot is plaintext at home, issue 21 §5) has no artifact at
 * home to rotate: its recipients are the ones push encrypted it to, recorded on the copy. Minus
 * the removed and plus the added ones, it is encrypted again from the home artifact and uploaded
 * over the old copy, by the push's own code (pending in the offsite record before the upload, so a
 * kill is confirmed by re-reading or uploaded again on resume). A copy already at the new set is
 * left; one under COMPLIANCE Object Lock cannot be rewritten and is reported with its lock's end.
 */
async function reencryptPushedCopy(
  options: RotateOptions,
  record: RotationRecord,
  target: OffsiteTarget,
  offsite: OffsiteRecord,
  copy: OffsiteCopy,
  snap: SnapshotRef,
  rootId: string,
): Promise<RotationOffsiteCopy | null> {
  const { fs, backupRoot } = options;
  const base = copy.recipients ?? options.pushRecipients ?? [];
  const recipients = uniq([...base.filter((r) => !record.remove.includes(r)), ...record.add]);
  const entry = { target: target.name, id: copy.id, encryptedOnPush: true as const };
  // re-encrypted by this rotation already (a resumed run): reported, not done twice
  if (copy.rotatedBy === record.id)
    return { ...entry, action: "replaced", recipients: copy.recipients ?? [] };
  if (copy.recipients && sameSet(copy.recipients, recipients)) return null;
  if (recipients.length === 0)
    return {
      ...entry,
      action: "failed",
      problem:
        "its recipients were never recorded and none is configured or added: there is no set to encrypt it to (configure recipients, or pass --add-recipient)",
    };
  const now = options.clock();
  const lockedUntil =
    copy.retainUntil && Date.parse(copy.retainUntil) > now.getTime() ? copy.retainUntil : null;
  if (lockedUntil && copy.lockMode === "COMPLIANCE") return { ...entry, action: "locked", lockedUntil };
  const immutability = await target.storage.immutability();
  const lock = copyLock(target, immutability.enabled, now, lockedUntil);
  const save = () => writeRecordIn(offsiteRecordsOf(options), record.context, target, offsite);
  const out = await pushEncryptedCopy({
    fs,
    // keys rotate runs on the backup root folder: its scratch is where push's default is
    scratchDir: encryptScratchDir({ backupRoot }, record.context),
    context: record.context,
    snap,
    view: rootView(target.storage, rootId),
    rootPrefix: `${ROOTS}/${rootId}/`,
    record: offsite,
    saveRecord: save,
    encryptor: ageEncryptor(recipients),
    signer: options.signer,
    lock,
    known: copy,
    healing: `encrypted to a recipient set keys rotate ${record.id} replaced`,
    now,
  });
  if ("problem" in out)
    return lockedUntil
      ? { ...entry, action: "locked", lockedUntil }
      : { ...entry, action: "failed", problem: out.problem };
  const head = await target.storage.head(out.copy.artifact);
  offsite.copies[copy.id] = confirmedCopy(
    { ...copy, ...out.copy, encryptedOnPush: true, rotatedBy: record.id },
    out.put,
    { now, head, lock, immutability },
  );
  if (offsite.pending) delete offsite.pending[copy.id];
  await save();
  // a copy of the layout before root identities (<context>/…) is replaced under the root's prefix
  if (copy.artifact !== out.copy.artifact)
    for (const key of [copy.artifact, `${copy.artifact}.sha256`])
      try {
        await target.storage.delete(key);
      } catch (err) {
        if (!isLockRefusal(err)) throw err;
      }
  return { ...entry, action: "replaced", recipients };
}

/** A copy encrypted on push that a removed recipient may open: it names one, or its recipients were never recorded. */
function exposedTo(copy: OffsiteCopy, record: RotationRecord): boolean {
  if (record.remove.length === 0) return false;
  return copy.recipients === undefined || copy.recipients.some((r) => record.remove.includes(r));
}

/** The Object Lock a replacement copy is written with: the target's, and never shorter than the old copy's. */
function copyLock(
  target: OffsiteTarget,
  lockable: boolean,
  now: Date,
  lockedUntil: string | null,
): { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date } | undefined {
  if (!target.objectLock || !lockable) return undefined;
  return {
    mode: target.objectLock.mode,
    retainUntil: new Date(
      Math.max(now.getTime() + target.objectLock.days * 86_400_000, Date.parse(lockedUntil ?? "") || 0),
    ),
  };
}
