import { createHash, type Hash } from "node:crypto";
import { PassThrough, Transform, Writable, type Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import type { FileReader, FileSystem } from "../fs/types.js";
import { IntegrityError, SafetyError } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import {
  readArchive,
  tarBytesBound,
  type ArchiveEntryInfo,
  type ReadArchiveResult,
} from "../archive/reader.js";
import { parseManifest } from "../manifest/io.js";
import type { ManifestFile } from "../manifest/schema.js";
import { sidecarAgrees } from "../manifest/agreement.js";
import { hardExclusionReason } from "../policy/selection.js";
import { BLOCK_FILE } from "../records/block.js";
import type { SnapshotRef } from "../repository/repository.js";
import { dirname, isWithin, join } from "../util/paths.js";

export interface MaterializeOptions {
  fs: FileSystem;
  /** oldest (a full) first */
  chain: readonly SnapshotRef[];
  /** folder to write into (must be new and empty), or null to check without writing */
  target: string | null;
  decryptor?: ArtifactDecryptor;
  /** for archives with no manifest: refuse past this many times the artifact's size */
  maxExpansion?: number;
  onBytes?: (n: number) => void;
  /**
   * the sha256 each link's checksum file names, by snapshot id: the artifact is hashed as it is
   * read (one pass) and a link whose bytes differ is refused before its result is used
   */
  checksums?: ReadonlyMap<string, string | null>;
  /** write only the files this accepts (the others are still read and checked); default all */
  select?: (path: string) => boolean;
  /**
   * files on disk to compare, as they are extracted, with what the chain restores at these entry
   * paths (a restore: the live event logs). Each is read in step with the extraction, and the
   * result says whether it begins with the restored bytes: the answer planEventLines otherwise
   * gets by hashing every live log once more after staging.
   */
  compareWith?: ReadonlyMap<string, string>;
}

export interface MaterializeResult {
  /** the files the newest link describes, each checked: path, size, sha256 */
  files: { path: string; size: number; sha256: string }[];
  /** entries of hand-made archives that policy keeps out of a context (vault/, secrets): not restored */
  notRestored: { path: string; reason: string }[];
  bytes: number;
  /** sha256 of every link's artifact bytes as read, by snapshot id */
  artifactSha256: Map<string, string>;
  /**
   * for each compareWith path that held a file through the whole restored content: its inode and
   * the restored size, and whether its first `size` bytes are exactly the restored file
   */
  compared: Map<string, LiveComparison>;
}

export interface LiveComparison {
  ino: number;
  /** the restored file's size: the bytes compared */
  size: number;
  agrees: boolean;
}

/**
 * One file on disk read in step with an entry's bytes (see compareWith). A read that fails, or a
 * file that is not a plain file, only leaves the question open: the caller hashes it instead.
 */
class LiveComparer {
  private reader: FileReader | null = null;
  private opened = false;
  private ino = -1;
  /** leading bytes that agree so far; -1 once they do not, or once the answer cannot be had */
  private agreeing = 0;
  /** false once a read failed or the file is not a plain file: no answer, the caller hashes instead */
  private answerable = true;
  private closed = false;
  private scratch = Buffer.alloc(0);
  /** the comparison under way: close() waits for it, so a reader being opened is closed too */
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly fs: FileSystem,
    private readonly path: string,
  ) {}

  /** A whole file's entry starts over; an appended tail continues only where the compared bytes end. */
  begin(offset: number): void {
    if (offset === 0) this.agreeing = 0;
    else if (this.agreeing !== offset) this.agreeing = -1;
  }

  compare(chunk: Buffer): Promise<void> {
    if (this.agreeing < 0 || !this.answerable || this.closed) return Promise.resolve();
    this.inFlight = this.compareChunk(chunk);
    return this.inFlight;
  }

  private async compareChunk(chunk: Buffer): Promise<void> {
    try {
      if (!this.opened) {
        this.opened = true;
        const st = await this.fs.lstat(this.path);
        if (st.kind !== "file" || !this.fs.openRead) throw new Error("not comparable");
        this.ino = st.ino;
        this.reader = await this.fs.openRead(this.path);
      }
      if (!this.reader) throw new Error("not comparable");
      // one buffer, grown to the largest chunk (at most a gzip member's 1 MiB), read into again
      if (this.scratch.length < chunk.length) this.scratch = Buffer.allocUnsafeSlow(chunk.length);
      let got = 0;
      while (got < chunk.length) {
        const n = await this.reader.read(this.scratch.subarray(got, chunk.length), this.agreeing + got);
        if (n === 0) break;
        got += n;
      }
      this.agreeing =
        got === chunk.length && this.scratch.subarray(0, got).equals(chunk) ? this.agreeing + got : -1;
    } catch {
      // unreadable or vanished: no answer; the question is settled by hashing later
      this.answerable = false;
      this.agreeing = -1;
    }
  }

  /** The answer for a restored file of `size` bytes, or null when there is none to give. */
  result(size: number): LiveComparison | null {
    if (!this.answerable || this.ino < 0) return null;
    return { ino: this.ino, size, agrees: this.agreeing === size };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inFlight;
    const reader = this.reader;
    this.reader = null;
    await reader?.close();
  }
}

