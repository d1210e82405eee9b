import type { FileSystem } from "../fs/types.js";
import { UsageError } from "../errors.js";
import {
  ageHeaderLength,
  parseAgeHeader,
  parseX25519Identity,
  unwrapFileKey,
  type ParsedAgeHeader,
  type X25519Identity,
} from "../archive/age-header.js";
import { validateContextName } from "../policy/context.js";
import { backupRootStorage, listSnapshotsIn, type SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { DEFAULT_RETENTION, retentionHorizonMs, type RetentionPolicy } from "../retention/plan.js";
import { rootsAt, rootView } from "../offsite/roots.js";
import { ROOTS } from "../offsite/types.js";
import { parseSnapshotId } from "../repository/ids.js";
import type { OffsiteTarget } from "../offsite/types.js";
import { listContexts } from "../context/contexts.js";

/**
 * keys audit (issue 24 §3): which retained snapshots a given age identity still opens, at home
 * and at every offsite target (every backup root there, other hosts' too), and until when each
 * is kept. Only the age header is read (its stanzas end at the "---" line, well under 1 KiB for a
 * few recipients): unwrapping the file key proves the identity opens the artifact without
 * reading or decrypting its payload. The header is read by archive/age-header.ts, the same code
 * that decrypts artifacts (X25519, HKDF-SHA256, ChaCha20-Poly1305, as age's spec says).
 */

const HEADER_LIMIT = 64 * 1024;
/** an old version's first bytes, read in one ranged GET: a header with a few recipients ends well before */
const VERSION_HEADER_BYTES = 1024;

/** An identity line as an X25519 key pair; a line that does not decode is a bad identity file (exit 2), named by `origin`, never quoted. */
export function x25519IdentityOf(identity: string, origin: string): X25519Identity {
  try {
    return parseX25519Identity(identity);
  } catch {
    throw new UsageError("PAAS_BACKUP_BAD_IDENTITY", `${origin} holds an age identity that does not decode`, {
      path: origin,
      remediation: "Pass the identity file age-keygen or paas-backup keygen wrote (AGE-SECRET-KEY-1… lines).",
      stage: "arguments",
    });
  }
}

/**
 * The header at the start of `bytes`, parsed; null when they hold no well-formed age header
 * (a plaintext or damaged artifact: nothing an identity opens).
 */
export function ageHeaderOf(bytes: Buffer): ParsedAgeHeader | null {
  const length = ageHeaderLength(bytes);
  if (length === null) return null;
  try {
    return parseAgeHeader(bytes.subarray(0, length));
  } catch {
    return null;
  }
}

/** True when one of the identities unwraps the header's file key (age spec §X25519). */
export function identitiesOpen(ids: readonly X25519Identity[], header: ParsedAgeHeader): boolean {
  try {
    return unwrapFileKey(header, ids) !== null;
  } catch {
    return false; // a malformed X25519 stanza: nothing opens it
  }
}

/** Read an object until its age header ends (a few hundred bytes), then stop reading. */
export async function readAgeHeader(storage: ObjectStorage, key: string): Promise<Buffer> {
  const stream = await storage.get(key);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      const so = Buffer.concat(chunks);
      if (ageHeaderLength(so) !== null || size >= HEADER_LIMIT) return so;
    }
    return Buffer.concat(chunks);
  } finally {
    (stream as { destroy?: () => void }).destroy?.();
  }
}

export interface KeyExposure {
  context: string;
  /** "local" for the backup root, else the offsite target's name */
  where: string;
  /** the backup root id at an offsite target (null at home) */
  root: string | null;
  id: string;
  artifact: string;
  /** when the policy lets it go at the latest, or the copy's Object Lock retain-until if later */
  expires: string;
  /** a COMPLIANCE-locked copy cannot be rewritten: the exposure lasts until it expires */
  lockedUntil: string | null;
  /**
   * an older version of the copy on a versioned bucket (a rotation or a push put a newer one over
   * it, or a delete marker hides it): its version id; null for what a plain read returns
   */
  versionId: string | null;
  /** that version's Object Lock retain-until, when it has one (null at home) */
  retainUntil: string | null;
}

