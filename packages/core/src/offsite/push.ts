import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { FileSystem } from "../fs/types.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { validateContextName } from "../policy/context.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import { ensureRepositoryIdentity } from "../repository/identity.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { backupRootStorage, openRepository, readSmallObject } from "../repository/repository.js";
import type { Immutability, ObjectStorage, PutResult } from "../repository/storage.js";
import { cheapCheck, hashObject, isLockRefusal, targetWarnings } from "./checks.js";
import { noRecipientRefusal, pushEncryptedCopy, type PushSigner } from "./encrypt-on-push.js";
import { extendLocks } from "./locks.js";
import { confirmedCopy, readRecord, writeRecord } from "./record.js";
import { ensureRootMarker, rootView } from "./roots.js";
import { ROOTS, type OffsiteCopy, type OffsiteTarget } from "./types.js";
import { pushRecordsHead } from "../records/offsite-head.js";
import { SIGNING_RECORD_KEY } from "../signing/verify.js";
import { isNotFound } from "../errors.js";

export interface PushResult {
  context: string;
  target: string;
  /** this backup root's identity: the prefix of its copies at the target */
  root: string;
  immutability: Immutability;
  pushed: OffsiteCopy[];
  alreadyThere: string[];
  /** local fulls not sent again: the target's retention removed their copies (offsite prune, tick) */
  removedByRetention: string[];
  /** copies that were missing or wrong at the target and were put back by this push */
  repaired: { id: string; reason: string }[];
  problems: { id: string; problem: string }[];
  /** every copy recorded at the target after this push, for --require-immutable */
  copies: { id: string; ok: boolean; immutable: boolean; immutableUntil: string | null }[];
  /** Object Lock retention moved later by this push (extend-locks) */
  extended: { id: string; retainUntil: string }[];
  warnings: string[];
  /** plaintext snapshots not pushed: nothing to encrypt them to, and the target does not say allowPlaintext */
  refused: string[];
}

/**
 * Copy every full snapshot not yet at the target, and put back what went missing or wrong there:
 * each recorded copy is checked cheaply (HEAD: present, size, sha256 metadata; a copy the last deep
 * verify found damaged counts as wrong) and uploaded again from home. Safe to run again after an
 * interruption. A differing object at one of this root's keys is refused, never replaced.
 */
export interface PushOffsiteOptions extends ContextCallOptions {
  fs: FileSystem;
  backupRoot: string;
  /**
   * where the snapshots to copy are; by default the backup root through the local driver. With a
   * bucket as the repository (the CLI's s3:// root) the backup root is only the host's cache,
   * holding the push record (rebuilt from the target when lost: a copy there is confirmed by its bytes)
   */
  repository?: ObjectStorage;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  host?: string | null;
  /**
   * The recipients a snapshot that is plaintext at home is encrypted to on its way out (the same
   * recipients a snapshot would use). Without one, such a snapshot is refused for any target that
   * does not say allowPlaintext (PAAS_BACKUP_OFFSITE_NO_RECIPIENT, after everything else is pushed).
   */
  encryptor?: ArtifactEncryptor | (() => Promise<ArtifactEncryptor | undefined>) | undefined;
  /** signs the checksum file of an encrypted-on-push copy (this host's signing key) */
  copySigner?: PushSigner | (() => Promise<PushSigner | undefined>) | undefined;
  /**
   * "throw" (default): a plaintext snapshot refused for want of a recipient makes the push fail
   * with PAAS_BACKUP_OFFSITE_NO_RECIPIENT once everything else is pushed. "report": the result's
   * `refused` names them, for callers that push to several targets before failing.
   */
  refusal?: "throw" | "report";
}

/** Push in the context's session (locked: prune cannot remove what is being copied). */
export async function pushOffsite(options: PushOffsiteOptions): Promise<PushResult> {
  const result = await inContext({ ...options, command: "offsite push" }, () => pushInSession(options));
  // Everything that could go is out and recorded: now say what could not, and why (exit 4).
  if (result.refused.length > 0 && options.refusal !== "report")
    throw noRecipientRefusal(result.context, result.target, result.refused);
  return result;
}

