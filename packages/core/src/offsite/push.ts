import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { FileSystem } from "../fs/types.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { validateContextName } from "../policy/context.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import { ensureIdentityIn } from "../repository/identity.js";
import { compareSnapshotIds } from "../repository/ids.js";
import {
  backupRootStorage,
  openRepository,
  readSmallObject,
  type SnapshotRef,
} from "../repository/repository.js";
import type {
  Immutability,
  ObjectStorage,
  PutOptions,
  PutResult,
  StoredObject,
} from "../repository/storage.js";
import { cheapCheck, hashObject, isLockRefusal, targetWarnings } from "./checks.js";
import {
  encryptScratchDir,
  noRecipientRefusal,
  pushEncryptedCopy,
  type PushSigner,
} from "./encrypt-on-push.js";
import { extendLocks } from "./locks.js";
import { confirmedCopy, readRecordIn, recordStoreOf, writeRecordIn } from "./record.js";
import { ensureRootMarker, rootView } from "./roots.js";
import { ROOTS, type OffsiteCopy, type OffsiteRecord, type OffsiteTarget } from "./types.js";
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
   * repository given, everything the push reads and writes at home goes through it (issue 19 §2):
   * the identity, the push record (unless `records` says otherwise) and the incident and drill
   * records whose chain head goes beside the copies.
   */
  repository?: ObjectStorage;
  /**
   * where the push records are kept (offsite/record.ts recordStoreOf): by default the repository,
   * or the backup root folder; the CLI's s3:// root passes offsiteRecordsIn(bucket)
   */
  records?: ObjectStorage;
  /**
   * a folder on `fs` where a plaintext snapshot is encrypted on its way out (a host's scratch or
   * cache; a folder per context below it); by default the backup root's `<context>/offsite/`
   */
  scratch?: string;
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

/**
 * One push's working set, opened once and shared by its steps: the target seen below this root's
 * prefix, the record of what is there, the result being built. `dirty` says the record changed
 * since it was last written (each pushed copy writes it at once, so a kill loses at most one copy).
 */
interface PushRun {
  options: PushOffsiteOptions;
  context: string;
  target: OffsiteTarget;
  storage: ObjectStorage;
  /** this root's identity: its prefix at the target */
  rootId: string;
  view: ObjectStorage;
  immutability: Immutability;
  record: OffsiteRecord;
  home: ObjectStorage;
  /** where the push record is kept (the backup root's storage) */
  records: ObjectStorage;
  /** the fulls at home, and those of them push considers (not the ones the target's retention removed) */
  localFulls: SnapshotRef[];
  fulls: SnapshotRef[];
  now: Date;
  result: PushResult;
  dirty: boolean;
  /** plaintext at home with nothing to encrypt it to: refused once everything else is pushed */
  refused: string[];
  /** plaintext copies already at the target, from before push encrypted them: warned about */
  plaintextThere: string[];
  save: () => Promise<void>;
  pushKeys: () => Promise<PushKeys>;
}

interface PushKeys {
  encryptor: ArtifactEncryptor | undefined;
  signer: PushSigner | undefined;
}

/**
 * The push as its steps: open the run, forget removals whose full is gone, push each full, check
 * the copies whose full is gone, leave the evidence beside the copies, extend locks, summarise.
 */
async function pushInSession(options: PushOffsiteOptions): Promise<PushResult> {
  const run = await openPush(options);
  forgetRemovalsOfGoneFulls(run);
  for (const snap of run.fulls) await pushFull(run, snap);
  await checkCopiesWithoutLocalFull(run);
  if (run.dirty) await run.save();
  await pushEvidence(run);
  warnPlaintextThere(run);
  const { target, immutability, result } = run;
  if (target.objectLock && immutability.enabled)
    result.extended = (
      await extendLocks({ ...options, records: run.records, context: run.context })
    ).extended;
  result.copies = await copiesAfterPush(run);
  result.refused = run.refused;
  return result;
}