export interface KeyAuditResult {
  /** what the identity opens */
  opens: KeyExposure[];
  /** encrypted artifacts checked (headers read) */
  checked: number;
  /** artifacts whose first bytes are not age (plaintext snapshots are not counted as exposures) */
  plaintext: number;
  /** the latest expiry among what it opens: the end of the exposure window */
  exposedUntil: string | null;
}

export interface AuditKeyOptions {
  fs: FileSystem;
  backupRoot: string;
  contexts: string[] | "all";
  /** the AGE-SECRET-KEY-1… lines of the identity file */
  identities: string[];
  offsiteTargets?: OffsiteTarget[];
  policy?: Partial<RetentionPolicy>;
  /**
   * where a context's snapshots are, when not in the backup root folder (an s3:// root: the
   * bucket's committed snapshots); `contexts` then lists them for "all"
   */
  repository?: { snapshots(context: string): Promise<SnapshotRef[]>; contexts(): Promise<string[]> };
}

/**
 * Which artifacts an identity opens, and until when each stays readable. Steps: decode the
 * identities → the contexts → per context: the local snapshots, then per target its copies (both
 * layouts) and, on a versioned bucket, the older versions → sorted by when exposure ends.
 */
export async function auditKey(options: AuditKeyOptions): Promise<KeyAuditResult> {
  const ids = decodeIdentities(options.identities);
  const policy: RetentionPolicy = { ...DEFAULT_RETENTION, ...(options.policy ?? {}) };
  const contexts = (
    options.contexts !== "all"
      ? options.contexts
      : options.repository
        ? await options.repository.contexts()
        : await listContexts({ fs: options.fs, backupRoot: options.backupRoot })
  ).map(validateContextName);
  const audit = new KeyAudit(ids, retentionHorizonMs(policy));
  const home = backupRootStorage(options.fs, options.backupRoot);
  for (const context of contexts) {
    const here = options.repository
      ? await options.repository.snapshots(context)
      : await listSnapshotsIn(home, context);
    for (const s of here) await audit.check(s, "local", null, null);
    for (const target of options.offsiteTargets ?? []) await audit.checkTarget(target, context);
  }
  const { result } = audit;
  result.opens.sort((a, b) => (a.expires < b.expires ? -1 : 1));
  result.exposedUntil = result.opens.at(-1)?.expires ?? null;
  return result;
}

/** The identity file's lines as X25519 identities, or a usage error when one does not decode. */
function decodeIdentities(identities: string[]): X25519Identity[] {
  try {
    return identities.map(parseX25519Identity);
  } catch {
    throw new UsageError(
      "PAAS_BACKUP_BAD_IDENTITY",
      "the identity file holds an age identity that does not decode",
      {
        remediation:
          "Pass the identity file age-keygen or paas-backup keygen wrote (AGE-SECRET-KEY-1… lines).",
        stage: "arguments",
      },
    );
  }
}

type CopyLock = { retainUntil: string | null; mode: string | null } | null;

/** One audit's identities and tally: every artifact checked adds to it, every one the identities open is an exposure. */
class KeyAudit {
  readonly result: KeyAuditResult = { opens: [], checked: 0, plaintext: 0, exposedUntil: null };

  constructor(
    private readonly ids: X25519Identity[],
    private readonly horizonMs: number,
  ) {}