async function pushInSession(options: PushOffsiteOptions): Promise<PushResult> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const storage = target.storage;
  const identity = await ensureRepositoryIdentity(
    fs,
    options.backupRoot,
    options.clock,
    options.host ?? null,
  );
  const view = rootView(storage, identity.id);
  const immutability = await storage.immutability();
  const record = await readRecord(fs, options.backupRoot, context, target);
  const home = options.repository ?? backupRootStorage(fs, options.backupRoot);
  const localFulls = (await openRepository(home).snapshots(context)).filter((s) => s.kind === "full");
  // What the target's retention removed stays removed: a full kept at home for a reason the
  // target does not have (a keepTags tag, a kept incremental's chain) is not sent back only for
  // the next offsite prune to delete it again (issue 20 §4, found by the fleet simulation).
  const removed = record.removedByRetention ?? {};
  const fulls = localFulls.filter((s) => !removed[s.id] || record.copies[s.id]);
  const result: PushResult = {
    context,
    target: storage.url,
    root: identity.id,
    immutability,
    pushed: [],
    alreadyThere: [],
    removedByRetention: [],
    repaired: [],
    problems: [],
    copies: [],
    extended: [],
    warnings: targetWarnings(target),
    refused: [],
  };
  if (target.objectLock && !immutability.enabled)
    result.warnings.push(
      `Object Lock is configured for ${storage.url}, but ${immutability.detail}: copies are uploaded without retention and are not immutable. Create the bucket with Object Lock enabled to make them so.`,
    );
  await ensureRootMarker(storage, identity.id, identity.host, identity.createdAt);
  const now = options.clock();
  let dirty = false;
  const localIds = new Set(fulls.map((s) => s.id));
  result.removedByRetention = localFulls.filter((s) => !fulls.includes(s)).map((s) => s.id);
  // a removal is remembered while its full is at home: push never looks at the others
  for (const id of Object.keys(removed))
    if (!localFulls.some((s) => s.id === id)) {
      delete removed[id];
      dirty = true;
    }
  // Plaintext at home, and nothing to encrypt it to: refused once everything else is pushed.
  const refused: string[] = [];
  const plaintextThere: string[] = [];
  const save = () => writeRecord(fs, options.backupRoot, context, target, record);
  // Resolved on first need: a push of encrypted snapshots never reads a recipients file or a signing key.
  let keys: { encryptor: ArtifactEncryptor | undefined; signer: PushSigner | undefined } | null = null;
  const pushKeys = async () =>
    (keys ??= {
      encryptor: typeof options.encryptor === "function" ? await options.encryptor() : options.encryptor,
      signer: typeof options.copySigner === "function" ? await options.copySigner() : options.copySigner,
    });
  // A copy replaced under the other name (a damaged plaintext one by an encrypted one, or the other
  // way once the target says allowPlaintext) goes: one id never has two artifacts at the target.
  const dropReplaced = async (known: OffsiteCopy | undefined, copy: OffsiteCopy) => {
    const plainKey = (key: string) => key.replace(/\.age$/, "");
    if (!known || known.artifact === copy.artifact || plainKey(known.artifact) !== plainKey(copy.artifact))
      return;
    try {
      await storage.delete(known.artifact);
      await storage.delete(`${known.artifact}.sha256`);
    } catch (err) {
      result.warnings.push(
        `the replaced copy ${storage.locate(known.artifact)} could not be removed (${(err as Error).message}): remove it at the target`,
      );
    }
  };
  for (const snap of fulls) {
    const known = record.copies[snap.id];
    let healing: string | null = null;
    const encryptOnPush = !snap.encrypted && target.allowPlaintext !== true;
    // Copies already confirmed are matched by the checksum file alone (no re-hash of the local full
    // every hour) and checked at the target by HEAD: cheap enough for every tick. An encrypted-on-push
    // copy is matched by the home artifact it encrypts.
    const homeSha = await expectedChecksum(snap);
    if (known && (known.encryptedOnPush ? known.sourceSha256 : known.sha256) === homeSha) {
      healing = await cheapCheck(storage, known);
      if (!healing) {
        result.alreadyThere.push(snap.id);
        if (encryptOnPush && !known.encryptedOnPush) plaintextThere.push(snap.id);
        continue;
      }
    }
    if (encryptOnPush) {
      const { encryptor, signer } = await pushKeys();
      if (!encryptor) {
        refused.push(snap.id);
        continue;
      }
      const lock =
        target.objectLock && immutability.enabled
          ? {
              mode: target.objectLock.mode,
              retainUntil: new Date(now.getTime() + target.objectLock.days * 86_400_000),
            }
          : undefined;
      const out = await pushEncryptedCopy({
        fs,
        backupRoot: options.backupRoot,
        context,
        snap,
        view,
        rootPrefix: `${ROOTS}/${identity.id}/`,
        record,
        saveRecord: save,
        encryptor,
        signer,
        lock,
        known,
        healing,
        now,
      });
      if ("problem" in out) {
        result.problems.push({ id: snap.id, problem: out.problem });
        continue;
      }
      if (out.warning) result.warnings.push(out.warning);
      const head = await view.head(out.put.key);
      const copy: OffsiteCopy = {
        ...confirmedCopy({ id: snap.id, ...out.copy }, out.put, { now, head, lock, immutability }),
        encryptedOnPush: true,
      };
      record.copies[snap.id] = copy;
      if (record.pending) delete record.pending[snap.id];
      await save();
      dirty = false;
      result.pushed.push(copy);
      if (healing)
        result.repaired.push({ id: snap.id, reason: out.note ? `${healing}; ${out.note}` : healing });
      await dropReplaced(known, copy);
      continue;
    }
    const check = await checkSnapshotChecksum(snap);
    if (check.state !== "verified") {
      result.problems.push({
        id: snap.id,
        problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)`,
      });
      continue;
    }
    // Only a bucket with Object Lock enabled takes retention headers: S3 and RGW refuse them
    // elsewhere (400), and the copy would not be immutable anyway (reported, exit 4 when required).
    const lock =
      target.objectLock && immutability.enabled
        ? {
            mode: target.objectLock.mode,
            retainUntil: new Date(now.getTime() + target.objectLock.days * 86_400_000),
          }
        : undefined;
    const existing = await view.head(snap.artifactKey);
    if (existing && existing.sha256 !== null && existing.sha256 !== check.actual) {
      // Not ours: another backup root sharing this identity (a copied root) wrote it. Never replace it.
      result.problems.push({
        id: snap.id,
        problem: `a different object is at ${view.locate(snap.artifactKey)} (sha256 ${existing.sha256}, ours ${check.actual}); not replaced. Was this backup root copied from another host? Give one of them a new identity.`,
      });
      continue;
    }
    // The target has the same layout as the backup root, below the root's prefix. The sidecars go
    // first and the artifact is the commit, as at home: a push cut short never leaves a snapshot
    // listed at the target without its checksum (issue 9 §7); leftover sidecars are overwritten next time.
    // The signatures travel with the snapshot (issue 24): a restore from the target checks them too.
    const signatures: string[] = [];
    for (const key of [`${snap.checksumKey}.sig`, `${snap.manifestKey}.sig`])
      if (await snap.storage.head(key)) signatures.push(key);
    for (const key of [snap.checksumKey, ...(snap.manifest ? [snap.manifestKey] : []), ...signatures]) {
      const data = Buffer.from(await readSmallObject(snap.storage, key), "utf8");
      const sha256 = createHash("sha256").update(data).digest("hex");
      // Landed already by a push that was cut short: not re-sent (a locked object cannot be replaced).
      const there = await view.head(key);
      if (there?.sha256 === sha256 && there.size === data.length) continue;
      await view.put(key, Readable.from([data]), { sha256, size: data.length, ...(lock ? { lock } : {}) });
    }
    let put: PutResult | null = null;
    let note: string | null = null;
    if (existing) {
      const damagedHere = known?.artifact === `${ROOTS}/${identity.id}/${snap.artifactKey}` && known.problem;
      if (
        !damagedHere &&
        existing.size === check.bytes &&
        (await hashObject(view, snap.artifactKey)).sha256 === check.actual
      ) {
        // An earlier, interrupted push landed it already: confirmed by its bytes, not re-sent.
        put = {
          key: snap.artifactKey,
          size: existing.size,
          sha256: check.actual,
          confirmedBy: "reread",
          multipart: false,
        };
      } else if (existing.retainUntil && Date.parse(existing.retainUntil) > now.getTime()) {
        note = `the damaged copy is under Object Lock until ${existing.retainUntil}: the good copy is uploaded beside it (the bucket keeps the damaged one as an older version)`;
      }
    }
    if (!put) {
      try {
        put = await view.put(snap.artifactKey, await snap.storage.get(snap.artifactKey), {
          sha256: check.actual,
          size: check.bytes,
          ...(lock ? { lock } : {}),
        });
      } catch (err) {
        if (existing && isLockRefusal(err)) {
          result.problems.push({
            id: snap.id,
            problem: `the copy at ${view.locate(snap.artifactKey)} is wrong (${healing ?? "differs"}) but Object Lock forbids replacing it until ${existing.retainUntil ?? "its retention ends"}; both are kept: the damaged copy there, the good one at home`,
          });
          continue;
        }
        throw err;
      }
    }
    if (put.sha256 !== check.actual || put.size !== check.bytes) {
      result.problems.push({
        id: snap.id,
        problem: `copy at ${view.locate(snap.artifactKey)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded`,
      });
      continue;
    }
    const head = await view.head(snap.artifactKey);
    const copy = confirmedCopy(
      {
        id: snap.id,
        artifact: `${ROOTS}/${identity.id}/${snap.artifactKey}`,
        sha256: check.actual,
        size: check.bytes,
      },
      put,
      { now, head, lock, immutability },
    );
    record.copies[snap.id] = copy;
    await writeRecord(fs, options.backupRoot, context, target, record);
    dirty = false;
    result.pushed.push(copy);
    if (healing) result.repaired.push({ id: snap.id, reason: note ? `${healing}; ${note}` : healing });
    await dropReplaced(known, copy);
  }
  // Recorded copies whose local full is gone (pruned at home): checked, but they cannot be put back.
  for (const copy of Object.values(record.copies)) {
    if (localIds.has(copy.id)) continue;
    const problem = await cheapCheck(storage, copy);
    if (problem) {
      result.problems.push({
        id: copy.id,
        problem: `${problem}; the local snapshot is gone, so it cannot be uploaded again`,
      });
      if (!copy.problem) {
        copy.problem = problem;
        copy.problemSeenAt = now.toISOString();
        dirty = true;
      }
    }
  }
  if (dirty) await writeRecord(fs, options.backupRoot, context, target, record);
  // Evidence beside the copies (issue 24 §2): the record chain's head, so a newest incident or
  // drill record deleted at home shows, and when this root began signing, so a restore from the
  // target refuses an unsigned snapshot dated after it as one at home does.
  await pushRecordsHead({ fs, backupRoot: options.backupRoot, context, view, now });
  await copySigningRecord(home, view);
  if (plaintextThere.length > 0)
    result.warnings.push(
      `${plaintextThere.join(", ")} of ${context} ${plaintextThere.length === 1 ? "is" : "are"} at ${storage.url} in plaintext (copied before paas-backup encrypted plaintext snapshots on push, or while the target said allowPlaintext): remove ${plaintextThere.length === 1 ? "it" : "them"} there once newer encrypted copies exist, or let offsite prune age ${plaintextThere.length === 1 ? "it" : "them"} out`,
    );
  if (target.objectLock && immutability.enabled)
    result.extended = (await extendLocks({ ...options, context })).extended;
  const after = await readRecord(fs, options.backupRoot, context, target);
  result.copies = Object.values(after.copies)
    .sort((a, b) => compareSnapshotIds(a.id, b.id))
    .map((c) => ({
      id: c.id,
      ok: !c.problem && !result.problems.some((p) => p.id === c.id),
      immutable: immutability.enabled && c.retainUntil !== null && Date.parse(c.retainUntil) > now.getTime(),
      immutableUntil: c.retainUntil,
    }));
  result.refused = refused;
  return result;
}

/** The backup root's paas-backup.signing.json at the root's view of a target, when it is not there as it is at home. */
async function copySigningRecord(home: ObjectStorage, view: ObjectStorage): Promise<void> {
  let text: string;
  try {
    text = await readSmallObject(home, SIGNING_RECORD_KEY, 64 * 1024);
  } catch (err) {
    if (isNotFound(err)) return; // this root does not sign
    throw err;
  }
  const data = Buffer.from(text, "utf8");
  const sha256 = createHash("sha256").update(data).digest("hex");
  const there = await view.head(SIGNING_RECORD_KEY);
  if (there?.sha256 === sha256 && there.size === data.length) return;
  await view.put(SIGNING_RECORD_KEY, Readable.from([data]), { sha256, size: data.length });
}