/**
 * Everything a push reads before it copies anything: the root's identity (created on the first
 * push, so the target knows whose copies these are), the record, the fulls at home, and the
 * target's marker naming this root. Warnings about the target itself start the result.
 */
async function openPush(options: PushOffsiteOptions): Promise<PushRun> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const storage = target.storage;
  // Everything the push reads and writes at home goes through storage (issue 19 §2). The identity
  // is the repository's (the bucket's, on an s3:// root), made create-only on its first push; the
  // record is where recordStoreOf says (the repository, or for an s3:// root the bucket's
  // offsite-records/ the CLI names).
  const home = options.repository ?? backupRootStorage(fs, options.backupRoot);
  const records = recordStoreOf(options);
  const identity = await ensureIdentityIn(home, options.clock, options.host ?? null);
  const view = rootView(storage, identity.id);
  const immutability = await storage.immutability();
  const record = await readRecordIn(records, context, target);
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
    removedByRetention: localFulls.filter((s) => !fulls.includes(s)).map((s) => s.id),
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
  // Resolved on first need: a push of encrypted snapshots never reads a recipients file or a signing key.
  let keys: PushKeys | null = null;
  return {
    options,
    context,
    target,
    storage,
    rootId: identity.id,
    view,
    immutability,
    record,
    home,
    localFulls,
    fulls,
    now,
    result,
    dirty: false,
    refused: [],
    plaintextThere: [],
    records,
    save: () => writeRecordIn(records, context, target, record),
    pushKeys: async () =>
      (keys ??= {
        encryptor: typeof options.encryptor === "function" ? await options.encryptor() : options.encryptor,
        signer: typeof options.copySigner === "function" ? await options.copySigner() : options.copySigner,
      }),
  };
}

/** A removal is remembered while its full is at home: push never looks at the others. */
function forgetRemovalsOfGoneFulls(run: PushRun): void {
  const removed = run.record.removedByRetention ?? {};
  for (const id of Object.keys(removed))
    if (!run.localFulls.some((s) => s.id === id)) {
      delete removed[id];
      run.dirty = true;
    }
}

/**
 * One full: left alone when its confirmed copy is still there, else sent (encrypted on its way out
 * when it is plaintext at home and the target does not take plaintext) or put back.
 */
async function pushFull(run: PushRun, snap: SnapshotRef): Promise<void> {
  const known = run.record.copies[snap.id];
  const encryptOnPush = !snap.encrypted && run.target.allowPlaintext !== true;
  let healing: string | null = null;
  // Copies already confirmed are matched by the checksum file alone (no re-hash of the local full
  // every hour) and checked at the target by HEAD: cheap enough for every tick. An encrypted-on-push
  // copy is matched by the home artifact it encrypts.
  const homeSha = await expectedChecksum(snap);
  if (known && (known.encryptedOnPush ? known.sourceSha256 : known.sha256) === homeSha) {
    healing = await cheapCheck(run.storage, known);
    if (!healing && encryptOnPush && known.encryptedOnPush)
      healing = recipientsChanged(known, (await run.pushKeys()).encryptor, run.now, run.result.warnings);
    if (!healing) {
      run.result.alreadyThere.push(snap.id);
      if (encryptOnPush && !known.encryptedOnPush) run.plaintextThere.push(snap.id);
      return;
    }
  }
  if (encryptOnPush) await pushEncryptedFull(run, snap, known, healing);
  else await pushPlainFull(run, snap, known, healing);
}

/**
 * Only a bucket with Object Lock enabled takes retention headers: S3 and RGW refuse them
 * elsewhere (400), and the copy would not be immutable anyway (reported, exit 4 when required).
 */
function lockForNewCopy(run: PushRun): PutOptions["lock"] | undefined {
  const { target, immutability, now } = run;
  return target.objectLock && immutability.enabled
    ? {
        mode: target.objectLock.mode,
        retainUntil: new Date(now.getTime() + target.objectLock.days * 86_400_000),
      }
    : undefined;
}