interface FileState {
  hash: Hash;
  size: number;
}

function disagree(label: string, path: string, why: string): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_MANIFEST_DISAGREES",
    `archive ${label} entry ${JSON.stringify(path)} disagrees with its manifest: ${why}`,
    {
      path: label,
      remediation:
        "Do not restore this artifact; it was altered after it was written. Restore an older verified snapshot.",
      stage: "archive",
      data: { entry: path, reason: why },
    },
  );
}

function blockMarkerFolder(label: string, path: string): SafetyError {
  const reason = `a folder where the block marker ${BLOCK_FILE} stands (it is a file paas-backup writes)`;
  return new SafetyError(
    "PAAS_BACKUP_HOSTILE_ENTRY",
    `refused archive entry ${JSON.stringify(path)} in ${label}: ${reason}`,
    {
      path: label,
      remediation:
        "Do not restore this artifact; no si state has a folder by that name. Restore an older verified snapshot.",
      stage: "archive",
      data: { entry: path, reason },
    },
  );
}

function integrity(label: string, message: string): IntegrityError {
  return new IntegrityError("PAAS_BACKUP_CONTENT_MISMATCH", message, {
    path: label,
    remediation:
      "The snapshot does not reproduce the state it describes: restore an older verified snapshot or fetch an offsite copy.",
    stage: "verify",
  });
}

/**
 * A corrupt artifact named by its path and snapshot, whichever layer found the damage (age, gzip,
 * tar): restore names the older snapshot that verifies, as for a checksum failure.
 */
function damagedLink(err: unknown, label: string, id: string): unknown {
  if (!(err instanceof IntegrityError) || err.code !== "PAAS_BACKUP_ARCHIVE_CORRUPT") return err;
  return new IntegrityError(
    err.code,
    err.message.includes(label) ? err.message : `archive ${label}: ${err.message}`,
    {
      path: label,
      remediation: err.remediation,
      stage: err.stage,
      data: { ...err.data, snapshot: id },
      cause: err,
    },
  );
}

/** Open an artifact as a plaintext tar.gz stream (decrypting when it is an .age artifact). */
export async function openArtifact(snapshot: SnapshotRef, decryptor?: ArtifactDecryptor): Promise<Readable> {
  return (await openArtifactHashed(snapshot, decryptor)).plain;
}

/**
 * Open an artifact once: its raw bytes go through sha256 on their way to decryption and
 * extraction, so the checksum is confirmed on the very bytes that are restored (issue 9 §3).
 */