  /** An exposure lasts until retention ages the snapshot out or its Object Lock ends, whichever is later. */
  private exposure(
    s: { context: string; id: string; time: Date; artifactPath: string },
    where: string,
    root: string | null,
    lock: CopyLock,
    versionId: string | null,
  ): KeyExposure {
    const policyEnd = s.time.getTime() + this.horizonMs;
    const lockEnd = lock?.retainUntil ? Date.parse(lock.retainUntil) : 0;
    return {
      context: s.context,
      where,
      root,
      id: s.id,
      artifact: s.artifactPath,
      expires: new Date(Math.max(policyEnd, lockEnd)).toISOString(),
      lockedUntil: lock?.mode === "COMPLIANCE" && lock.retainUntil ? lock.retainUntil : null,
      versionId,
      retainUntil: lock?.retainUntil ?? null,
    };
  }

  /** A plaintext snapshot is counted; an encrypted one's age header is read and tried with the identities. */
  async check(s: SnapshotRef, where: string, root: string | null, lock: CopyLock): Promise<void> {
    const { result } = this;
    if (!s.encrypted) {
      result.plaintext++;
      return;
    }
    result.checked++;
    const header = ageHeaderOf(await readAgeHeader(s.storage, s.artifactKey));
    if (!header || !identitiesOpen(this.ids, header)) return;
    result.opens.push(this.exposure(s, where, root, lock, null));
  }

  /** A target's copies of the context in both layouts, each with its own Object Lock, then its older versions. */
  async checkTarget(target: OffsiteTarget, context: string): Promise<void> {
    // copies in the layout before roots had identities (<context>/… at the target): root null
    const legacy = (await listSnapshotsIn(target.storage, context)).map((s) => ({ s, root: null }));
    const rooted = [];
    for (const root of await rootsAt(target.storage))
      for (const s of await listSnapshotsIn(rootView(target.storage, root.id), context))
        rooted.push({ s, root: root.id as string | null });
    for (const { s, root } of [...legacy, ...rooted])
      // the copy's own Object Lock, as the target reports it: other hosts' roots have no record of ours
      await this.check(s, target.name, root, {
        retainUntil: s.artifact.retainUntil,
        mode: s.artifact.lockMode,
      });
    // a versioned bucket: the versions a plain read no longer returns
    await this.checkVersions(target, `${context}/`, context, null);
    for (const root of await rootsAt(target.storage))
      await this.checkVersions(target, `${ROOTS}/${root.id}/${context}/`, context, root.id);
  }

  /**
   * The older versions of the encrypted artifacts under `prefix` (`<roots/id/>context/`) of a
   * versioned target: a rotation or a later push put a newer version over each, or a prune's
   * delete marker hides it, but it stays readable (by version id) until its retention ends or
   * someone deletes it. One ranged read of its first KiB each: the age header and the version's lock.
   */
  private async checkVersions(
    target: OffsiteTarget,
    prefix: string,
    context: string,
    root: string | null,
  ): Promise<void> {
    const storage = target.storage;
    if (!storage.listVersions || !storage.readVersionStart) return;
    for await (const v of storage.listVersions(prefix)) {
      if (v.latest || v.deleteMarker) continue;
      const name = v.key.slice(prefix.length);
      const m = /^(.+)\.tar\.gz\.age$/.exec(name);
      const parsed = m ? parseSnapshotId(m[1]!) : null;
      if (!m || !parsed || name.includes("/")) continue;
      this.result.checked++;
      let start = await storage.readVersionStart(v.key, v.versionId, VERSION_HEADER_BYTES);
      // a header longer than a KiB (many recipients): read on to where any header ends
      if (ageHeaderLength(start.data) === null && start.data.length >= VERSION_HEADER_BYTES)
        start = await storage.readVersionStart(v.key, v.versionId, HEADER_LIMIT);
      const header = ageHeaderOf(start.data);
      if (!header || !identitiesOpen(this.ids, header)) continue;
      this.result.opens.push(
        this.exposure(
          {
            context,
            id: m[1]!,
            time: parsed.time,
            artifactPath: `${storage.locate(v.key)}?versionId=${encodeURIComponent(v.versionId)}`,
          },
          target.name,
          root,
          { retainUntil: start.retainUntil, mode: start.lockMode },
          v.versionId,
        ),
      );
    }
  }
}