/** A plaintext full leaves encrypted to the configured recipients (issue 21 §5), or is refused. */
async function pushEncryptedFull(
  run: PushRun,
  snap: SnapshotRef,
  known: OffsiteCopy | undefined,
  healing: string | null,
): Promise<void> {
  const { encryptor, signer } = await run.pushKeys();
  if (!encryptor) {
    run.refused.push(snap.id);
    return;
  }
  const lock = lockForNewCopy(run);
  const out = await pushEncryptedCopy({
    fs: run.options.fs,
    scratchDir: encryptScratchDir(run.options, run.context),
    context: run.context,
    snap,
    view: run.view,
    rootPrefix: `${ROOTS}/${run.rootId}/`,
    record: run.record,
    saveRecord: run.save,
    encryptor,
    signer,
    lock,
    known,
    healing,
    now: run.now,
  });
  if ("problem" in out) {
    run.result.problems.push({ id: snap.id, problem: out.problem });
    return;
  }
  if (out.warning) run.result.warnings.push(out.warning);
  const head = await run.view.head(out.put.key);
  const copy: OffsiteCopy = {
    ...confirmedCopy({ id: snap.id, ...out.copy }, out.put, {
      now: run.now,
      head,
      lock,
      immutability: run.immutability,
    }),
    encryptedOnPush: true,
  };
  if (run.record.pending) delete run.record.pending[snap.id];
  await recordPushed(run, known, copy, healing, out.note);
}

/**
 * A full copied as it is at home: checked locally first (a corrupt snapshot must not become the
 * offsite copy), refused when another root's object sits at its key, then sidecars and artifact.
 */