async function openArtifactHashed(
  snapshot: SnapshotRef,
  decryptor?: ArtifactDecryptor,
  /** hash the decrypted payload too (only when the next link names it as its parent's) */
  hashPayload = false,
): Promise<{ plain: Readable; raw: PassThrough; digest: () => string; payloadDigest: () => string }> {
  if (snapshot.encrypted && !decryptor) {
    throw new SafetyError(
      "PAAS_BACKUP_IDENTITY_REQUIRED",
      `snapshot ${snapshot.id} is encrypted (${snapshot.artifactPath}) and no identity was given`,
      {
        path: snapshot.artifactPath,
        remediation:
          "Pass --identity <file> with an age identity whose recipient the snapshot was encrypted to.",
        stage: "decrypt",
      },
    );
  }
  const source = await snapshot.storage.get(snapshot.artifactKey);
  const hash = createHash("sha256");
  const raw = new PassThrough({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  source.on("error", (err) => raw.destroy(err));
  source.pipe(raw);
  let sha256: string | null = null;
  const digest = () => (sha256 ??= hash.digest("hex"));
  // a plaintext artifact is its own payload (as snapshot writes payloadSha256)
  if (!snapshot.encrypted) return { plain: raw, raw, digest, payloadDigest: digest };
  const decrypt = decryptor!.decrypt();
  raw.on("error", (err) => decrypt.destroy(err));
  raw.pipe(decrypt);
  // A link no later link builds on: its payload's sha256 is not asked for, so it is not computed
  // (a pass over the whole payload, and a stream hop for every chunk of it).
  if (!hashPayload)
    return {
      plain: decrypt as unknown as Readable,
      raw,
      digest,
      payloadDigest: () => {
        throw new Error("the payload of this link was not hashed");
      },
    };
  // the decrypted .tar.gz is hashed on its way to the archive reader: its payloadSha256
  const payloadHash = createHash("sha256");
  const plain = new PassThrough({
    transform(chunk: Buffer, _enc, cb) {
      payloadHash.update(chunk);
      cb(null, chunk);
    },
  });
  decrypt.on("error", (err) => plain.destroy(err));
  decrypt.pipe(plain);
  return {
    plain: plain as unknown as Readable,
    raw,
    digest,
    payloadDigest: () => payloadHash.digest("hex"),
  };
}

/** Read what the archive reader left unread (a trailer past the end-of-archive blocks) so the hash covers every byte. */
async function drain(raw: PassThrough): Promise<void> {
  if (raw.readableEnded) return;
  raw.unpipe();
  raw.resume();
  await finished(raw, { writable: false }).catch(() => undefined);
}

/** Read a stream to its end (what the archive reader left unread), so every byte passes its hashes. */
async function drainThrough(stream: Readable): Promise<void> {
  if (stream.readableEnded) return;
  stream.resume();
  await finished(stream, { writable: false });
}

/** Every folder a list of file paths implies: the only folder entries an archive with a manifest may carry. */
function impliedFolders(paths: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const path of paths) {
    for (let d = dirname(path); d !== "." && d !== "" && !out.has(d); d = dirname(d)) out.add(d);
  }
  return out;
}

/**
 * Replay a chain of snapshots: the full, then each incremental's whole files, appended log tails
 * and deletions. Every entry is checked against its link's manifest before a byte is written,
 * every file's sha256 is tracked across the chain, and the result is checked against the newest
 * manifest: byte-identical to the context at that time, or an error.
 */
export async function materializeChain(options: MaterializeOptions): Promise<MaterializeResult> {
  const comparers = new Map<string, LiveComparer>();
  for (const [path, onDisk] of options.compareWith ?? [])
    comparers.set(path, new LiveComparer(options.fs, onDisk));
  try {
    return await replayChain(options, comparers);
  } finally {
    // also on failure: no live file is left open behind a refused artifact
    for (const c of comparers.values()) await c.close().catch(() => undefined);
  }
}

async function replayChain(
  options: MaterializeOptions,
  comparers: ReadonlyMap<string, LiveComparer>,
): Promise<MaterializeResult> {
  const replay = new ChainReplay(options, comparers);
  for (const link of options.chain) {
    // The next link records the plaintext it was built on: this link's payload is checked against it.
    const child = options.chain[options.chain.indexOf(link) + 1];
    await replay.replayLink(link, child);
  }
  return replay.result();
}

/** One link as its entries are judged: its manifest (none for a hand-made archive) and what it implies. */
interface LinkInReplay {
  link: SnapshotRef;
  manifest: SnapshotRef["manifest"];
  byPath: Map<string, ManifestFile>;
  /** the artifact's path: every error names it */
  label: string;
  /** the only folder entries a link with a manifest may carry */
  folders: Set<string>;
}

/**
 * The state a chain's replay carries from link to link: every file's sha256 and size so far, what
 * policy kept out, the bytes extracted and each link's artifact sha256. Each step of a link (read
 * its entries, confirm its checksum, confirm the payload its child names, judge it against its
 * manifest) is a method, run in that order by replayLink.
 */
class ChainReplay {
  private readonly state = new Map<string, FileState>();
  private readonly notRestored: { path: string; reason: string }[] = [];
  private bytes = 0;
  private readonly madeDirs = new Set<string>();
  private readonly artifactSha256 = new Map<string, string>();
  private readonly select: (path: string) => boolean;

  constructor(
    private readonly options: MaterializeOptions,
    private readonly comparers: ReadonlyMap<string, LiveComparer>,
  ) {
    this.select = options.select ?? (() => true);
  }

  /** Replay one link over the state the links before it left. */
  async replayLink(link: SnapshotRef, child: SnapshotRef | undefined): Promise<void> {
    const manifest = link.manifest;
    const byPath = new Map<string, ManifestFile>((manifest?.files ?? []).map((f) => [f.path, f]));
    const current: LinkInReplay = {
      link,
      manifest,
      byPath,
      label: link.artifactPath,
      folders: impliedFolders(byPath.keys()),
    };
    const payloadExpected = child?.parent?.id === link.id ? child.parent.payloadSha256 : undefined;
    const opened = await openArtifactHashed(link, this.options.decryptor, payloadExpected !== undefined);
    const result = await this.readEntries(current, opened.plain);
    // The whole payload is read to hash it (through decryption) when the child names it; otherwise
    // only the raw bytes left are, for the checksum.
    if (payloadExpected && link.encrypted) await drainThrough(opened.plain);
    else await drain(opened.raw);
    this.confirmChecksum(current, opened.digest());
    if (payloadExpected) confirmPayload(current, child!, payloadExpected, opened.payloadDigest());
    if (manifest) await this.judgeBySidecar(current, result.manifestJson);
    else if (result.manifestJson) this.judgeByEmbedded(current, result.manifestJson);
  }

  /** Read the link's archive, each entry through replayEntry, within the limits the link allows. */
  private async readEntries(current: LinkInReplay, source: Readable): Promise<ReadArchiveResult> {
    const { link, manifest, label } = current;
    // With a manifest the limit is exact: every entry's size is checked against it before a byte
    // is read. A hand-made archive has only the expansion ratio to go by.
    const maxExpansion = this.options.maxExpansion ?? 200;
    const maxTotalBytes = manifest
      ? manifest.totals.storedBytes
      : Math.max(link.bytes * maxExpansion, 64 * 1024 * 1024);
    const maxDecompressionRatio = manifest ? Number.POSITIVE_INFINITY : Math.max(maxExpansion, 1000);
    const members = manifest?.gzipMembers
      ? { gzipMembers: manifest.gzipMembers, maxTarBytes: tarBytesBound(manifest), artifactBytes: link.bytes }
      : {};
    return readArchive(source, {
      label,
      onEntry: (entry, body) => this.replayEntry(current, entry, body),
      maxTotalBytes,
      maxDecompressionRatio,
      ...members,
    }).catch((err: unknown) => {
      throw damagedLink(err, label, link.id);
    });
  }

  /** One archive entry: judged against the link's manifest before a byte is written, then extracted. */
  private async replayEntry(current: LinkInReplay, entry: ArchiveEntryInfo, body: Readable): Promise<void> {
    const { label } = current;
    // The block marker's path is paas-backup's own: a folder there would stand where the
    // restore writes the staged marker (and crashed it with exit 1 before issue 20).
    if (entry.path.startsWith(`${BLOCK_FILE}/`) || (entry.type === "directory" && entry.path === BLOCK_FILE))
      throw blockMarkerFolder(label, entry.path);
    if (entry.type === "directory") return judgeFolder(current, entry, body);
    let expected: ManifestFile | undefined;
    if (current.manifest) expected = expectedFile(current, entry);
    else if (this.keptOut(entry, body)) return;
    const append = expected?.stored === "append";
    const st = append ? this.appendedState(current, entry, expected!) : this.newState(entry.path);
    const write = this.options.target !== null && this.select(entry.path);
    if (write) await this.prepareWrite(current, entry.path);
    await this.extract(entry, body, st, write, append);
    if (expected && st.hash.copy().digest("hex") !== expected.sha256)
      throw integrity(label, `${entry.path} in ${current.link.id} does not match its manifest sha256`);
  }

  /** A hand-made archive's entry that policy keeps out of a context (vault/, secrets): noted, not restored. */
  private keptOut(entry: ArchiveEntryInfo, body: Readable): boolean {
    const reason = hardExclusionReason(entry.path);
    if (!reason) return false;
    body.resume();
    this.notRestored.push({ path: entry.path, reason });
    return true;
  }

  /** An appended tail continues the file the chain before it holds, byte for byte, or is refused. */
  private appendedState(current: LinkInReplay, entry: ArchiveEntryInfo, expected: ManifestFile): FileState {
    const st = this.state.get(entry.path);
    if (!st || st.size !== expected.appendOffset) {
      throw integrity(
        current.label,
        `${entry.path} in ${current.link.id} extends ${expected.appendOffset} bytes, but the chain before it holds ${st?.size ?? 0}`,
      );
    }
    if (st.hash.copy().digest("hex") !== expected.prefixSha256)
      throw integrity(
        current.label,
        `${entry.path} in ${current.link.id} extends content that the chain before it does not hold`,
      );
    return st;
  }

  /** A whole file replaces whatever the chain held at its path. */
  private newState(path: string): FileState {
    const st = { hash: createHash("sha256"), size: 0 };
    this.state.set(path, st);
    return st;
  }

  /** A file to be written stays inside the target, and its folders exist first. */
  private async prepareWrite(current: LinkInReplay, path: string): Promise<void> {
    const target = this.options.target!;
    const abs = join(target, path);
    if (!isWithin(target, abs)) throw disagree(current.label, path, "resolves outside the target folder");
    await this.ensureDir(dirname(path) === "." ? "" : dirname(path));
  }

  /** Make a folder and those above it, once each. Iterative on purpose: no recursion on the depth of a path an archive names. */
  private async ensureDir(rel: string): Promise<void> {
    const target = this.options.target;
    if (!target) return;
    const missing: string[] = [];
    for (let d = rel; d !== "" && d !== "." && !this.madeDirs.has(d); d = dirname(d)) missing.push(d);
    for (const d of missing.reverse()) {
      await this.options.fs.mkdir(join(target, d), { mode: 0o700 }).catch((err: { code?: string }) => {
        if (err.code !== "EEXIST") throw err;
      });
      this.madeDirs.add(d);
    }
  }

  /**
   * The entry's bytes: hashed and counted into the file's state, compared with the live file when
   * one is given, and written when selected. Hot path: one Transform per entry, nothing per chunk.
   */
  private async extract(
    entry: ArchiveEntryInfo,
    body: Readable,
    current: FileState,
    write: boolean,
    append: boolean,
  ): Promise<void> {
    const { fs, target, onBytes } = this.options;
    const comparer = this.comparers.get(entry.path);
    comparer?.begin(current.size);
    const sink = write
      ? fs.createWriteStream(join(target!, entry.path), { mode: 0o600, append })
      : new Writable({ write: (_c, _e, cb) => cb() });
    // body -> hash and count -> file: one pipeline, so an error of any stage (a file that cannot
    // be opened, a full disk) rejects here instead of escaping as an unhandled stream error.
    const replay = this;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        current.hash.update(chunk);
        current.size += chunk.length;
        replay.bytes += chunk.length;
        onBytes?.(chunk.length);
        if (!comparer) return cb(null, chunk);
        // the chunk goes on to the file once compared: the comparison keeps no reference to it
        void comparer.compare(chunk).then(() => cb(null, chunk));
      },
    });
    await pipeline(body, counter, sink);
  }

  /** The bytes read for this restore are the bytes the link's checksum file names. */
  private confirmChecksum(current: LinkInReplay, actual: string): void {
    const { link, label } = current;
    this.artifactSha256.set(link.id, actual);
    if (!this.options.checksums) return;
    const expected = this.options.checksums.get(link.id) ?? null;
    if (expected === actual) return;
    throw new IntegrityError(
      expected ? "PAAS_BACKUP_CHECKSUM_MISMATCH" : "PAAS_BACKUP_CHECKSUM_MISSING",
      `the bytes of ${label} read for this restore ${expected ? "do not match its checksum file" : "have no checksum file to match"} (sha256 ${actual})`,
      {
        path: label,
        remediation:
          "Nothing was changed. Restore an older snapshot that verifies (--fallback), or fetch this one from the offsite copy.",
        stage: "checksum",
        data: { snapshot: link.id, expected, actual },
      },
    );
  }

  /**
   * The sidecar guided the read: the copy inside the checksummed artifact must agree with it, every
   * file must be the one it describes, and whatever the link does not list is gone at its time.
   */
  private async judgeBySidecar(current: LinkInReplay, manifestJson: string | null): Promise<void> {
    const { link, label, byPath } = current;
    const manifest = current.manifest!;
    if (!manifestJson)
      throw integrity(label, `artifact of ${link.id} carries no manifest though one stands beside it`);
    const embedded = parseManifest(manifestJson, `${label} (embedded)`);
    if (!sidecarAgrees(embedded, manifest))
      throw integrity(label, `the manifest beside ${link.id} differs from the one inside its artifact`);
    for (const file of manifest.files) {
      if (!this.holds(file))
        throw integrity(label, `${file.path} after ${link.id} is not the file its manifest describes`);
    }
    const { fs, target } = this.options;
    for (const path of [...this.state.keys()]) {
      if (!byPath.has(path)) {
        this.state.delete(path);
        if (target && this.select(path)) await fs.rm(join(target, path), { force: true });
      }
    }
  }

  /** Our artifact whose sidecar manifest was lost: the embedded one still judges it. */
  private judgeByEmbedded(current: LinkInReplay, manifestJson: string): void {
    const { link, label } = current;
    const embedded = parseManifest(manifestJson, `${label} (embedded)`);
    if (embedded.kind !== "full")
      throw integrity(
        label,
        `${link.id} is an incremental whose manifest file is missing; it cannot be restored on its own`,
      );
    for (const file of embedded.files) {
      if (!this.holds(file))
        throw integrity(label, `${file.path} in ${link.id} is not the file its embedded manifest describes`);
    }
  }

  /** Whether the replayed state holds exactly this manifest file. */
  private holds(file: ManifestFile): boolean {
    const st = this.state.get(file.path);
    return !!st && st.size === file.size && st.hash.copy().digest("hex") === file.sha256;
  }

  /** The files the newest link describes, and each live file's comparison over the whole restored content. */
  result(): MaterializeResult {
    const files = [...this.state.entries()]
      .map(([path, st]) => ({ path, size: st.size, sha256: st.hash.digest("hex") }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    const compared = new Map<string, LiveComparison>();
    for (const f of files) {
      const answer = this.comparers.get(f.path)?.result(f.size);
      if (answer) compared.set(f.path, answer);
    }
    const { notRestored, bytes, artifactSha256 } = this;
    return { files, notRestored, bytes, artifactSha256, compared };
  }
}

/** A folder entry: ours carry only the folders their files lie in, and never vault/. */
function judgeFolder(current: LinkInReplay, entry: ArchiveEntryInfo, body: Readable): void {
  const { manifest, label, folders } = current;
  body.resume();
  // A folder no manifest file implies is how a fake vault/ or a decoy tree gets in: ours never write one.
  if (manifest && (entry.path === "vault" || entry.path.startsWith("vault/")))
    throw disagree(label, entry.path, "a vault/ entry (the vault is never backed up nor restored)");
  if (manifest && !folders.has(entry.path))
    throw disagree(label, entry.path, "a folder that no file of the manifest lies in");
  // A hand-made archive's folders (kept out or not) are made as the files that need them are
  // written, so a --path restore stages only those.
}

/** The manifest's word on a stored file: listed, stored (not "unchanged"), and of the size it says. */
function expectedFile(current: LinkInReplay, entry: ArchiveEntryInfo): ManifestFile {
  const { label, byPath } = current;
  const expected = byPath.get(entry.path);
  if (!expected) throw disagree(label, entry.path, "not listed in the manifest");
  if (expected.stored === "unchanged") throw disagree(label, entry.path, "listed as unchanged, yet stored");
  const want = expected.stored === "append" ? expected.size - (expected.appendOffset ?? 0) : expected.size;
  if (entry.size !== want) throw disagree(label, entry.path, `size ${entry.size}, manifest says ${want}`);
  return expected;
}

/** The link is the very plaintext its child was built on, or the parent was replaced. */
function confirmPayload(current: LinkInReplay, child: SnapshotRef, expected: string, payload: string): void {
  if (payload === expected) return;
  const { link, label } = current;
  const reason = `link ${link.id} is not the payload ${child.id} was built on (its plaintext has sha256 ${payload}, ${child.id} names ${expected})`;
  throw new IntegrityError("PAAS_BACKUP_CHAIN_BROKEN", `${label}: ${reason}`, {
    path: label,
    remediation:
      "Nothing was changed. The parent was replaced by another artifact: restore an older snapshot that verifies (--fallback), or fetch the parent from the offsite copy.",
    stage: "checksum",
    data: { snapshot: link.id, reason, expected, actual: payload },
  });
}
