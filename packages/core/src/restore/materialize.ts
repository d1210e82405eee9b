import { createHash, type Hash } from "node:crypto";
import { PassThrough, Transform, Writable, type Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import type { FileReader, FileSystem } from "../fs/types.js";
import { IntegrityError, SafetyError } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { readArchive, tarBytesBound, type ArchiveEntryInfo } from "../archive/reader.js";
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
  const { fs, chain, target } = options;
  const state = new Map<string, FileState>();
  const notRestored: { path: string; reason: string }[] = [];
  let bytes = 0;
  const madeDirs = new Set<string>();
  const artifactSha256 = new Map<string, string>();
  const select = options.select ?? (() => true);

  // Iterative on purpose: no recursion on the depth of a path an archive names.
  const ensureDir = async (rel: string) => {
    if (!target) return;
    const missing: string[] = [];
    for (let d = rel; d !== "" && d !== "." && !madeDirs.has(d); d = dirname(d)) missing.push(d);
    for (const d of missing.reverse()) {
      await fs.mkdir(join(target, d), { mode: 0o700 }).catch((err: { code?: string }) => {
        if (err.code !== "EEXIST") throw err;
      });
      madeDirs.add(d);
    }
  };

  for (const link of chain) {
    const manifest = link.manifest;
    const byPath = new Map<string, ManifestFile>((manifest?.files ?? []).map((f) => [f.path, f]));
    const label = link.artifactPath;
    const folders = impliedFolders(byPath.keys());
    const opened = await openArtifactHashed(link, options.decryptor);
    const source = opened.plain;
    // With a manifest the limit is exact: every entry's size is checked against it before a byte
    // is read. A hand-made archive has only the expansion ratio to go by.
    const maxExpansion = options.maxExpansion ?? 200;
    const maxTotalBytes = manifest
      ? manifest.totals.storedBytes
      : Math.max(link.bytes * maxExpansion, 64 * 1024 * 1024);
    const maxDecompressionRatio = manifest ? Number.POSITIVE_INFINITY : Math.max(maxExpansion, 1000);

    const onEntry = async (entry: ArchiveEntryInfo, body: Readable): Promise<void> => {
      // The block marker's path is paas-backup's own: a folder there would stand where the
      // restore writes the staged marker (and crashed it with exit 1 before issue 20).
      if (
        entry.path.startsWith(`${BLOCK_FILE}/`) ||
        (entry.type === "directory" && entry.path === BLOCK_FILE)
      )
        throw blockMarkerFolder(label, entry.path);
      if (entry.type === "directory") {
        body.resume();
        // A folder no manifest file implies is how a fake vault/ or a decoy tree gets in: ours never write one.
        if (manifest && (entry.path === "vault" || entry.path.startsWith("vault/")))
          throw disagree(label, entry.path, "a vault/ entry (the vault is never backed up nor restored)");
        if (manifest && !folders.has(entry.path))
          throw disagree(label, entry.path, "a folder that no file of the manifest lies in");
        if (!manifest && hardExclusionReason(entry.path)) return;
        // Folders are made as the files that need them are written, so a --path restore stages only those.
        return;
      }
      let expected: ManifestFile | undefined;
      if (manifest) {
        expected = byPath.get(entry.path);
        if (!expected) throw disagree(label, entry.path, "not listed in the manifest");
        if (expected.stored === "unchanged")
          throw disagree(label, entry.path, "listed as unchanged, yet stored");
        const want =
          expected.stored === "append" ? expected.size - (expected.appendOffset ?? 0) : expected.size;
        if (entry.size !== want)
          throw disagree(label, entry.path, `size ${entry.size}, manifest says ${want}`);
      } else {
        const reason = hardExclusionReason(entry.path);
        if (reason) {
          body.resume();
          notRestored.push({ path: entry.path, reason });
          return;
        }
      }
      const append = expected?.stored === "append";
      let st = state.get(entry.path);
      if (append) {
        if (!st || st.size !== expected!.appendOffset) {
          throw integrity(
            label,
            `${entry.path} in ${link.id} extends ${expected!.appendOffset} bytes, but the chain before it holds ${st?.size ?? 0}`,
          );
        }
        if (st.hash.copy().digest("hex") !== expected!.prefixSha256)
          throw integrity(
            label,
            `${entry.path} in ${link.id} extends content that the chain before it does not hold`,
          );
      } else {
        st = { hash: createHash("sha256"), size: 0 };
        state.set(entry.path, st);
      }
      const write = target !== null && select(entry.path);
      if (write) {
        const abs = join(target!, entry.path);
        if (!isWithin(target!, abs)) throw disagree(label, entry.path, "resolves outside the target folder");
        await ensureDir(dirname(entry.path) === "." ? "" : dirname(entry.path));
      }
      const current = st;
      const comparer = comparers.get(entry.path);
      comparer?.begin(current.size);
      const sink = write
        ? fs.createWriteStream(join(target!, entry.path), { mode: 0o600, append })
        : new Writable({ write: (_c, _e, cb) => cb() });
      // body -> hash and count -> file: one pipeline, so an error of any stage (a file that cannot
      // be opened, a full disk) rejects here instead of escaping as an unhandled stream error.
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          current.hash.update(chunk);
          current.size += chunk.length;
          bytes += chunk.length;
          options.onBytes?.(chunk.length);
          if (!comparer) return cb(null, chunk);
          // the chunk goes on to the file once compared: the comparison keeps no reference to it
          void comparer.compare(chunk).then(() => cb(null, chunk));
        },
      });
      await pipeline(body, counter, sink);
      if (expected && current.hash.copy().digest("hex") !== expected.sha256)
        throw integrity(label, `${entry.path} in ${link.id} does not match its manifest sha256`);
    };

    const members = manifest?.gzipMembers
      ? { gzipMembers: manifest.gzipMembers, maxTarBytes: tarBytesBound(manifest), artifactBytes: link.bytes }
      : {};
    const result = await readArchive(source, {
      label,
      onEntry,
      maxTotalBytes,
      maxDecompressionRatio,
      ...members,
    }).catch((err: unknown) => {
      throw damagedLink(err, label, link.id);
    });
    // The next link records the plaintext it was built on: the whole payload is read to hash it
    // (through decryption); otherwise only the raw bytes left are, for the checksum.
    const child = chain[chain.indexOf(link) + 1];
    const payloadExpected = child?.parent?.id === link.id ? child.parent.payloadSha256 : undefined;
    if (payloadExpected && link.encrypted) await drainThrough(source);
    else await drain(opened.raw);
    const actual = opened.digest();
    artifactSha256.set(link.id, actual);
    if (options.checksums) {
      const expected = options.checksums.get(link.id) ?? null;
      if (expected !== actual) {
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
    }

    if (payloadExpected) {
      const payload = opened.payloadDigest();
      if (payload !== payloadExpected) {
        const reason = `link ${link.id} is not the payload ${child!.id} was built on (its plaintext has sha256 ${payload}, ${child!.id} names ${payloadExpected})`;
        throw new IntegrityError("PAAS_BACKUP_CHAIN_BROKEN", `${label}: ${reason}`, {
          path: label,
          remediation:
            "Nothing was changed. The parent was replaced by another artifact: restore an older snapshot that verifies (--fallback), or fetch the parent from the offsite copy.",
          stage: "checksum",
          data: { snapshot: link.id, reason, expected: payloadExpected, actual: payload },
        });
      }
    }

    if (manifest) {
      if (result.manifestJson) {
        // The sidecar guided the read; the copy inside the checksummed artifact must agree with it.
        const embedded = parseManifest(result.manifestJson, `${label} (embedded)`);
        if (!sidecarAgrees(embedded, manifest))
          throw integrity(label, `the manifest beside ${link.id} differs from the one inside its artifact`);
      } else {
        throw integrity(label, `artifact of ${link.id} carries no manifest though one stands beside it`);
      }
      for (const file of manifest.files) {
        const st = state.get(file.path);
        if (!st || st.size !== file.size || st.hash.copy().digest("hex") !== file.sha256)
          throw integrity(label, `${file.path} after ${link.id} is not the file its manifest describes`);
      }
      // Whatever the link does not list is gone at its time.
      for (const path of [...state.keys()]) {
        if (!byPath.has(path)) {
          state.delete(path);
          if (target && select(path)) await fs.rm(join(target, path), { force: true });
        }
      }
    } else if (result.manifestJson) {
      // Our artifact whose sidecar manifest was lost: the embedded one still judges it.
      const embedded = parseManifest(result.manifestJson, `${label} (embedded)`);
      if (embedded.kind !== "full")
        throw integrity(
          label,
          `${link.id} is an incremental whose manifest file is missing; it cannot be restored on its own`,
        );
      for (const file of embedded.files) {
        const st = state.get(file.path);
        if (!st || st.size !== file.size || st.hash.copy().digest("hex") !== file.sha256)
          throw integrity(
            label,
            `${file.path} in ${link.id} is not the file its embedded manifest describes`,
          );
      }
    }
  }

  const files = [...state.entries()]
    .map(([path, st]) => ({ path, size: st.size, sha256: st.hash.digest("hex") }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  const compared = new Map<string, LiveComparison>();
  for (const f of files) {
    const answer = comparers.get(f.path)?.result(f.size);
    if (answer) compared.set(f.path, answer);
  }
  return { files, notRestored, bytes, artifactSha256, compared };
}