async function pushPlainFull(
  run: PushRun,
  snap: SnapshotRef,
  known: OffsiteCopy | undefined,
  healing: string | null,
): Promise<void> {
  const { view, result } = run;
  const check = await checkSnapshotChecksum(snap);
  if (check.state !== "verified") {
    result.problems.push({
      id: snap.id,
      problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)`,
    });
    return;
  }
  const lock = lockForNewCopy(run);
  const existing = await view.head(snap.artifactKey);
  if (existing && existing.sha256 !== null && existing.sha256 !== check.actual) {
    // Not ours: another backup root sharing this identity (a copied root) wrote it. Never replace it.
    result.problems.push({
      id: snap.id,
      problem: `a different object is at ${view.locate(snap.artifactKey)} (sha256 ${existing.sha256}, ours ${check.actual}); not replaced. Was this backup root copied from another host? Give one of them a new identity.`,
    });
    return;
  }
  await pushSidecars(run, snap, lock);
  const landed = await putArtifact(run, snap, { sha256: check.actual, bytes: check.bytes }, existing, {
    known,
    healing,
    lock,
  });
  if (!landed) return;
  const { put, note } = landed;
  if (put.sha256 !== check.actual || put.size !== check.bytes) {
    result.problems.push({
      id: snap.id,
      problem: `copy at ${view.locate(snap.artifactKey)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded`,
    });
    return;
  }
  const head = await view.head(snap.artifactKey);
  const copy = confirmedCopy(
    {
      id: snap.id,
      artifact: `${ROOTS}/${run.rootId}/${snap.artifactKey}`,
      sha256: check.actual,
      size: check.bytes,
    },
    put,
    { now: run.now, head, lock, immutability: run.immutability },
  );
  await recordPushed(run, known, copy, healing, note);
}

/**
 * The target has the same layout as the backup root, below the root's prefix. The sidecars go
 * first and the artifact is the commit, as at home: a push cut short never leaves a snapshot
 * listed at the target without its checksum (issue 9 §7); leftover sidecars are overwritten next
 * time. The signatures travel with the snapshot (issue 24): a restore from the target checks them too.
 */
async function pushSidecars(run: PushRun, snap: SnapshotRef, lock: PutOptions["lock"] | undefined) {
  const signatures: string[] = [];
  for (const key of [`${snap.checksumKey}.sig`, `${snap.manifestKey}.sig`])
    if (await snap.storage.head(key)) signatures.push(key);
  for (const key of [snap.checksumKey, ...(snap.manifest ? [snap.manifestKey] : []), ...signatures]) {
    const data = Buffer.from(await readSmallObject(snap.storage, key), "utf8");
    const sha256 = createHash("sha256").update(data).digest("hex");
    // Landed already by a push that was cut short: not re-sent (a locked object cannot be replaced).
    const there = await run.view.head(key);
    if (there?.sha256 === sha256 && there.size === data.length) continue;
    await run.view.put(key, Readable.from([data]), { sha256, size: data.length, ...(lock ? { lock } : {}) });
  }
}

/**
 * The artifact, the commit of a copy: confirmed by its bytes when an interrupted push landed it
 * already, else uploaded (beside a damaged copy Object Lock keeps). Null when the lock forbids
 * replacing a wrong copy: that is a problem of the result, both copies are kept.
 */
async function putArtifact(
  run: PushRun,
  snap: SnapshotRef,
  local: { sha256: string; bytes: number },
  existing: StoredObject | null,
  how: { known: OffsiteCopy | undefined; healing: string | null; lock: PutOptions["lock"] | undefined },
): Promise<{ put: PutResult; note: string | null } | null> {
  const { view, now } = run;
  const { known, healing, lock } = how;
  let put: PutResult | null = null;
  let note: string | null = null;
  if (existing) {
    const damagedHere = known?.artifact === `${ROOTS}/${run.rootId}/${snap.artifactKey}` && known.problem;
    if (
      !damagedHere &&
      existing.size === local.bytes &&
      (await hashObject(view, snap.artifactKey)).sha256 === local.sha256
    ) {
      // An earlier, interrupted push landed it already: confirmed by its bytes, not re-sent.
      put = {
        key: snap.artifactKey,
        size: existing.size,
        sha256: local.sha256,
        confirmedBy: "reread",
        multipart: false,
      };
    } else if (existing.retainUntil && Date.parse(existing.retainUntil) > now.getTime()) {
      note = `the damaged copy is under Object Lock until ${existing.retainUntil}: the good copy is uploaded beside it (the bucket keeps the damaged one as an older version)`;
    }
  }
  if (put) return { put, note };
  try {
    put = await view.put(snap.artifactKey, await snap.storage.get(snap.artifactKey), {
      sha256: local.sha256,
      size: local.bytes,
      ...(lock ? { lock } : {}),
    });
    return { put, note };
  } catch (err) {
    if (existing && isLockRefusal(err)) {
      run.result.problems.push({
        id: snap.id,
        problem: `the copy at ${view.locate(snap.artifactKey)} is wrong (${healing ?? "differs"}) but Object Lock forbids replacing it until ${existing.retainUntil ?? "its retention ends"}; both are kept: the damaged copy there, the good one at home`,
      });
      return null;
    }
    throw err;
  }
}

/**
 * A confirmed copy is written to the record at once (a kill after this loses nothing), reported,
 * and the copy it replaced under the other name goes.
 */
async function recordPushed(
  run: PushRun,
  known: OffsiteCopy | undefined,
  copy: OffsiteCopy,
  healing: string | null,
  note: string | null | undefined,
): Promise<void> {
  run.record.copies[copy.id] = copy;
  await run.save();
  run.dirty = false;
  run.result.pushed.push(copy);
  if (healing) run.result.repaired.push({ id: copy.id, reason: note ? `${healing}; ${note}` : healing });
  await dropReplaced(run, known, copy);
}

/**
 * A copy replaced under the other name (a damaged plaintext one by an encrypted one, or the other
 * way once the target says allowPlaintext) goes: one id never has two artifacts at the target.
 */
async function dropReplaced(run: PushRun, known: OffsiteCopy | undefined, copy: OffsiteCopy): Promise<void> {
  const plainKey = (key: string) => key.replace(/\.age$/, "");
  if (!known || known.artifact === copy.artifact || plainKey(known.artifact) !== plainKey(copy.artifact))
    return;
  try {
    await run.storage.delete(known.artifact);
    await run.storage.delete(`${known.artifact}.sha256`);
  } catch (err) {
    run.result.warnings.push(
      `the replaced copy ${run.storage.locate(known.artifact)} could not be removed (${(err as Error).message}): remove it at the target`,
    );
  }
}

/** Recorded copies whose local full is gone (pruned at home): checked, but they cannot be put back. */
async function checkCopiesWithoutLocalFull(run: PushRun): Promise<void> {
  const localIds = new Set(run.fulls.map((s) => s.id));
  for (const copy of Object.values(run.record.copies)) {
    if (localIds.has(copy.id)) continue;
    const problem = await cheapCheck(run.storage, copy);
    if (problem) {
      run.result.problems.push({
        id: copy.id,
        problem: `${problem}; the local snapshot is gone, so it cannot be uploaded again`,
      });
      if (!copy.problem) {
        copy.problem = problem;
        copy.problemSeenAt = run.now.toISOString();
        run.dirty = true;
      }
    }
  }
}

/**
 * Evidence beside the copies (issue 24 §2): the record chain's head, so a newest incident or
 * drill record deleted at home shows, and when this root began signing, so a restore from the
 * target refuses an unsigned snapshot dated after it as one at home does.
 */
async function pushEvidence(run: PushRun): Promise<void> {
  await pushRecordsHead({ records: run.home, context: run.context, view: run.view, now: run.now });
  await copySigningRecord(run.home, run.view);
}

function warnPlaintextThere(run: PushRun): void {
  const ids = run.plaintextThere;
  if (ids.length === 0) return;
  const one = ids.length === 1;
  run.result.warnings.push(
    `${ids.join(", ")} of ${run.context} ${one ? "is" : "are"} at ${run.storage.url} in plaintext (copied before paas-backup encrypted plaintext snapshots on push, or while the target said allowPlaintext): remove ${one ? "it" : "them"} there once newer encrypted copies exist, or let offsite prune age ${one ? "it" : "them"} out`,
  );
}

/** Every copy recorded at the target after this push (read back from the record), for --require-immutable. */
async function copiesAfterPush(run: PushRun): Promise<PushResult["copies"]> {
  const { immutability, now, result } = run;
  const after = await readRecordIn(run.records, run.context, run.target);
  return Object.values(after.copies)
    .sort((a, b) => compareSnapshotIds(a.id, b.id))
    .map((c) => ({
      id: c.id,
      ok: !c.problem && !result.problems.some((p) => p.id === c.id),
      immutable: immutability.enabled && c.retainUntil !== null && Date.parse(c.retainUntil) > now.getTime(),
      immutableUntil: c.retainUntil,
    }));
}

/**
 * An encrypted-on-push copy encrypted to another set than the recipients configured now (a key
 * retired or added since): encrypted again, so a removed recipient opens nothing retained at the
 * target (issue 24 §3). A copy whose recipients were not recorded (pushed before they were) is
 * left to keys rotate; one under COMPLIANCE Object Lock cannot be replaced, which is said once
 * per push (keys audit reports its exposure window).
 */
function recipientsChanged(
  known: OffsiteCopy,
  encryptor: ArtifactEncryptor | undefined,
  now: Date,
  warnings: string[],
): string | null {
  if (!encryptor || !known.recipients) return null;
  const configured = new Set(encryptor.recipients);
  if (known.recipients.length === configured.size && known.recipients.every((r) => configured.has(r)))
    return null;
  if (known.lockMode === "COMPLIANCE" && known.retainUntil && Date.parse(known.retainUntil) > now.getTime()) {
    warnings.push(
      `${known.id} is encrypted to recipients that are no longer configured, and under COMPLIANCE Object Lock until ${known.retainUntil}: it cannot be encrypted again before then (keys audit reports the window)`,
    );
    return null;
  }
  return "encrypted to other recipients than the configured ones";
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
